"""The console's webhook pages through Flask's test client: an endpoint's life (the secret shown
once, list, change, rotate, delete), the API's refusals, a ping delivered to a real receiver and
redelivered, tenant isolation, CSRF, the signing secret and the balance alert."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
import sqlalchemy as sa

from core.models import Account, WebhookDelivery, WebhookEndpoint, WebhookSend, WebhookSigningSecret
from tests.console.test_pages import csrf_of, new_browser, sign_in
from tests.webhooks.conftest import Receiver
from webhooks.delivery import deliver_with

SECRET = re.compile(r'id="new-secret" readonly value="(whsec_[^"]+)"')


@pytest.fixture(scope="module")
def private_app(settings: Any) -> Iterator[Any]:
    """An app that lets webhooks reach 127.0.0.1, as development and the tests' receivers need."""
    from api import create_app

    built = create_app(replace(settings, webhook_allow_private=True))
    built.config["TESTING"] = True
    yield built
    built.extensions["zenscall"].engine.dispose()


@pytest.fixture()
def receiver() -> Iterator[Receiver]:
    started = Receiver().start()
    yield started
    started.stop()


def signed_in(app: Any, tenant: Any) -> Any:
    browser = new_browser(app)
    assert sign_in(browser, tenant).status_code == 303
    return browser


def add(browser: Any, url: str = "http://127.0.0.1:9/hooks", events: tuple[str, ...] = ("*",),
        description: str = "") -> Any:
    return browser.post("/webhooks", data={"url": url, "events": list(events), "description": description,
                                           "csrf_token": csrf_of(browser, "/webhooks")})


def endpoint_of(sessions: Any, account_id: str) -> WebhookEndpoint:
    with sessions() as session:
        return session.execute(sa.select(WebhookEndpoint).where(WebhookEndpoint.account_id == account_id)).scalar_one()


def first_delivery(sessions: Any, endpoint_id: str) -> str:
    with sessions() as session:
        found = session.execute(sa.select(WebhookDelivery.id).where(
            WebhookDelivery.endpoint_id == endpoint_id)).scalar()
    assert found is not None
    return str(found)


def text(response: Any) -> str:
    return html.unescape(response.get_data(as_text=True))


def test_create_shows_the_secret_once_then_list_change_rotate_delete(private_app: Any, make_tenant: Any,
                                                                       sessions: Any) -> None:
    tenant = make_tenant()
    browser = signed_in(private_app, tenant)
    made = add(browser, events=("call.completed", "call.failed"), description="CRM")
    assert made.status_code == 201
    shown = SECRET.search(made.get_data(as_text=True))
    ep = endpoint_of(sessions, tenant.account_id)
    assert shown and shown.group(1) == ep.secret and ep.events == ["call.completed", "call.failed"]
    assert "shown only this once" in text(made)

    listed = text(browser.get("/webhooks"))
    assert ep.secret not in listed  # once only
    assert "http://127.0.0.1:9/hooks" in listed and "call.completed, call.failed" in listed and "CRM" in listed
    assert 'href="/webhooks"' in listed and 'aria-current="page"' in listed  # the navigation's link

    page = f"/webhooks/{ep.id}"
    changed = browser.post(page, data={"url": "http://127.0.0.1:9/other", "events": ["*"], "description": "",
                                       "csrf_token": csrf_of(browser, page)})  # "enabled" not ticked
    assert changed.status_code == 303 and changed.headers["Location"] == page
    after = endpoint_of(sessions, tenant.account_id)
    assert (after.url, after.events, after.description, after.enabled, after.disabled_reason) == (
        "http://127.0.0.1:9/other", ["*"], None, False, "BY_USER")
    assert "disabled" in text(browser.get("/webhooks")) and "BY_USER since" in text(browser.get("/webhooks"))
    browser.post(page, data={"url": after.url, "events": ["*"], "enabled": "on", "csrf_token": csrf_of(browser, page)})
    assert endpoint_of(sessions, tenant.account_id).enabled is True

    rotated = browser.post(f"{page}/rotate-secret", data={"csrf_token": csrf_of(browser, page)})
    assert rotated.status_code == 200
    new = SECRET.search(rotated.get_data(as_text=True))
    row = endpoint_of(sessions, tenant.account_id)
    assert new and new.group(1) == row.secret != ep.secret and row.previous_secret == ep.secret
    assert "for 24 hours" in text(rotated)
    assert row.secret not in text(browser.get(page))

    gone = browser.post(f"{page}/delete", data={"csrf_token": csrf_of(browser, page)})
    assert gone.status_code == 303 and gone.headers["Location"] == "/webhooks"
    assert "is deleted" in text(browser.get("/webhooks"))
    assert browser.get(page).status_code == 404


