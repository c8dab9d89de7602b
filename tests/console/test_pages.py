"""The console's rules through Flask's test client: CSRF, sign-in and its end, isolation between
tenants, the security headers, the API's limits, and that the pages show what the services say."""

from __future__ import annotations

import io
import re
import secrets
from typing import Any

import pytest

from tests.conftest import Tenant, wav_bytes

TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(client: Any, path: str = "/login") -> str:
    page = client.get(path)
    found = TOKEN.search(page.get_data(as_text=True))
    assert found, f"no CSRF token on {path}"
    return found.group(1)


def sign_in(client: Any, tenant: Tenant, password: str | None = None) -> Any:
    token = csrf_of(client)
    return client.post("/login", data={"email": tenant.email, "password": password or tenant.password,
                                       "csrf_token": token})


def new_browser(app: Any) -> Any:
    """A test client with an address of its own (sign-ins are limited per address)."""
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = "10." + ".".join(str(secrets.randbelow(250)) for _ in range(3))
    return client


@pytest.fixture()
def browser(app: Any) -> Any:
    return new_browser(app)


def test_signed_out_pages_go_to_the_sign_in_page(browser: Any) -> None:
    for path in ("/", "/calls", "/campaigns", "/audio", "/keys", "/dnc", "/billing", "/password"):
        response = browser.get(path)
        assert response.status_code == 302
        assert response.headers["Location"].startswith("/login")


def test_sign_in_shows_the_overview_with_the_balance(browser: Any, make_tenant: Any) -> None:
    tenant = make_tenant(balance="1234.50")
    response = sign_in(browser, tenant)
    assert response.status_code == 303 and response.headers["Location"] == "/"
    page = browser.get("/").get_data(as_text=True)
    assert "PKR 1,234.50" in page
    assert tenant.email in page


def test_a_wrong_password_is_refused(browser: Any, tenant: Tenant) -> None:
    response = sign_in(browser, tenant, password="wrong-password")
    assert response.status_code == 401
    assert "Email or password is incorrect." in response.get_data(as_text=True)
    assert browser.get("/").status_code == 302


def test_a_form_without_its_csrf_token_is_refused(browser: Any, tenant: Tenant) -> None:
    response = browser.post("/login", data={"email": tenant.email, "password": tenant.password})
    assert response.status_code == 400
    assert "CSRF" in response.get_data(as_text=True)
    sign_in(browser, tenant)
    refused = browser.post("/keys", data={"name": "no token"})
    assert refused.status_code == 400
    forged = browser.post("/keys", data={"name": "forged", "csrf_token": "x" * 40})
    assert forged.status_code == 400
    assert "no token" not in browser.get("/keys").get_data(as_text=True)


def test_the_api_needs_no_csrf_token(client: Any, tenant: Tenant) -> None:
    response = client.post("/api/v1/api-keys", headers=tenant.headers, json={"name": "from the API"})
    assert response.status_code == 201


def test_sign_out_ends_the_session_also_for_a_copy_of_the_cookie(app: Any, browser: Any, tenant: Tenant) -> None:
    sign_in(browser, tenant)
    cookie = browser.get_cookie("zc_console")
    assert cookie is not None
    copy = new_browser(app)
    copy.set_cookie("zc_console", cookie.value)
    assert copy.get("/").status_code == 200
    token = csrf_of(browser, "/")
    assert browser.post("/logout", data={"csrf_token": token}).status_code == 303
    assert browser.get("/").status_code == 302
    assert copy.get("/").status_code == 302  # the copy kept from before the sign-out


def test_a_password_change_ends_every_session_and_token(app: Any, browser: Any, client: Any, tenant: Tenant) -> None:
    sign_in(browser, tenant)
    other = new_browser(app)
    sign_in(other, tenant)
    credentials = {"email": tenant.email, "password": tenant.password}
    jwt = new_browser(app).post("/api/v1/auth/login", json=credentials).get_json()
    token = csrf_of(browser, "/password")
    response = browser.post("/password", data={"current_password": tenant.password, "new_password": "N3w-pass-word",
                                                "confirm_password": "N3w-pass-word", "csrf_token": token})
    assert response.status_code == 303
    assert browser.get("/").status_code == 302
    assert other.get("/").status_code == 302
    api = client.get("/api/v1/balance", headers={"Authorization": f"Bearer {jwt['access_token']}"})
    assert api.status_code == 401
    assert sign_in(browser, tenant, password="N3w-pass-word").status_code == 303
    assert client.get("/api/v1/balance", headers=tenant.headers).status_code == 200  # API keys stay valid


def test_a_wrong_current_password_changes_nothing(browser: Any, tenant: Tenant) -> None:
    sign_in(browser, tenant)
    token = csrf_of(browser, "/password")
    response = browser.post("/password", data={"current_password": "not-it", "new_password": "N3w-pass-word",
                                                "confirm_password": "N3w-pass-word", "csrf_token": token})
    assert response.status_code == 401
    assert browser.get("/").status_code == 200


