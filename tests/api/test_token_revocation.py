"""Refresh tokens are single-use (rotation), a reused one revokes its whole login, and a password
change (POST /auth/password, or the operator's ``users set-password``) revokes every token issued
before it. The state is in SQL (refresh_families, users.token_generation), never only in Redis."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from tests.api.conftest import assert_error, unique_address

NEW_PASSWORD = "N3w!password-2026"


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def login(client, tenant, password=None):
    response = client.post("/api/v1/auth/login", json={"email": tenant.email, "password": password or tenant.password},
                           environ_base={"REMOTE_ADDR": unique_address()})
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def refresh(client, token):
    return client.post("/api/v1/auth/refresh", headers=bearer(token))


def change_password(client, access, current, new):
    return client.post("/api/v1/auth/password", headers=bearer(access),
                       json={"current_password": current, "new_password": new})


def balance_status(client, access):
    return client.get("/api/v1/balance", headers=bearer(access)).status_code


# -- rotation ---------------------------------------------------------------------------------------


def test_a_refresh_token_works_once(client, tenant):
    first = login(client, tenant)
    renewed = refresh(client, first["refresh_token"])
    assert renewed.status_code == 200, renewed.get_json()
    assert renewed.get_json()["refresh_token"] != first["refresh_token"]
    error = assert_error(refresh(client, first["refresh_token"]), 401, "INVALID_TOKEN")
    assert "already been used" in error["message"]


def test_rotation_goes_on_with_the_newest_token(client, tenant):
    tokens = login(client, tenant)
    for _ in range(3):
        response = refresh(client, tokens["refresh_token"])
        assert response.status_code == 200, response.get_json()
        tokens = response.get_json()
        assert balance_status(client, tokens["access_token"]) == 200


def test_reusing_a_rotated_token_revokes_the_whole_login(client, tenant, sessions):
    from core.models import RefreshFamily

    stolen = login(client, tenant)
    other_login = login(client, tenant)
    current = refresh(client, stolen["refresh_token"]).get_json()  # the legitimate client rotates
    assert_error(refresh(client, stolen["refresh_token"]), 401, "INVALID_TOKEN")  # the copy is replayed
    # the legitimate client's newest token is revoked with its family ...
    assert_error(refresh(client, current["refresh_token"]), 401, "INVALID_TOKEN")
    # ... other logins of the same user are not
    assert refresh(client, other_login["refresh_token"]).status_code == 200
    with sessions() as session:
        reasons = session.execute(sa.select(RefreshFamily.revoked_reason).where(
            RefreshFamily.user_id == tenant.user_id, RefreshFamily.revoked_at.is_not(None))).scalars().all()
    assert reasons == ["reuse"]


def test_concurrent_refreshes_with_one_token_rotate_it_once(app, tenant):
    client = app.test_client()
    token = login(client, tenant)["refresh_token"]
    statuses: list[int] = []
    barrier = threading.Barrier(6)

    def attempt():
        own = app.test_client()
        barrier.wait()
        statuses.append(refresh(own, token).status_code)

    threads = [threading.Thread(target=attempt) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(statuses) == [200] + [401] * 5


def test_a_refresh_token_without_a_family_is_refused(app, client, tenant):
    """Tokens from before rotation existed (no family claim) cannot be used forever."""
    from flask_jwt_extended import create_refresh_token

    with app.app_context():
        legacy = create_refresh_token(identity=tenant.user_id, additional_claims={"acc": tenant.account_id})
    assert_error(refresh(client, legacy), 401, "INVALID_TOKEN")


# -- password change --------------------------------------------------------------------------------


def test_password_change_revokes_every_token_issued_before(client, make_tenant):
    tenant = make_tenant()
    here, elsewhere = login(client, tenant), login(client, tenant)
    assert change_password(client, here["access_token"], tenant.password, NEW_PASSWORD).status_code == 204
    for tokens in (here, elsewhere):
        assert_error(client.get("/api/v1/balance", headers=bearer(tokens["access_token"])), 401, "INVALID_TOKEN")
        assert_error(refresh(client, tokens["refresh_token"]), 401, "INVALID_TOKEN")
    # the old password is gone, the new one logs in and its tokens work
    wrong = client.post("/api/v1/auth/login", json={"email": tenant.email, "password": tenant.password},
                        environ_base={"REMOTE_ADDR": unique_address()})
    assert_error(wrong, 401, "INVALID_CREDENTIALS")
    fresh = login(client, tenant, NEW_PASSWORD)
    assert balance_status(client, fresh["access_token"]) == 200
    assert refresh(client, fresh["refresh_token"]).status_code == 200
    # API keys belong to the account, not to the password
    assert client.get("/api/v1/balance", headers=tenant.headers).status_code == 200


def test_wrong_current_password_changes_nothing(client, tenant):
    tokens = login(client, tenant)
    error = assert_error(change_password(client, tokens["access_token"], "not-the-password", NEW_PASSWORD), 401,
                         "INVALID_CREDENTIALS")
    assert "current password" in error["message"]
    assert balance_status(client, tokens["access_token"]) == 200
    assert refresh(client, tokens["refresh_token"]).status_code == 200
    login(client, tenant)  # the old password still works


@pytest.mark.parametrize("new, field", [("short", "new_password"), ("", "new_password"), ("x" * 1025, "new_password")])
def test_weak_new_password_is_422(client, tenant, new, field):
    tokens = login(client, tenant)
    error = assert_error(change_password(client, tokens["access_token"], tenant.password, new), 422,
                         "VALIDATION_ERROR")
    assert set(error["details"]) == {field}
    assert balance_status(client, tokens["access_token"]) == 200


def test_password_change_body_is_validated(client, tenant):
    tokens = login(client, tenant)
    error = assert_error(client.post("/api/v1/auth/password", headers=bearer(tokens["access_token"]), json={}), 422,
                         "VALIDATION_ERROR")
    assert set(error["details"]) == {"current_password", "new_password"}


def test_password_change_needs_a_users_access_token(client, tenant):
    body = {"current_password": tenant.password, "new_password": NEW_PASSWORD}
    assert_error(client.post("/api/v1/auth/password", json=body), 401, "UNAUTHORIZED")
    assert_error(client.post("/api/v1/auth/password", json=body, headers=tenant.headers), 403, "FORBIDDEN")
    refresh_token = login(client, tenant)["refresh_token"]
    assert_error(client.post("/api/v1/auth/password", json=body, headers=bearer(refresh_token)), 401,
                 "INVALID_TOKEN")
    login(client, tenant)  # nothing changed


def test_revoked_tokens_spend_their_senders_budget(make_app, make_tenant):
    """A token revoked by a password change no longer names its user's rate-limit bucket."""
    app = make_app(ratelimit_default="5 per minute")
    client = app.test_client()
    tenant = make_tenant()
    old = login(client, tenant)
    assert change_password(client, old["access_token"], tenant.password, NEW_PASSWORD).status_code == 204
    thief = {"REMOTE_ADDR": unique_address()}
    for _ in range(5):
        assert_error(client.get("/api/v1/balance", headers=bearer(old["access_token"]), environ_base=thief), 401)
    new = login(client, tenant, NEW_PASSWORD)
    response = client.get("/api/v1/balance", headers=bearer(new["access_token"]))
    assert response.status_code == 200
    assert int(response.headers["X-RateLimit-Remaining"]) >= 3  # the thief's five went elsewhere


