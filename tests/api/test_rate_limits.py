"""Rate limits: headers on every response, 429 with Retry-After, the creation and login limits,
and a Redis that cannot be reached (limits fall back to memory; requests answer at once)."""

from __future__ import annotations

import secrets
import string
import time

import pytest

from core.credentials import API_KEY_RANDOM_LEN, LOOKUP_PREFIX_LEN
from tests.api.conftest import assert_error, statements_sent, unique_address

HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")


@pytest.fixture()
def limited(make_app):
    return make_app(ratelimit_default="5 per minute", ratelimit_create="2 per minute", ratelimit_login="3 per minute")


def figures(response):
    assert all(h in response.headers for h in HEADERS), dict(response.headers)
    reset = int(response.headers["X-RateLimit-Reset"])
    assert time.time() - 5 <= reset <= time.time() + 120
    return int(response.headers["X-RateLimit-Limit"]), int(response.headers["X-RateLimit-Remaining"])


def test_headers_on_every_response_and_429(limited, tenant):
    client = limited.test_client()
    remaining = []
    for _ in range(5):
        response = client.get("/api/v1/balance", headers=tenant.headers)
        assert response.status_code == 200
        assert "Retry-After" not in response.headers
        limit, left = figures(response)
        assert limit == 5
        remaining.append(left)
    assert remaining == [4, 3, 2, 1, 0]
    # other statuses carry the headers too
    for response in (client.get("/api/v1/nowhere", headers=tenant.headers),
                     client.delete("/api/v1/balance", headers=tenant.headers)):
        assert response.status_code in (404, 405)
        assert figures(response)[0] == 5
        assert "Retry-After" not in response.headers
    blocked = client.get("/api/v1/balance", headers=tenant.headers)
    error = assert_error(blocked, 429, "RATE_LIMITED")
    assert "5 per 1 minute" in error["message"]
    assert figures(blocked) == (5, 0)
    assert 0 < int(blocked.headers["Retry-After"]) <= 60


def test_unauthenticated_responses_carry_headers(limited):
    client = limited.test_client()
    address = {"REMOTE_ADDR": unique_address()}
    first = client.get("/api/v1/balance", environ_base=address)
    assert_error(first, 401)
    second = client.get("/api/v1/balance", environ_base=address, headers={"Authorization": "Bearer junk"})
    assert_error(second, 401)
    assert figures(first)[1] - 1 == figures(second)[1]
    assert "Retry-After" not in second.headers


def test_limits_are_per_api_key(limited, make_tenant):
    client = limited.test_client()
    one, two = make_tenant(), make_tenant()
    for _ in range(5):
        client.get("/api/v1/balance", headers=one.headers)
    assert_error(client.get("/api/v1/balance", headers=one.headers), 429)
    assert client.get("/api/v1/balance", headers=two.headers).status_code == 200


def test_creation_limit_on_calls(limited, tenant, upload_audio):
    audio = upload_audio(tenant)  # through the main app: its own counters
    client = limited.test_client()
    body = {"phone_number": "03001234567", "audio_id": audio["id"]}
    first = client.post("/api/v1/calls", headers=tenant.headers, json=body)
    assert first.status_code == 201
    assert figures(first) == (2, 1)
    assert client.post("/api/v1/calls", headers=tenant.headers, json=body).status_code == 201
    blocked = client.post("/api/v1/calls", headers=tenant.headers, json=body)
    error = assert_error(blocked, 429, "RATE_LIMITED")
    assert "2 per 1 minute" in error["message"]
    assert int(blocked.headers["Retry-After"]) > 0
    # only two calls exist; other endpoints still answer within the general limit
    listing = client.get("/api/v1/calls", headers=tenant.headers)
    assert listing.status_code == 200 and listing.get_json()["pagination"]["total"] == 2