def test_an_unsafe_url_is_refused_with_the_apis_message(app: Any, private_app: Any, make_tenant: Any,
                                                        sessions: Any) -> None:
    tenant = make_tenant()
    strict = signed_in(app, tenant)  # private addresses refused, as in production
    refused = add(strict, url="http://169.254.169.254/latest/meta-data")
    assert refused.status_code == 422
    assert ("The URL resolves to a private, loopback, link-local or reserved address. [INVALID_WEBHOOK_URL]"
            in text(refused))
    assert 'value="http://169.254.169.254/latest/meta-data"' in refused.get_data(as_text=True)  # the form kept
    api = strict.post("/api/v1/webhooks", headers=tenant.headers,
                      json={"url": "http://169.254.169.254/latest/meta-data", "events": ["*"]})
    assert api.get_json()["error"]["message"] in text(refused)  # one rule, one message

    browser = signed_in(private_app, tenant)
    assert "Choose 1 to" in text(add(browser, events=()))
    assert "Unknown event type 'call.nope'" in text(add(browser, events=("call.nope",)))
    with sessions() as session:
        assert session.execute(sa.select(sa.func.count()).select_from(WebhookEndpoint).where(
            WebhookEndpoint.account_id == tenant.account_id)).scalar() == 0
    add(browser)
    ep = endpoint_of(sessions, tenant.account_id)
    page = f"/webhooks/{ep.id}"
    browser.post(page, data={"url": "ftp://127.0.0.1/x", "events": ["call.failed"], "enabled": "on",
                             "csrf_token": csrf_of(browser, page)})
    assert "The URL must be an http or https URL. [INVALID_WEBHOOK_URL]" in text(browser.get(page))
    kept = endpoint_of(sessions, tenant.account_id)
    assert (kept.url, kept.events) == (ep.url, ep.events)  # nothing of a refused change is kept


def test_a_ping_shows_in_the_deliveries_and_is_redelivered(private_app: Any, make_tenant: Any, sessions: Any,
                                                           receiver: Receiver) -> None:
    tenant = make_tenant()
    browser = signed_in(private_app, tenant)
    add(browser, url=receiver.url)
    ep = endpoint_of(sessions, tenant.account_id)
    page = f"/webhooks/{ep.id}"
    assert "No deliveries" in text(browser.get(page))
    pinged = browser.post(f"{page}/test", data={"csrf_token": csrf_of(browser, page)})
    assert pinged.status_code == 303
    with sessions() as session:
        send_id, event_id = session.execute(sa.select(WebhookSend.id, WebhookSend.event_id).where(
            WebhookSend.endpoint_id == ep.id)).one()
    assert event_id in text(browser.get(page))  # the flash names it
    settings = private_app.extensions["zenscall"].settings
    assert deliver_with(sessions, settings, send_id) == "SUCCEEDED"  # what the RQ job does
    shown = text(browser.get(page))
    assert "ping" in shown and event_id in shown and "SUCCEEDED" in shown and ">200<" in shown
    assert event_id in text(browser.get(f"{page}?status=SUCCEEDED"))
    assert "No deliveries with status FAILED" in text(browser.get(f"{page}?status=FAILED"))

    delivery_id = first_delivery(sessions, ep.id)
    again = browser.post(f"{page}/deliveries/{delivery_id}/redeliver", data={"csrf_token": csrf_of(browser, page)})
    assert again.status_code == 303 and again.headers["Location"] == page
    assert deliver_with(sessions, settings, send_id) == "SUCCEEDED"
    assert [b["id"] for b in receiver.bodies()] == [event_id, event_id]
    with sessions() as session:
        attempts = session.execute(sa.select(WebhookDelivery.attempt_no).where(
            WebhookDelivery.endpoint_id == ep.id)).scalars().all()
    assert len(attempts) == 2
    assert text(browser.get(page)).count(event_id) >= 2


