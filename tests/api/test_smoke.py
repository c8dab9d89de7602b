"""The seed document's first examples, end to end through the app on MariaDB and Redis."""

from __future__ import annotations


def test_balance_then_call_reserves_worst_case(client, tenant, upload_audio):
    audio = upload_audio(tenant, seconds=3)
    response = client.post("/api/v1/calls", headers=tenant.headers,
                           json={"phone_number": "03001234567", "audio_id": audio["id"]})
    assert response.status_code == 201, response.get_json()
    call = response.get_json()
    assert call["status"] == "QUEUED"
    assert call["phone_number"] == "+923001234567"
    balance = client.get("/api/v1/balance", headers=tenant.headers).get_json()
    # 3 s message + 2 s slack = 5 s -> one 30 s pulse at 2.50/min = 1.25
    assert balance == {**balance, "balance": "1000.00", "reserved": "1.25", "available": "998.75"}