def test_operator_set_password_revokes_tokens(app, client, make_tenant):
    tenant = make_tenant()
    tokens = login(client, tenant)
    runner = app.test_cli_runner()
    result = runner.invoke(args=["users", "set-password", tenant.email, "--password", "short"])
    assert result.exit_code == 1 and "INVALID_PASSWORD" in result.stderr
    result = runner.invoke(args=["users", "set-password", "nobody@example.pk", "--password", NEW_PASSWORD])
    assert result.exit_code == 1 and "NOT_FOUND" in result.stderr
    result = runner.invoke(args=["users", "set-password", tenant.email.upper(), "--password", NEW_PASSWORD])
    assert result.exit_code == 0, result.stderr
    assert '"tokens_revoked": true' in result.stdout
    assert_error(client.get("/api/v1/balance", headers=bearer(tokens["access_token"])), 401, "INVALID_TOKEN")
    assert_error(refresh(client, tokens["refresh_token"]), 401, "INVALID_TOKEN")
    login(client, tenant, NEW_PASSWORD)


def test_guesses_of_the_current_password_are_limited_per_user(make_app, tenant):
    """A stolen access token does not buy unlimited guesses: the login limit, per user, whatever the address."""
    app = make_app(ratelimit_login="3 per minute")
    client = app.test_client()
    access = login(client, tenant)["access_token"]
    for n in range(3):
        response = client.post("/api/v1/auth/password", headers=bearer(access),
                               environ_base={"REMOTE_ADDR": unique_address()},
                               json={"current_password": f"guess-{n}-long", "new_password": NEW_PASSWORD})
        assert_error(response, 401, "INVALID_CREDENTIALS")
    blocked = change_password(client, access, tenant.password, NEW_PASSWORD)
    assert_error(blocked, 429, "RATE_LIMITED")
    assert int(blocked.headers["Retry-After"]) > 0
    login(client, tenant)  # the password did not change
