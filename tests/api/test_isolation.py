"""Tenants are isolated: another account's ids answer 404 everywhere, and nothing changes."""

from __future__ import annotations

import pytest

from tests.api.conftest import assert_error


@pytest.fixture()
def victim(client, make_tenant, upload_audio, place_call):
    tenant = make_tenant()
    audio = upload_audio(tenant)
    call = place_call(tenant, audio["id"]).get_json()
    key = client.post("/api/v1/api-keys", headers=tenant.headers, json={"name": "second"}).get_json()
    return tenant, audio, call, key


def snapshot(client, tenant, audio, call, key):
    return (
        client.get(f"/api/v1/calls/{call['id']}", headers=tenant.headers).get_json(),
        client.get(f"/api/v1/audio/{audio['id']}", headers=tenant.headers).get_json(),
        client.get(f"/api/v1/api-keys/{key['id']}", headers=tenant.headers).get_json()["revoked_at"],
        client.get("/api/v1/balance", headers=tenant.headers).get_json(),
        client.get("/api/v1/billing/transactions", headers=tenant.headers).get_json()["pagination"]["total"],
    )


@pytest.mark.parametrize("method, path", [
    ("GET", "/api/v1/calls/{call}"),
    ("POST", "/api/v1/calls/{call}/cancel"),
    ("GET", "/api/v1/audio/{audio}"),
    ("GET", "/api/v1/audio/{audio}/download"),
    ("DELETE", "/api/v1/audio/{audio}"),
    ("GET", "/api/v1/api-keys/{key}"),
    ("DELETE", "/api/v1/api-keys/{key}"),
])
def test_foreign_ids_answer_404(client, tenant, victim, method, path):
    owner, audio, call, key = victim
    before = snapshot(client, owner, audio, call, key)
    url = path.format(call=call["id"], audio=audio["id"], key=key["id"])
    response = client.open(url, method=method, headers=tenant.headers)
    assert_error(response, 404, "NOT_FOUND")
    # the same answer as an id that does not exist at all
    missing = client.open(path.format(call="x" * 36, audio="x" * 36, key="x" * 36), method=method,
                          headers=tenant.headers)
    assert response.get_json() == missing.get_json()
    assert snapshot(client, owner, audio, call, key) == before


def test_calling_with_foreign_audio_is_404(client, tenant, victim, books):
    owner, audio, call, key = victim
    before = books(tenant.account_id)
    response = client.post("/api/v1/calls", headers=tenant.headers,
                           json={"phone_number": "03001234567", "audio_id": audio["id"]})
    assert_error(response, 404, "NOT_FOUND")
    assert books(tenant.account_id) == before
    assert client.get("/api/v1/calls", headers=tenant.headers).get_json()["pagination"]["total"] == 0


def test_lists_show_only_own_rows(client, tenant, victim):
    owner, audio, call, key = victim
    for path in ("/api/v1/calls", "/api/v1/audio", "/api/v1/billing/transactions"):
        body = client.get(path, headers=tenant.headers).get_json()
        ids = {item.get("id") for item in body["data"]}
        assert not ids & {call["id"], audio["id"], key["id"]}
    keys = client.get("/api/v1/api-keys", headers=tenant.headers).get_json()
    assert {k["id"] for k in keys["data"]} == {tenant.api_key_id}
    filtered = client.get(f"/api/v1/billing/transactions?call_id={call['id']}", headers=tenant.headers).get_json()
    assert filtered["data"] == []
    assert client.get("/api/v1/balance", headers=tenant.headers).get_json()["account_id"] == tenant.account_id


def test_jwt_sees_only_its_account(client, tenant, victim, address):
    owner, audio, call, key = victim
    token = client.post("/api/v1/auth/login", json={"email": tenant.email, "password": tenant.password},
                        environ_base=address).get_json()["access_token"]
    assert_error(client.get(f"/api/v1/calls/{call['id']}", headers={"Authorization": f"Bearer {token}"}), 404)
