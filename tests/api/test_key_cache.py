"""The cache of verified API keys: requests skip the key's SQL lookup for API_KEY_CACHE_SECONDS,
a revocation through this process applies at once, one made elsewhere (another web process, the
operator's command, SQL) within the cache's lifetime, and nothing unverified is ever cached."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from api.key_cache import VerifiedKeys
from core.db import utcnow
from core.models import Account, ApiKey
from tests.api.conftest import assert_error
from tests.api.test_rate_limits import forged_key


class ManualClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture()
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture()
def cached_app(make_app: Any, clock: ManualClock) -> Any:
    """An app whose verified keys live 5 s on a clock the test moves."""
    application = make_app(ratelimit_enabled=False)
    application.extensions["zenscall"].api_keys = VerifiedKeys(5.0, clock=clock)
    return application


def key_lookups(application: Any, requests: Any) -> list[str]:
    """The SQL statements naming ``api_keys`` that ``requests()`` ran."""
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "api_keys" in statement:
            seen.append(statement)

    engine = application.extensions["zenscall"].engine
    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        requests()
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
    return seen


def revoke_in_sql(sessions: Any, api_key_id: str) -> None:
    """A revocation made by another process: the row changes, this process is not told."""
    with sessions() as session:
        session.execute(sa.update(ApiKey).where(ApiKey.id == api_key_id).values(revoked_at=utcnow()))
        session.commit()


def test_a_verified_key_is_not_read_again_within_its_lifetime(cached_app, tenant, clock):
    client = cached_app.test_client()
    assert client.get("/api/v1/balance", headers=tenant.headers).status_code == 200  # read and cached

    def again() -> None:
        for _ in range(3):
            assert client.get("/api/v1/balance", headers=tenant.headers).status_code == 200

    assert key_lookups(cached_app, again) == []
    clock.advance(5.0)
    lookups = key_lookups(cached_app, lambda: client.get("/api/v1/balance", headers=tenant.headers))
    assert len(lookups) == 1, lookups  # expired: read from SQL again


def test_revoking_through_the_api_applies_at_once(cached_app, tenant):
    client = cached_app.test_client()
    other = client.post("/api/v1/api-keys", headers=tenant.headers, json={"name": "temp"}).get_json()
    headers = {"Authorization": f"Bearer {other['key']}"}
    assert client.get("/api/v1/balance", headers=headers).status_code == 200  # cached now
    assert client.delete(f"/api/v1/api-keys/{other['id']}", headers=tenant.headers).status_code == 204
    assert_error(client.get("/api/v1/balance", headers=headers), 401, "API_KEY_REVOKED")


def test_a_revocation_elsewhere_applies_within_the_cache_lifetime(cached_app, tenant, sessions, clock):
    client = cached_app.test_client()
    assert client.get("/api/v1/balance", headers=tenant.headers).status_code == 200
    revoke_in_sql(sessions, tenant.api_key_id)
    clock.advance(4.9)  # the documented window: still trusted by this process
    assert client.get("/api/v1/balance", headers=tenant.headers).status_code == 200
    clock.advance(0.1)
    assert_error(client.get("/api/v1/balance", headers=tenant.headers), 401, "API_KEY_REVOKED")


def test_without_the_cache_a_revocation_elsewhere_applies_at_once(make_app, tenant, sessions):
    client = make_app(ratelimit_enabled=False, api_key_cache_seconds=0).test_client()
    assert client.get("/api/v1/balance", headers=tenant.headers).status_code == 200
    revoke_in_sql(sessions, tenant.api_key_id)
    assert_error(client.get("/api/v1/balance", headers=tenant.headers), 401, "API_KEY_REVOKED")


def test_a_disabled_account_places_no_call_even_with_its_key_cached(cached_app, tenant, sessions, upload_audio,
                                                                    clock):
    audio = upload_audio(tenant)
    client = cached_app.test_client()
    assert client.get("/api/v1/balance", headers=tenant.headers).status_code == 200  # key cached
    with sessions() as session:
        session.execute(sa.update(Account).where(Account.id == tenant.account_id).values(active=False))
        session.commit()
    body = {"phone_number": "03001234567", "audio_id": audio["id"]}
    # placing a call reads the account with the message: refused at once, nothing reserved
    assert_error(client.post("/api/v1/calls", headers=tenant.headers, json=body), 403, "ACCOUNT_DISABLED")
    with sessions() as session:
        assert session.get(Account, tenant.account_id).reserved == 0
    clock.advance(5.0)  # other endpoints once the cached verification expired
    assert_error(client.get("/api/v1/balance", headers=tenant.headers), 403, "ACCOUNT_DISABLED")


def test_a_forged_key_with_a_cached_keys_prefix_is_refused(cached_app, tenant):
    client = cached_app.test_client()
    assert client.get("/api/v1/balance", headers=tenant.headers).status_code == 200
    forged = {"Authorization": f"Bearer {forged_key(tenant.api_key)}"}
    assert_error(client.get("/api/v1/balance", headers=forged), 401, "INVALID_API_KEY")
    assert len(cached_app.extensions["zenscall"].api_keys) == 1  # only the real key


def test_refused_keys_are_never_cached(cached_app, tenant, sessions):
    client = cached_app.test_client()
    revoke_in_sql(sessions, tenant.api_key_id)
    for _ in range(2):
        assert_error(client.get("/api/v1/balance", headers=tenant.headers), 401, "API_KEY_REVOKED")
    assert len(cached_app.extensions["zenscall"].api_keys) == 0
