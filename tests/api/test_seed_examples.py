"""The public document's curl examples, run as written (host and ids substituted)."""

from __future__ import annotations

import io

from campaigns.importer import import_campaign
from core.call_states import CallStatus


def test_make_a_single_call(client, tenant, upload_audio):
    audio = upload_audio(tenant)
    # curl -X POST .../api/v1/calls -H "Authorization: Bearer YOUR_API_KEY" -H "Content-Type: application/json"
    #   -d '{ "phone_number": "03001234567", "audio_id": "..." }'
    body = '{\n    "phone_number": "03001234567",\n    "audio_id": "' + audio["id"] + '"\n  }'
    response = client.open("/api/v1/calls", method="POST", data=body,
                           headers={"Authorization": f"Bearer {tenant.api_key}", "Content-Type": "application/json"})
    assert response.status_code == 201
    call = response.get_json()
    assert (call["status"], call["phone_number"], call["audio_id"]) == ("QUEUED", "+923001234567", audio["id"])
    assert "X-RateLimit-Remaining" in response.headers


def test_list_calls(client, tenant, upload_audio, place_call, set_call):
    audio = upload_audio(tenant)
    done = place_call(tenant, audio["id"]).get_json()
    place_call(tenant, audio["id"])
    set_call(done["id"], status=CallStatus.COMPLETED, billsec=20)
    # curl -X GET ".../api/v1/calls?page=1&per_page=20&status=COMPLETED" -H "Authorization: Bearer YOUR_API_KEY"
    response = client.open("/api/v1/calls?page=1&per_page=20&status=COMPLETED", method="GET",
                           headers={"Authorization": f"Bearer {tenant.api_key}"})
    assert response.status_code == 200
    body = response.get_json()
    assert [c["id"] for c in body["data"]] == [done["id"]]
    assert body["data"][0]["status"] == "COMPLETED"
    assert body["pagination"] == {"page": 1, "per_page": 20, "total": 1, "total_pages": 1,
                                  "has_next": False, "has_prev": False}


def _campaign_example(client, tenant, audio_id):
    # curl -X POST .../api/v1/campaigns -H "Authorization: Bearer YOUR_API_KEY" -F "name=March Promotion"
    #   -F "audio_id=..." -F "csv_file=@phone_numbers.csv" -F "max_retries=3" -F "concurrent_limit=10"
    csv = b"phone_number\n03001234567\n03007654321\n"
    return client.open("/api/v1/campaigns", method="POST", headers={"Authorization": f"Bearer {tenant.api_key}"},
                       content_type="multipart/form-data",
                       data={"name": "March Promotion", "audio_id": audio_id,
                             "csv_file": (io.BytesIO(csv), "phone_numbers.csv"),
                             "max_retries": "3", "concurrent_limit": "10"})


def _import(app, settings, campaign_id):
    """What the worker does with the job the API enqueued (run here, and taken off the queue)."""
    result = import_campaign(campaign_id, settings=settings, engine=app.extensions["zenscall"].engine)
    job = app.extensions["zenscall"].work_queue.fetch_job(f"import-{campaign_id}")
    assert job is not None  # the API queued the import for the worker
    job.delete()
    return result


def test_create_a_campaign(app, client, settings, tenant, upload_audio):
    audio = upload_audio(tenant)
    response = _campaign_example(client, tenant, audio["id"])
    assert response.status_code == 201
    body = response.get_json()
    assert (body["name"], body["status"], body["audio_id"]) == ("March Promotion", "IMPORTING", audio["id"])
    assert (body["max_retries"], body["concurrent_limit"]) == (3, 10)
    assert _import(app, settings, body["id"])["rows_accepted"] == 2


def test_get_campaign_status(app, client, settings, tenant, upload_audio):
    campaign_id = _campaign_example(client, tenant, upload_audio(tenant)["id"]).get_json()["id"]
    _import(app, settings, campaign_id)
    # curl -X GET .../api/v1/campaigns/CAMPAIGN_ID -H "Authorization: Bearer YOUR_API_KEY"
    response = client.open(f"/api/v1/campaigns/{campaign_id}", method="GET",
                           headers={"Authorization": f"Bearer {tenant.api_key}"})
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "RUNNING"
    assert body["statistics"]["total"] == 2 and body["statistics"]["pending"] == 2
    assert body["import_summary"]["accepted"] == 2 and body["import_summary"]["filename"] == "phone_numbers.csv"


def test_check_balance(client, tenant):
    # curl -X GET .../api/v1/balance -H "Authorization: Bearer YOUR_API_KEY"
    response = client.open("/api/v1/balance", method="GET", headers={"Authorization": f"Bearer {tenant.api_key}"})
    assert response.status_code == 200
    body = response.get_json()
    assert {"balance", "reserved", "available", "currency", "rate"} <= set(body)
    assert body["currency"] == "PKR" and body["balance"] == "1000.00"
    assert {"per_minute", "pulse_seconds"} <= set(body["rate"])


def test_error_example_shape(client, make_tenant, upload_audio):
    broke = make_tenant(balance="0")
    audio = upload_audio(broke)
    response = client.post("/api/v1/calls", headers={"Authorization": f"Bearer {broke.api_key}"},
                           json={"phone_number": "03001234567", "audio_id": audio["id"]})
    assert response.status_code == 402
    body = response.get_json()
    assert body["error"]["code"] == "INSUFFICIENT_BALANCE"
    assert body["error"]["message"] == "Your balance is too low to make this call. Current balance: PKR 0.00"
    assert isinstance(body["error"]["details"], dict)