def test_another_tenants_endpoint_and_delivery_answer_404(private_app: Any, make_tenant: Any, sessions: Any,
                                                          receiver: Receiver) -> None:
    owner, other = make_tenant(), make_tenant()
    mine = signed_in(private_app, owner)
    add(mine, url=receiver.url)
    ep = endpoint_of(sessions, owner.account_id)
    page = f"/webhooks/{ep.id}"
    mine.post(f"{page}/test", data={"csrf_token": csrf_of(mine, page)})
    with sessions() as session:
        send_id = session.execute(sa.select(WebhookSend.id).where(WebhookSend.endpoint_id == ep.id)).scalar_one()
    deliver_with(sessions, private_app.extensions["zenscall"].settings, send_id)
    delivery_id = first_delivery(sessions, ep.id)

    theirs = signed_in(private_app, other)
    add(theirs)
    their_ep = endpoint_of(sessions, other.account_id)
    token = csrf_of(theirs, "/webhooks")
    assert theirs.get(page).status_code == 404
    for path in (page, f"{page}/delete", f"{page}/rotate-secret", f"{page}/test",
                 f"{page}/deliveries/{delivery_id}/redeliver",
                 f"/webhooks/{their_ep.id}/deliveries/{delivery_id}/redeliver"):
        response = theirs.post(path, data={"url": "http://127.0.0.1:9/stolen", "events": ["*"], "csrf_token": token})
        assert response.status_code == 404, path
        assert "There is no such page in your account." in text(response)
    assert ep.url not in text(theirs.get("/webhooks"))
    kept = endpoint_of(sessions, owner.account_id)
    assert (kept.url, kept.secret) == (ep.url, ep.secret)
    with sessions() as session:
        assert session.execute(sa.select(sa.func.count()).select_from(WebhookSend).where(
            WebhookSend.endpoint_id == ep.id)).scalar() == 1  # no ping, no redelivery made for the other


def test_forms_without_their_csrf_token_are_refused(private_app: Any, make_tenant: Any, sessions: Any) -> None:
    tenant = make_tenant()
    browser = signed_in(private_app, tenant)
    refused = browser.post("/webhooks", data={"url": "http://127.0.0.1:9/x", "events": ["*"]})
    assert refused.status_code == 400 and "CSRF" in text(refused)
    add(browser)
    ep = endpoint_of(sessions, tenant.account_id)
    browser.get("/webhooks")  # makes the signing secret
    with sessions() as session:
        signing = session.get(WebhookSigningSecret, tenant.account_id).secret
    for path in (f"/webhooks/{ep.id}", f"/webhooks/{ep.id}/delete", f"/webhooks/{ep.id}/rotate-secret",
                 f"/webhooks/{ep.id}/test", "/webhooks/signing-secret", "/webhooks/balance-alert"):
        response = browser.post(path, data={"url": "http://127.0.0.1:9/forged", "events": ["*"],
                                            "low_balance_threshold": "5"})
        assert response.status_code == 400, path
    kept = endpoint_of(sessions, tenant.account_id)
    assert (kept.url, kept.secret) == (ep.url, ep.secret)
    with sessions() as session:
        assert session.get(Account, tenant.account_id).low_balance_threshold is None
        assert session.get(WebhookSigningSecret, tenant.account_id).secret == signing
        assert session.execute(sa.select(sa.func.count()).select_from(WebhookSend).where(
            WebhookSend.endpoint_id == ep.id)).scalar() == 0


def test_the_signing_secret_and_the_balance_alert(private_app: Any, make_tenant: Any, sessions: Any) -> None:
    tenant = make_tenant()
    browser = signed_in(private_app, tenant)
    api = browser.get("/api/v1/webhooks/signing-secret", headers=tenant.headers).get_json()
    assert api["secret"] in text(browser.get("/webhooks"))  # the same secret as the API's
    rotated = browser.post("/webhooks/signing-secret", data={"csrf_token": csrf_of(browser, "/webhooks")})
    assert rotated.status_code == 303
    with sessions() as session:
        row = session.get(WebhookSigningSecret, tenant.account_id)
        assert row.previous_secret == api["secret"] and row.secret != api["secret"]
    page = text(browser.get("/webhooks"))
    assert "the old one also signs until" in page and row.secret in page

    def alert(value: str) -> str:
        done = browser.post("/webhooks/balance-alert", data={"low_balance_threshold": value,
                                                             "csrf_token": csrf_of(browser, "/webhooks")})
        assert done.status_code == 303
        return text(browser.get("/webhooks"))

    assert "Now: PKR 1,250.50" in alert("1,250.5")
    assert browser.get("/api/v1/webhooks/balance-alert", headers=tenant.headers).get_json() == {
        "low_balance_threshold": "1250.50"}
    assert 'must be an amount in PKR, e.g. "500.00"' in alert("abc")
    assert "with at most 2 decimals" in alert("1.001")
    assert "No alert is set." in alert("")