def test_login_limit_is_per_address(limited, tenant):
    client = limited.test_client()
    here, there = {"REMOTE_ADDR": unique_address()}, {"REMOTE_ADDR": unique_address()}
    wrong = {"email": tenant.email, "password": "wrong-password"}
    for _ in range(3):
        assert_error(client.post("/api/v1/auth/login", json=wrong, environ_base=here), 401)
    right = {"email": tenant.email, "password": tenant.password}
    blocked = client.post("/api/v1/auth/login", json=right, environ_base=here)
    assert_error(blocked, 429, "RATE_LIMITED")
    assert "Retry-After" in blocked.headers
    assert client.post("/api/v1/auth/login", json=right, environ_base=there).status_code == 200


def test_disabled_limits_send_no_429(make_app, tenant, upload_audio):
    audio = upload_audio(tenant)
    client = make_app(ratelimit_enabled=False, ratelimit_default="1 per minute",
                      ratelimit_create="1 per minute").test_client()
    for _ in range(3):
        assert client.get("/api/v1/balance", headers=tenant.headers).status_code == 200
        assert client.post("/api/v1/calls", headers=tenant.headers,
                           json={"phone_number": "03001234567", "audio_id": audio["id"]}).status_code == 201


def test_unreachable_redis_falls_back_to_memory(make_app, tenant, upload_audio, sessions):
    audio = upload_audio(tenant)
    started = time.monotonic()
    app = make_app(redis_url="redis://127.0.0.1:1/0", ratelimit_default="4 per minute")
    client = app.test_client()
    not_found = client.get("/api/v1/nowhere", headers=tenant.headers)
    assert_error(not_found, 404)
    assert figures(not_found)[0] == 4
    ok = client.get("/api/v1/balance", headers=tenant.headers)
    assert ok.status_code == 200 and figures(ok) == (4, 3)
    # a call is still taken: SQL holds it, the dialer's sweep finds it without the job
    call = client.post("/api/v1/calls", headers=tenant.headers,
                       json={"phone_number": "03001234567", "audio_id": audio["id"]})
    assert call.status_code == 201, call.get_json()
    assert client.get(f"/api/v1/calls/{call.get_json()['id']}", headers=tenant.headers).status_code == 200
    # the limit still holds, counted in this process's memory
    assert figures(client.get("/api/v1/balance", headers=tenant.headers)) == (4, 0)
    assert_error(client.get("/api/v1/balance", headers=tenant.headers), 429, "RATE_LIMITED")
    assert time.monotonic() - started < 20  # nothing waited on the dead server


def test_dedicated_apps_do_not_share_limiter_state(make_app, app, tenant):
    """Each app has its own limits: a dead Redis in one leaves the others on theirs."""
    dead = make_app(redis_url="redis://127.0.0.1:1/0")
    dead.test_client().get("/api/v1/balance", headers=tenant.headers)
    from api.limits import EXTENSION

    assert app.extensions[EXTENSION] is not dead.extensions[EXTENSION]
    assert app.extensions[EXTENSION].redis_ok() and not dead.extensions[EXTENSION].redis_ok()


def test_creation_limit_is_per_api_key_not_per_address(limited, make_tenant, upload_audio):
    """Customers behind one address (a proxy, an office NAT) each have their own creation budget."""
    client = limited.test_client()
    for tenant in (make_tenant(), make_tenant()):
        audio = upload_audio(tenant)
        for _ in range(2):
            response = client.post("/api/v1/calls", headers=tenant.headers,
                                   json={"phone_number": "03001234567", "audio_id": audio["id"]})
            assert response.status_code == 201, response.get_json()


def forged_key(real_key: str) -> str:
    """A token shaped like an API key that carries ``real_key``'s visible prefix but not its secret."""
    alphabet = string.ascii_letters + string.digits
    tail = "".join(secrets.choice(alphabet) for _ in range(len("zc_live_") + API_KEY_RANDOM_LEN - LOOKUP_PREFIX_LEN))
    forged = real_key[:LOOKUP_PREFIX_LEN] + tail
    assert forged != real_key
    return forged