def test_security_headers_and_cookie_flags(browser: Any, tenant: Tenant) -> None:
    response = sign_in(browser, tenant)
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    page = browser.get("/")
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "default-src 'none'" in csp
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert page.headers["Cache-Control"] == "no-store"
    html = page.get_data(as_text=True)
    assert "<script>" not in html and "style=" not in html  # nothing inline for the CSP to refuse
    assert not re.search(r'(src|href)="(https?:)?//', html)  # no asset from another origin


def test_another_tenants_ids_answer_404(browser: Any, client: Any, make_tenant: Any, upload_audio: Any) -> None:
    owner, intruder = make_tenant(), make_tenant()
    audio = upload_audio(owner)
    call = client.post("/api/v1/calls", headers=owner.headers,
                       json={"phone_number": "03001234561", "audio_id": audio["id"]}).get_json()
    campaign = client.post("/api/v1/campaigns", headers=owner.headers, content_type="multipart/form-data",
                           data={"name": "theirs", "audio_id": audio["id"],
                                 "csv_file": (io.BytesIO(b"phone\n03001234562\n"), "l.csv")}).get_json()
    sign_in(browser, intruder)
    token = csrf_of(browser, "/")
    for path in (f"/calls/{call['id']}", f"/campaigns/{campaign['id']}", f"/campaigns/{campaign['id']}/progress",
                 f"/campaigns/{campaign['id']}/report.csv", f"/audio/{audio['id']}.wav"):
        assert browser.get(path).status_code == 404, path
    for path in (f"/calls/{call['id']}/cancel", f"/campaigns/{campaign['id']}/pause",
                 f"/campaigns/{campaign['id']}/cancel", f"/audio/{audio['id']}/delete"):
        assert browser.post(path, data={"csrf_token": token}).status_code == 404, path
    assert client.get(f"/api/v1/calls/{call['id']}", headers=owner.headers).get_json()["status"] == "QUEUED"
    assert "theirs" not in browser.get("/campaigns").get_data(as_text=True)


def test_pages_show_the_account_data(browser: Any, client: Any, tenant: Tenant, upload_audio: Any) -> None:
    audio = upload_audio(tenant, name="Eid greeting")
    sign_in(browser, tenant)
    token = csrf_of(browser, "/calls")
    placed = browser.post("/calls", data={"phone_number": "0300 1234566", "audio_id": audio["id"],
                                          "csrf_token": token})
    assert placed.status_code == 303
    call_page = browser.get(placed.headers["Location"]).get_data(as_text=True)
    assert "+923001234566" in call_page and "QUEUED" in call_page
    listed = client.get("/api/v1/calls?phone_number=03001234566", headers=tenant.headers).get_json()
    assert listed["pagination"]["total"] == 1  # placed through the same service as the API
    assert "Eid greeting" in browser.get("/audio").get_data(as_text=True)
    calls = browser.get("/calls?status=QUEUED").get_data(as_text=True)
    assert "+923001234566" in calls
    assert "+923001234566" not in browser.get("/calls?status=COMPLETED").get_data(as_text=True)
    export = browser.get("/calls.csv?phone_number=03001234566")
    assert export.mimetype == "text/csv" and "'+923001234566" in export.get_data(as_text=True)
    bad = browser.get("/calls?phone_number=12")
    assert "Not a valid Pakistani phone number" in bad.get_data(as_text=True)
    ledger = browser.get("/billing").get_data(as_text=True)
    assert "RESERVE" in ledger and "TOPUP" in ledger
    assert "RESERVE" in browser.get("/billing.csv").get_data(as_text=True)


def test_deleting_audio_in_use_is_refused_with_the_apis_reason(browser: Any, client: Any, tenant: Tenant,
                                                                upload_audio: Any) -> None:
    audio = upload_audio(tenant)
    client.post("/api/v1/calls", headers=tenant.headers, json={"phone_number": "03001234561", "audio_id": audio["id"]})
    sign_in(browser, tenant)
    token = csrf_of(browser, "/audio")
    response = browser.post(f"/audio/{audio['id']}/delete", data={"csrf_token": token}, follow_redirects=True)
    page = response.get_data(as_text=True)
    assert "This audio file is still used by pending calls or active campaigns." in page
    assert "AUDIO_IN_USE" in page
    assert client.get(f"/api/v1/audio/{audio['id']}", headers=tenant.headers).status_code == 200


def test_upload_errors_are_the_apis(browser: Any, client: Any, tenant: Tenant) -> None:
    sign_in(browser, tenant)
    token = csrf_of(browser, "/audio")
    response = browser.post("/audio", content_type="multipart/form-data", follow_redirects=True,
                            data={"csrf_token": token, "file": (io.BytesIO(b"not audio at all" * 10), "x.wav")})
    api = client.post("/api/v1/audio", headers=tenant.headers, content_type="multipart/form-data",
                      data={"file": (io.BytesIO(b"not audio at all" * 10), "x.wav")}).get_json()["error"]
    page = response.get_data(as_text=True)
    assert f"[{api['code']}]" in page and api["message"] in page
    ok = browser.post("/audio", content_type="multipart/form-data", follow_redirects=True,
                      data={"csrf_token": token, "name": "tone", "file": (io.BytesIO(wav_bytes(1.0)), "t.wav")})
    assert "“tone” is ready" in ok.get_data(as_text=True)


