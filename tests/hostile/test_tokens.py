"""JWT tampering and brute-force login."""

from __future__ import annotations

import random
from dataclasses import replace

from tests.api.conftest import assert_error, unique_address
from tests.hostile.tokens import check_tokens, tampered_tokens


def login(client, tenant, password=None, address=None):
    return client.post("/api/v1/auth/login", json={"email": tenant.email, "password": password or tenant.password},
                       environ_base={"REMOTE_ADDR": address or unique_address()})


def test_tampered_tokens_answer_401(hostile_app, client, make_tenant):
    tenant, other = make_tenant(), make_tenant()
    tokens = login(client, tenant).get_json()
    assert client.get("/api/v1/balance", headers={"Authorization": f"Bearer {tokens['access_token']}"}
                      ).status_code == 200
    cases = tampered_tokens(tokens["access_token"], tokens["refresh_token"], hostile_app.config["JWT_SECRET_KEY"],
                            other.account_id, other.user_id, random.Random(4), garbage=20)
    tried, failures = check_tokens(client, cases)
    assert tried > 50
    assert not failures, "\n".join(failures)


def test_access_token_cannot_refresh(client, make_tenant):
    tokens = login(client, make_tenant()).get_json()
    response = client.post("/api/v1/auth/refresh", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert_error(response, 401, "INVALID_TOKEN")


def test_brute_force_login_is_limited_per_address(settings, make_tenant):
    from api import create_app

    app = create_app(replace(settings, ratelimit_login="5 per minute"))
    try:
        client = app.test_client()
        tenant = make_tenant()
        here = unique_address()
        for n in range(5):
            assert_error(login(client, tenant, password=f"guess-{n}", address=here), 401, "INVALID_CREDENTIALS")
        blocked = login(client, tenant, address=here)  # even the right password, once over the limit
        assert_error(blocked, 429, "RATE_LIMITED")
        assert int(blocked.headers["Retry-After"]) > 0
        assert login(client, tenant, address=unique_address()).status_code == 200  # other addresses are not blocked
    finally:
        app.extensions["zenscall"].engine.dispose()