def test_forged_keys_with_a_victims_prefix_spend_the_senders_budget(limited, tenant):
    """The prefix of a key is visible (listings, logs): tokens that carry it but fail verification
    count against the address that sent them, never against the key."""
    client = limited.test_client()
    attacker, victim = {"REMOTE_ADDR": unique_address()}, {"REMOTE_ADDR": unique_address()}
    for _ in range(5):
        response = client.get("/api/v1/balance", environ_base=attacker,
                              headers={"Authorization": f"Bearer {forged_key(tenant.api_key)}"})
        assert_error(response, 401, "INVALID_API_KEY")
    # the sender is limited by its address ...
    assert_error(client.get("/api/v1/balance", environ_base=attacker,
                            headers={"Authorization": f"Bearer {forged_key(tenant.api_key)}"}), 429, "RATE_LIMITED")
    # ... and the key's own budget is untouched
    real = client.get("/api/v1/balance", environ_base=victim, headers=tenant.headers)
    assert real.status_code == 200, real.get_json()
    assert figures(real) == (5, 4)


def test_a_key_is_verified_once_per_request(make_app, tenant):
    """The limiter's bucket and the view share one verification: one lookup of the key per request
    (with the cache of verified keys off, so that every request looks the key up)."""
    limited = make_app(ratelimit_default="5 per minute", api_key_cache_seconds=0)
    with statements_sent(limited.extensions["zenscall"].engine, "api_keys") as statements:
        client = limited.test_client()
        client.get("/api/v1/balance", headers=tenant.headers)  # the first use also writes last_used_at
        statements.clear()
        assert client.get("/api/v1/balance", headers=tenant.headers).status_code == 200
        assert client.get("/api/v1/nowhere", headers=tenant.headers).status_code == 404
    assert len(statements) == 2, statements  # one SELECT per request, no second hash or lookup


def test_route_limits_count_verified_callers_only(limited, upload_audio, tenant):
    """A request that fails authentication spends its address's application-wide budget but no
    creation budget (the view's limit comes after require_auth): it answers 401, never 429."""
    client = limited.test_client()
    address = {"REMOTE_ADDR": unique_address()}
    body = {"phone_number": "03001234567", "audio_id": "whatever"}
    remaining = []
    for _ in range(3):  # the creation limit is 2 per minute
        response = client.post("/api/v1/calls", json=body, environ_base=address)
        assert_error(response, 401)
        remaining.append(figures(response))
    assert remaining == [(5, 4), (5, 3), (5, 2)]  # the application-wide figures, counted per address


def test_several_limits_in_one_setting_the_first_full_one_answers(make_app, tenant):
    client = make_app(ratelimit_default="10 per minute;3 per hour").test_client()
    shown = [figures(client.get("/api/v1/balance", headers=tenant.headers)) for _ in range(3)]
    assert shown == [(10, 9), (10, 8), (10, 7)]  # the shortest window is the one shown
    blocked = client.get("/api/v1/balance", headers=tenant.headers)
    error = assert_error(blocked, 429, "RATE_LIMITED")
    assert "3 per 1 hour" in error["message"]
    assert (blocked.headers["X-RateLimit-Limit"], blocked.headers["X-RateLimit-Remaining"]) == ("3", "0")
    assert time.time() + 3000 < int(blocked.headers["X-RateLimit-Reset"]) <= time.time() + 3602
    assert 3000 < int(blocked.headers["Retry-After"]) <= 3601


def test_a_limited_request_is_counted_in_redis_once_per_limit(limited, tenant, upload_audio):
    """One check per request records the request in the application-wide window and the
    route's (the upload went through the main app, with other limits)."""
    import redis as redis_lib

    from api.limits import EXTENSION, KEY_PREFIX

    audio = upload_audio(tenant)
    client = limited.test_client()
    assert client.post("/api/v1/calls", headers=tenant.headers,
                       json={"phone_number": "03001234567", "audio_id": audio["id"]}).status_code == 201
    connection: redis_lib.Redis = limited.extensions[EXTENSION].redis
    bucket = f"key:{tenant.api_key_id}"
    windows = {k.decode() for k in connection.scan_iter(match=f"{KEY_PREFIX}/*{bucket}/[25]/1/minute")}
    assert windows == {f"{KEY_PREFIX}/LIMITER/global/{bucket}/5/1/minute",
                       f"{KEY_PREFIX}/LIMITER/create/{bucket}/2/1/minute"}, windows
    assert [connection.llen(k) for k in sorted(windows)] == [1, 1]