def test_keys_are_shown_once_and_revoked(browser: Any, client: Any, tenant: Tenant) -> None:
    sign_in(browser, tenant)
    token = csrf_of(browser, "/keys")
    created = browser.post("/keys", data={"name": "CRM", "csrf_token": token})
    assert created.status_code == 201
    key = re.search(r'id="new-key" readonly value="(zc_live_[^"]+)"', created.get_data(as_text=True))
    assert key
    headers = {"Authorization": f"Bearer {key.group(1)}"}
    assert client.get("/api/v1/balance", headers=headers).status_code == 200
    page = browser.get("/keys").get_data(as_text=True)
    assert key.group(1) not in page  # shown once
    keys = client.get("/api/v1/api-keys", headers=tenant.headers).get_json()["data"]
    crm = next(k for k in keys if k["name"] == "CRM")
    assert browser.post(f"/keys/{crm['id']}/revoke", data={"csrf_token": token}).status_code == 303
    assert client.get("/api/v1/balance", headers=headers).status_code == 401


def test_do_not_call_add_search_remove(browser: Any, client: Any, tenant: Tenant) -> None:
    sign_in(browser, tenant)
    token = csrf_of(browser, "/dnc")
    browser.post("/dnc", data={"phone_number": "0300-1234567", "reason": "asked", "csrf_token": token})
    listed = client.get("/api/v1/dnc", headers=tenant.headers).get_json()["data"]
    assert [n["phone_number"] for n in listed] == ["+923001234567"]
    assert "+923001234567" in browser.get("/dnc?phone_number=03001234567").get_data(as_text=True)
    browser.post("/dnc/remove", data={"phone_number": "+923001234567", "csrf_token": token})
    assert client.get("/api/v1/dnc", headers=tenant.headers).get_json()["data"] == []


def test_sign_in_is_limited_per_account_across_addresses(browser: Any, make_tenant: Any, settings: Any) -> None:
    tenant = make_tenant()
    token = csrf_of(browser)
    allowed = int(settings.ratelimit_login.split()[0])
    statuses = [browser.post("/login", data={"email": tenant.email, "password": "wrong", "csrf_token": token},
                             environ_base={"REMOTE_ADDR": f"10.1.2.{i}"}).status_code for i in range(allowed + 1)]
    assert statuses == [401] * allowed + [429]
    refused = browser.post("/login", data={"email": tenant.email, "password": tenant.password, "csrf_token": token},
                           environ_base={"REMOTE_ADDR": "10.9.9.9"})
    assert refused.status_code == 429 and "Retry-After" in refused.headers


def test_the_api_and_the_page_say_why_a_campaign_is_not_dialing(browser: Any, client: Any, tenant: Tenant,
                                                                 upload_audio: Any, sessions: Any) -> None:
    from datetime import UTC, datetime, timedelta

    from core.models import Campaign

    audio = upload_audio(tenant)
    start = datetime.now(UTC) + timedelta(days=2)
    created = client.post("/api/v1/campaigns", headers=tenant.headers, content_type="multipart/form-data",
                          data={"name": "later", "audio_id": audio["id"], "start_at": start.isoformat(),
                                "window_start": "09:00", "window_end": "21:00",
                                "csv_file": (io.BytesIO(b"phone\n03001234562\n"), "l.csv")}).get_json()
    assert created["not_dialing"]["reason"] == "IMPORTING"
    with sessions() as session:
        session.get(Campaign, created["id"]).status = "SCHEDULED"
        session.commit()
    body = client.get(f"/api/v1/campaigns/{created['id']}", headers=tenant.headers).get_json()
    why = body["not_dialing"]
    assert why["reason"] == "SCHEDULED"
    assert datetime.fromisoformat(why["next_dialing_at"]) >= start - timedelta(seconds=1)
    with sessions() as session:
        row = session.get(Campaign, created["id"])
        row.status, row.window_start, row.window_end = "RUNNING", "00:00", "00:01"
        session.commit()
    why = client.get(f"/api/v1/campaigns/{created['id']}", headers=tenant.headers).get_json()["not_dialing"]
    now = datetime.now(UTC)
    if why is not None:  # outside 00:00-00:01 Karachi (always, but for one minute a day)
        assert why["reason"] == "OUTSIDE_CALLING_WINDOW"
        assert datetime.fromisoformat(why["next_dialing_at"]) > now
    sign_in(browser, tenant)
    page = browser.get(f"/campaigns/{created['id']}").get_data(as_text=True)
    assert ("Outside its calling window" in page) == (why is not None)
    with sessions() as session:
        row = session.get(Campaign, created["id"])
        row.status, row.pause_reason = "PAUSED", "INSUFFICIENT_BALANCE"
        session.commit()
    why = client.get(f"/api/v1/campaigns/{created['id']}", headers=tenant.headers).get_json()["not_dialing"]
    assert why["reason"] == "PAUSED_FOR_BALANCE" and why["next_dialing_at"] is None
    assert "the balance cannot pay" in browser.get(f"/campaigns/{created['id']}").get_data(as_text=True)
