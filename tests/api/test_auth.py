"""Login, refresh, JWT failures and API keys (shown once, listed without the key, revoked)."""

from __future__ import annotations

import re
from datetime import timedelta

from flask_jwt_extended import create_access_token

from tests.api.conftest import assert_error


def login(client, tenant, address):
    response = client.post("/api/v1/auth/login", json={"email": tenant.email, "password": tenant.password},
                           environ_base=address)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def test_login_returns_tokens_that_work(client, tenant, address, settings):
    body = login(client, tenant, address)
    assert set(body) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == settings.jwt_access_minutes * 60
    balance = client.get("/api/v1/balance", headers=bearer(body["access_token"]))
    assert balance.status_code == 200
    assert balance.get_json()["account_id"] == tenant.account_id


def test_login_email_is_case_insensitive(client, tenant, address):
    response = client.post("/api/v1/auth/login", environ_base=address,
                           json={"email": tenant.email.upper(), "password": tenant.password})
    assert response.status_code == 200


def test_login_wrong_password_and_unknown_email(client, tenant, address):
    wrong = client.post("/api/v1/auth/login", json={"email": tenant.email, "password": "nope-nope"},
                        environ_base=address)
    assert_error(wrong, 401, "INVALID_CREDENTIALS")
    unknown = client.post("/api/v1/auth/login", json={"email": "nobody@example.pk", "password": "nope-nope"},
                          environ_base=address)
    assert_error(unknown, 401, "INVALID_CREDENTIALS")
    # the same answer either way: no account enumeration
    assert wrong.get_json() == unknown.get_json()


def test_login_validation_names_fields(client, address):
    error = assert_error(client.post("/api/v1/auth/login", json={"email": "not-an-email"}, environ_base=address),
                         422, "VALIDATION_ERROR")
    assert set(error["details"]) == {"email", "password"}


def test_refresh_issues_new_tokens(client, tenant, address):
    tokens = login(client, tenant, address)
    response = client.post("/api/v1/auth/refresh", headers=bearer(tokens["refresh_token"]))
    assert response.status_code == 200
    renewed = response.get_json()
    assert set(renewed) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert client.get("/api/v1/balance", headers=bearer(renewed["access_token"])).status_code == 200


def test_refresh_rejects_access_token_and_missing_token(client, tenant, address):
    tokens = login(client, tenant, address)
    assert_error(client.post("/api/v1/auth/refresh", headers=bearer(tokens["access_token"])), 401, "INVALID_TOKEN")
    assert_error(client.post("/api/v1/auth/refresh"), 401, "UNAUTHORIZED")
    assert_error(client.post("/api/v1/auth/refresh", headers=bearer(tenant.api_key)), 401, "INVALID_TOKEN")


def test_refresh_token_is_not_an_access_token(client, tenant, address):
    tokens = login(client, tenant, address)
    assert_error(client.get("/api/v1/balance", headers=bearer(tokens["refresh_token"])), 401, "INVALID_TOKEN")


def test_missing_garbage_and_tampered_tokens(client, tenant, address):
    response = client.get("/api/v1/balance")
    assert_error(response, 401, "UNAUTHORIZED")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert_error(client.get("/api/v1/balance", headers={"Authorization": "Basic dXNlcjpwYXNz"}), 401, "UNAUTHORIZED")
    assert_error(client.get("/api/v1/balance", headers=bearer("garbage")), 401, "INVALID_TOKEN")
    assert_error(client.get("/api/v1/balance", headers=bearer("a.b.c")), 401, "INVALID_TOKEN")
    token = login(client, tenant, address)["access_token"]
    header, payload, signature = token.split(".")
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    assert_error(client.get("/api/v1/balance", headers=bearer(f"{header}.{payload}.{flipped}")), 401,
                 "INVALID_TOKEN")


def test_expired_token(app, client, tenant):
    with app.app_context():
        token = create_access_token(identity=tenant.user_id, additional_claims={"acc": tenant.account_id},
                                    expires_delta=timedelta(seconds=-1))
    assert_error(client.get("/api/v1/balance", headers=bearer(token)), 401, "TOKEN_EXPIRED")


