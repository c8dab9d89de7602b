"""/api/v1/webhooks: endpoints, secrets, validation, tenant isolation, URLs refused at creation."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from core.db import utcnow
from core.models import WebhookDelivery
from tests.api.conftest import assert_error

PUBLIC_HTTPS = "https://hooks.example.com/zenscall"


@pytest.fixture()
def private_ok(make_app: Any) -> Any:
    """An app that lets webhooks reach 127.0.0.1 (as development and tests do)."""
    return make_app(webhook_allow_private=True)


@pytest.fixture()
def strict(make_app: Any) -> Any:
    return make_app(webhook_allow_private=False)


def create(client: Any, tenant: Any, **body: Any) -> Any:
    return client.post("/api/v1/webhooks", headers=tenant.headers,
                       json={"url": "http://127.0.0.1:9/x", "events": ["*"], **body})


def test_crud_and_the_secret_is_shown_on_creation_and_rotation_only(private_ok: Any, tenant: Any) -> None:
    client = private_ok.test_client()
    made = create(client, tenant, events=["call.completed", "call.failed"], description="crm")
    assert made.status_code == 201, made.get_json()
    hook = made.get_json()
    assert {"id", "url", "events", "enabled", "created_at", "secret"} <= set(hook)
    assert hook["secret"].startswith("whsec_") and len(hook["secret"]) > 30
    assert hook["enabled"] is True and hook["events"] == ["call.completed", "call.failed"]

    one = client.get(f"/api/v1/webhooks/{hook['id']}", headers=tenant.headers).get_json()
    assert "secret" not in one and one["description"] == "crm"
    listed = client.get("/api/v1/webhooks", headers=tenant.headers).get_json()
    assert [h["id"] for h in listed["data"]] == [hook["id"]] and "secret" not in listed["data"][0]
    assert listed["pagination"]["total"] == 1

    changed = client.patch(f"/api/v1/webhooks/{hook['id']}", headers=tenant.headers,
                           json={"events": ["*"], "enabled": False})
    assert changed.status_code == 200
    assert changed.get_json()["enabled"] is False and changed.get_json()["disabled_reason"] == "BY_USER"
    back = client.patch(f"/api/v1/webhooks/{hook['id']}", headers=tenant.headers, json={"enabled": True})
    assert back.get_json()["enabled"] is True and back.get_json()["disabled_reason"] is None

    rotated = client.post(f"/api/v1/webhooks/{hook['id']}/rotate-secret", headers=tenant.headers).get_json()
    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != hook["secret"]

    assert client.delete(f"/api/v1/webhooks/{hook['id']}", headers=tenant.headers).status_code == 204
    assert_error(client.get(f"/api/v1/webhooks/{hook['id']}", headers=tenant.headers), 404, "NOT_FOUND")


def test_the_signing_secret_is_made_once_and_rotates(private_ok: Any, tenant: Any) -> None:
    client = private_ok.test_client()
    first = client.get("/api/v1/webhooks/signing-secret", headers=tenant.headers).get_json()
    assert first["secret"].startswith("whsec_") and first["previous_secret_expires_at"] is None
    assert client.get("/api/v1/webhooks/signing-secret", headers=tenant.headers).get_json() == first
    rotated = client.post("/api/v1/webhooks/signing-secret", headers=tenant.headers).get_json()
    assert rotated["secret"] != first["secret"] and rotated["previous_secret_expires_at"]


def test_another_tenants_webhook_ids_answer_404(private_ok: Any, make_tenant: Any, sessions: Any) -> None:
    client = private_ok.test_client()
    owner, other = make_tenant(), make_tenant()
    hook = create(client, owner).get_json()
    with sessions() as session:  # a delivery of the owner's endpoint
        delivery = WebhookDelivery(send_id="x", account_id=owner.account_id, endpoint_id=hook["id"], event_id="evt_x",
                                   event_type="ping", url="http://127.0.0.1:9/x", attempt_no=1, status="FAILED",
                                   latency_ms=1, created_at=utcnow())
        session.add(delivery)
        session.commit()
        delivery_id = delivery.id
    for method, path, body in [("get", "", None), ("patch", "", {"description": "x"}), ("delete", "", None),
                               ("post", "/rotate-secret", None), ("post", "/test", None), ("get", "/deliveries", None)]:
        response = getattr(client, method)(f"/api/v1/webhooks/{hook['id']}{path}", headers=other.headers, json=body)
        assert_error(response, 404, "NOT_FOUND")
    assert_error(client.post(f"/api/v1/webhooks/deliveries/{delivery_id}/redeliver", headers=other.headers), 404)
    assert client.get("/api/v1/webhooks", headers=other.headers).get_json()["data"] == []
    assert client.get(f"/api/v1/webhooks/{hook['id']}", headers=owner.headers).status_code == 200


@pytest.mark.parametrize("body,field", [
    ({"events": []}, "events"),
    ({"events": ["call.exploded"]}, "events"),
    ({"events": "*"}, "events"),
    ({"url": None}, "url"),
    ({"description": "x" * 501}, "description"),
])
def test_bad_bodies_answer_422(private_ok: Any, tenant: Any, body: dict[str, Any], field: str) -> None:
    error = assert_error(create(private_ok.test_client(), tenant, **body), 422, "VALIDATION_ERROR")
    assert field in str(error["details"])


@pytest.mark.parametrize("url", [
    "http://127.0.0.1/hook", "http://localhost:8080/hook", "http://10.1.2.3/hook", "http://192.168.1.1/",
    "http://172.16.0.5/", "http://169.254.169.254/latest/meta-data/", "http://[::1]/hook", "http://[fd00::1]/",
    "http://[::ffff:127.0.0.1]/", "http://100.64.0.1/", "http://0.0.0.0/", "http://2130706433/",
])
def test_private_loopback_and_metadata_addresses_are_refused_at_creation(strict: Any, tenant: Any,
                                                                         url: str) -> None:
    error = assert_error(create(strict.test_client(), tenant, url=url), 422, "INVALID_WEBHOOK_URL")
    assert "url" in error["details"]


@pytest.mark.parametrize("url", ["ftp://example.com/x", "file:///etc/passwd", "javascript:alert(1)", "example.com",
                                 "https://user:pw@example.com/", "https://exa mple.com/", "gopher://127.0.0.1:6379/"])
def test_only_http_urls_are_accepted(private_ok: Any, tenant: Any, url: str) -> None:
    assert_error(create(private_ok.test_client(), tenant, url=url), 422, "INVALID_WEBHOOK_URL")


def test_production_takes_https_only(make_app: Any, tenant: Any) -> None:
    from dataclasses import replace

    app = make_app(webhook_allow_private=False)
    services = app.extensions["zenscall"]
    services.settings = replace(services.settings, env="production")
    error = assert_error(create(app.test_client(), tenant, url="http://93.184.216.34/hook"), 422,
                         "INVALID_WEBHOOK_URL")
    assert "https" in error["message"]


def test_status_callback_is_checked_like_an_endpoint(strict: Any, tenant: Any, upload_audio: Any) -> None:
    audio = upload_audio(tenant)
    response = strict.test_client().post("/api/v1/calls", headers=tenant.headers, json={
        "phone_number": "03001234567", "audio_id": audio["id"], "status_callback": "http://127.0.0.1/cb"})
    error = assert_error(response, 422, "INVALID_WEBHOOK_URL")
    assert "status_callback" in error["details"]


def test_the_endpoints_are_in_the_openapi_document(client: Any) -> None:
    paths = client.get("/api/v1/openapi.json").get_json()["paths"]
    for path, methods in {"/api/v1/webhooks": {"get", "post"},
                          "/api/v1/webhooks/{webhook_id}": {"get", "patch", "delete"},
                          "/api/v1/webhooks/{webhook_id}/rotate-secret": {"post"},
                          "/api/v1/webhooks/{webhook_id}/test": {"post"},
                          "/api/v1/webhooks/{webhook_id}/deliveries": {"get"},
                          "/api/v1/webhooks/deliveries/{delivery_id}/redeliver": {"post"},
                          "/api/v1/webhooks/signing-secret": {"get", "post"}}.items():
        assert methods <= set(paths[path]), path


def test_deliveries_of_an_endpoint_page_and_filter(private_ok: Any, tenant: Any, sessions: Any) -> None:
    client = private_ok.test_client()
    hook = create(client, tenant).get_json()
    with sessions() as session:
        for n in range(1, 4):
            session.add(WebhookDelivery(send_id="s", account_id=tenant.account_id, endpoint_id=hook["id"],
                                        event_id="evt_1", event_type="ping", url="http://127.0.0.1:9/x", attempt_no=n,
                                        status="SUCCEEDED" if n == 3 else "FAILED", http_status=500 if n < 3 else 204,
                                        latency_ms=5, created_at=utcnow()))
        session.commit()
        assert session.execute(sa.select(sa.func.count()).select_from(WebhookDelivery).where(
            WebhookDelivery.endpoint_id == hook["id"])).scalar() == 3
    page = client.get(f"/api/v1/webhooks/{hook['id']}/deliveries?per_page=2", headers=tenant.headers).get_json()
    assert [d["attempt"] for d in page["data"]] == [3, 2] and page["pagination"]["total_pages"] == 2
    ok = client.get(f"/api/v1/webhooks/{hook['id']}/deliveries?status=SUCCEEDED", headers=tenant.headers).get_json()
    assert [d["http_status"] for d in ok["data"]] == [204]
    assert_error(client.get(f"/api/v1/webhooks/{hook['id']}/deliveries?status=LOST", headers=tenant.headers), 422)


def test_the_balance_alert_threshold(private_ok: Any, tenant: Any) -> None:
    client = private_ok.test_client()
    assert client.get("/api/v1/webhooks/balance-alert", headers=tenant.headers).get_json() == {
        "low_balance_threshold": None}
    done = client.put("/api/v1/webhooks/balance-alert", headers=tenant.headers, json={"low_balance_threshold": "250.5"})
    assert done.status_code == 200 and done.get_json() == {"low_balance_threshold": "250.50"}
    assert client.get("/api/v1/webhooks/balance-alert", headers=tenant.headers).get_json() == {
        "low_balance_threshold": "250.50"}
    for bad in ("-1", "abc", "10000001", "1.001", "NaN", "Infinity", 12, [1]):
        assert_error(client.put("/api/v1/webhooks/balance-alert", headers=tenant.headers,
                                json={"low_balance_threshold": bad}), 422, "VALIDATION_ERROR")
    cleared = client.put("/api/v1/webhooks/balance-alert", headers=tenant.headers, json={"low_balance_threshold": None})
    assert cleared.get_json() == {"low_balance_threshold": None}


def test_retire_deletes_what_is_older_than_the_retention(sessions: Any, settings: Any, tenant: Any) -> None:
    from datetime import timedelta

    from core import outbox
    from core.models import WebhookEvent, WebhookSend
    from webhooks.sweeper import retire, send_row

    old = utcnow() - timedelta(days=31)
    with sessions() as session:
        rows = [outbox.event(tenant.account_id, "ping", "webhook", f"w{n}", n, old) for n in range(2)]
        for r in rows:
            r["fanned_out_at"] = old
        outbox.write(session, rows)

        class Ev:
            def __init__(self, r: dict[str, Any]) -> None:
                self.__dict__.update(r)

        sends = [send_row(Ev(r), old, endpoint_id="e", retry_hours=24) for r in rows]
        sends[0].update(status="SUCCEEDED", updated_at=old)  # finished long ago: goes
        session.execute(sa.insert(WebhookSend.__table__), sends)  # the other is still PENDING: stays
        session.add(WebhookDelivery(send_id=sends[0]["id"], account_id=tenant.account_id, endpoint_id="e",
                                    event_id=rows[0]["id"], event_type="ping", url="http://x/", attempt_no=1,
                                    status="SUCCEEDED", latency_ms=1, created_at=old))
        session.commit()
    engine = sa.create_engine(settings.database_url)
    with engine.connect() as conn:
        retire(conn, 30)
    engine.dispose()
    with sessions() as session:
        left_events = set(session.execute(sa.select(WebhookEvent.id).where(
            WebhookEvent.id.in_([r["id"] for r in rows]))).scalars())
        left_sends = set(session.execute(sa.select(WebhookSend.id).where(
            WebhookSend.id.in_([x["id"] for x in sends]))).scalars())
        deliveries = session.execute(sa.select(sa.func.count()).select_from(WebhookDelivery).where(
            WebhookDelivery.send_id == sends[0]["id"])).scalar()
    assert left_events == {rows[1]["id"]} and left_sends == {sends[1]["id"]} and deliveries == 0


def test_a_campaigns_status_callback_receives_its_and_its_calls_events(private_ok: Any, tenant: Any,
                                                                       upload_audio: Any, settings: Any) -> None:
    import io
    from dataclasses import replace

    from campaigns.importer import import_campaign
    from core.models import WebhookSend
    from webhooks.sweeper import callback_target, fan_out

    client = private_ok.test_client()
    audio = upload_audio(tenant)
    form = {"name": "cb", "audio_id": audio["id"], "csv_file": (io.BytesIO(b"phone\n03001110001\n"), "n.csv")}
    bad = client.post("/api/v1/campaigns", headers=tenant.headers, content_type="multipart/form-data",
                      data={**form, "status_callback": "ftp://x/"})
    assert "status_callback" in assert_error(bad, 422, "INVALID_WEBHOOK_URL")["details"]
    form["csv_file"] = (io.BytesIO(b"phone\n03001110001\n"), "n.csv")
    made = client.post("/api/v1/campaigns", headers=tenant.headers, content_type="multipart/form-data",
                       data={**form, "status_callback": "http://127.0.0.1:9/cb"})
    assert made.status_code == 201 and made.get_json()["status_callback"] == "http://127.0.0.1:9/cb"
    campaign_id = made.get_json()["id"]
    engine = private_ok.extensions["zenscall"].engine
    import_campaign(campaign_id, settings=settings, engine=engine)
    (call,) = client.get(f"/api/v1/campaigns/{campaign_id}/calls", headers=tenant.headers).get_json()["data"]
    assert client.post(f"/api/v1/campaigns/{campaign_id}/cancel", headers=tenant.headers).status_code == 200
    with engine.connect() as conn:
        while fan_out(conn, replace(settings, webhook_allow_private=True)):
            pass
        sends = conn.execute(sa.select(WebhookSend.subject, WebhookSend.target, WebhookSend.callback_url).where(
            WebhookSend.account_id == tenant.account_id)).all()
    target = callback_target("http://127.0.0.1:9/cb")
    assert {(s, t, u) for s, t, u in sends} == {(f"campaign:{campaign_id}", target, "http://127.0.0.1:9/cb"),
                                               (f"call:{call['id']}", target, "http://127.0.0.1:9/cb")}
    assert len(sends) == 4  # import_completed, started, cancelled; the call's cancelled