def test_token_signed_with_another_key_is_refused(app, client, tenant):
    import jwt

    forged = jwt.encode({"sub": tenant.user_id, "type": "access"}, "not-our-secret-but-long-enough-for-hs256!",
                        algorithm="HS256")
    assert_error(client.get("/api/v1/balance", headers=bearer(forged)), 401, "INVALID_TOKEN")


def test_malformed_and_unknown_api_keys(client, tenant):
    assert_error(client.get("/api/v1/balance", headers=bearer("zc_live_short")), 401, "INVALID_API_KEY")
    wrong = tenant.api_key[:-4] + ("0000" if not tenant.api_key.endswith("0000") else "1111")
    assert_error(client.get("/api/v1/balance", headers=bearer(wrong)), 401, "INVALID_API_KEY")


# --- API keys -----------------------------------------------------------------------------------

def test_create_key_shows_it_once(client, tenant):
    response = client.post("/api/v1/api-keys", headers=tenant.headers, json={"name": "crm"})
    assert response.status_code == 201
    created = response.get_json()
    assert re.fullmatch(r"zc_live_[A-Za-z0-9]{32,}", created["key"])
    assert created["name"] == "crm"
    assert created["prefix"] == created["key"][:16]
    assert created["active"] is True and created["revoked_at"] is None and created["last_used_at"] is None
    # the new key works
    assert client.get("/api/v1/balance", headers=bearer(created["key"])).status_code == 200
    # it is never shown again
    listing = client.get("/api/v1/api-keys", headers=tenant.headers).get_json()
    assert listing["pagination"]["total"] == 2
    assert all("key" not in item and "key_hash" not in item for item in listing["data"])
    assert created["key"] not in str(listing)
    one = client.get(f"/api/v1/api-keys/{created['id']}", headers=tenant.headers).get_json()
    assert "key" not in one and one["prefix"] == created["prefix"]


def test_create_key_default_name_and_validation(client, tenant):
    assert client.post("/api/v1/api-keys", headers=tenant.headers, json={}).get_json()["name"] == "API key"
    error = assert_error(client.post("/api/v1/api-keys", headers=tenant.headers, json={"name": ""}), 422)
    assert "name" in error["details"]


def test_list_keys_shape_and_pagination(client, tenant):
    for n in range(3):
        client.post("/api/v1/api-keys", headers=tenant.headers, json={"name": f"k{n}"})
    body = client.get("/api/v1/api-keys?page=2&per_page=3", headers=tenant.headers).get_json()
    assert body["pagination"] == {"page": 2, "per_page": 3, "total": 4, "total_pages": 2,
                                  "has_next": False, "has_prev": True}
    assert len(body["data"]) == 1
    assert set(body["data"][0]) == {"id", "name", "prefix", "created_at", "last_used_at", "revoked_at", "active"}


def test_last_used_at_is_recorded(client, tenant):
    client.get("/api/v1/balance", headers=tenant.headers)
    key = client.get(f"/api/v1/api-keys/{tenant.api_key_id}", headers=tenant.headers).get_json()
    assert key["last_used_at"] is not None


def test_revoked_key_answers_401(client, tenant):
    other = client.post("/api/v1/api-keys", headers=tenant.headers, json={"name": "temp"}).get_json()
    assert client.delete(f"/api/v1/api-keys/{other['id']}", headers=tenant.headers).status_code == 204
    assert_error(client.get("/api/v1/balance", headers=bearer(other["key"])), 401, "API_KEY_REVOKED")
    listed = client.get(f"/api/v1/api-keys/{other['id']}", headers=tenant.headers).get_json()
    assert listed["active"] is False and listed["revoked_at"] is not None
    # revoking twice is harmless; the other key still works
    assert client.delete(f"/api/v1/api-keys/{other['id']}", headers=tenant.headers).status_code == 204
    assert client.get("/api/v1/balance", headers=tenant.headers).status_code == 200


def test_unknown_key_id_is_404(client, tenant):
    assert_error(client.get("/api/v1/api-keys/does-not-exist", headers=tenant.headers), 404, "NOT_FOUND")
    assert_error(client.delete("/api/v1/api-keys/does-not-exist", headers=tenant.headers), 404, "NOT_FOUND")


def test_jwt_user_can_manage_keys(client, tenant, address):
    token = login(client, tenant, address)["access_token"]
    response = client.post("/api/v1/api-keys", headers=bearer(token), json={"name": "from jwt"})
    assert response.status_code == 201
