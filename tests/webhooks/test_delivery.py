"""Deliveries against a real HTTP receiver on 127.0.0.1: signature, retries, crashes, order, SSRF."""

from __future__ import annotations

import io
import re
import time
from pathlib import Path
from typing import Any

import redis
import sqlalchemy as sa
from rq import Queue
from rq.registry import FailedJobRegistry, FinishedJobRegistry

from core import outbox
from core.call_states import CallStatus
from core.db import utcnow
from core.models import WebhookSend
from tests.conftest import wav_bytes
from tests.waiting import wait_for
from tests.webhooks.conftest import Received, Rig

ROOT = Path(__file__).resolve().parents[2]


def readme_verify() -> Any:
    """The receiver's ``verify`` exactly as the README shows it."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- webhook-receiver -->\n```python\n(.*?)```", text, re.S)
    assert block, "the README's receiver snippet is missing"
    namespace: dict[str, Any] = {}
    exec(compile(block.group(1), "README.md", "exec"), namespace)  # noqa: S102 - our own README
    assert len(block.group(1).strip().splitlines()) <= 12
    return namespace["verify"]


def tenant_with_call(rig: Rig, make_tenant: Any, **call: Any) -> tuple[Any, str]:
    tenant = make_tenant()
    audio = rig.client.post("/api/v1/audio", headers=tenant.headers, content_type="multipart/form-data",
                            data={"file": (io.BytesIO(wav_bytes(1.0)), "m.wav"), "name": "m"}).get_json()
    placed = rig.client.post("/api/v1/calls", headers=tenant.headers,
                             json={"phone_number": "03001234567", "audio_id": audio["id"], **call})
    assert placed.status_code == 201, placed.get_json()
    return tenant, placed.get_json()["id"]


def endpoint(rig: Rig, tenant: Any, url: str, events: list[str] | None = None) -> dict[str, Any]:
    response = rig.client.post("/api/v1/webhooks", headers=tenant.headers,
                               json={"url": url, "events": events or ["*"], "description": "test"})
    assert response.status_code == 201, response.get_json()
    return response.get_json()  # type: ignore[no-any-return]


def write_events(rig: Rig, account_id: str, call_id: str, steps: list[tuple[CallStatus, int]]) -> list[str]:
    """Call events as the dialer writes them (one transaction)."""
    engine = rig.app.extensions["zenscall"].engine
    now = utcnow()
    rows = [outbox.call_event(account_id, call_id, status, attempt, now) for status, attempt in steps]
    with engine.begin() as conn:
        outbox.write(conn, rows)
    return [r["id"] for r in rows]


def send_status(rig: Rig, event_id: str) -> list[str]:
    with rig.app.extensions["zenscall"].engine.connect() as conn:
        return list(conn.execute(sa.select(WebhookSend.status).where(WebhookSend.event_id == event_id)).scalars())


def test_a_cancelled_call_reaches_the_receiver_signed_as_the_readme_verifies(rig: Rig, make_tenant: Any) -> None:
    receiver = rig.receiver()
    tenant, call_id = tenant_with_call(rig, make_tenant)
    hook = endpoint(rig, tenant, receiver.url, ["call.cancelled"])
    rig.sweeper()
    rig.worker()
    assert rig.client.post(f"/api/v1/calls/{call_id}/cancel", headers=tenant.headers).status_code == 200

    got: Received = wait_for("the call.cancelled delivery", lambda: receiver.completed[:1], timeout=30)[0]
    body = got.json
    assert body["type"] == "call.cancelled" and body["id"].startswith("evt_")
    assert got.headers["ZensCall-Event-Id"] == body["id"]
    assert got.headers["ZensCall-Event-Type"] == "call.cancelled"
    # data is the call as GET answers it
    assert body["data"] == rig.client.get(f"/api/v1/calls/{call_id}", headers=tenant.headers).get_json()
    assert body["data"]["status"] == "CANCELLED"

    verify = readme_verify()
    signature = got.headers["ZensCall-Signature"]
    assert verify(hook["secret"], got.body, signature)
    assert not verify(hook["secret"], got.body + b" ", signature)  # a changed body
    assert not verify("whsec_other", got.body, signature)  # another secret
    stamp = int(re.search(r"t=(\d+)", signature).group(1))  # type: ignore[union-attr]
    import hashlib
    import hmac

    old = stamp - 301
    replay = f"t={old},v1=" + hmac.new(hook["secret"].encode(), f"{old}.".encode() + got.body,
                                       hashlib.sha256).hexdigest()
    assert not verify(hook["secret"], got.body, replay)  # validly signed, but older than 5 minutes
    assert len(receiver.received) == 1


def test_a_receiver_failing_three_times_gets_the_event_once_after_four_attempts(rig: Rig, make_tenant: Any) -> None:
    receiver = rig.receiver(lambda n, r: (500 if n < 3 else 200, 0.0))
    tenant, call_id = tenant_with_call(rig, make_tenant)
    hook = endpoint(rig, tenant, receiver.url)
    (event_id,) = write_events(rig, tenant.account_id, call_id, [(CallStatus.DIALING, 1)])
    rig.sweeper()
    rig.worker()

    wait_for("the send to succeed", lambda: send_status(rig, event_id) == ["SUCCEEDED"], timeout=40)
    time.sleep(1.0)  # nothing more comes
    assert len(receiver.completed) == 1
    assert len(receiver.received) == 4
    assert {r.headers["ZensCall-Event-Id"] for r in receiver.received} == {event_id}
    assert len({r.body for r in receiver.received}) == 1  # the same bytes every time

    listed = rig.client.get(f"/api/v1/webhooks/{hook['id']}/deliveries?per_page=10", headers=tenant.headers)
    assert listed.status_code == 200
    rows = listed.get_json()["data"]
    assert [(d["attempt"], d["http_status"], d["status"]) for d in rows] == [
        (4, 200, "SUCCEEDED"), (3, 500, "FAILED"), (2, 500, "FAILED"), (1, 500, "FAILED")]
    assert all(d["event_id"] == event_id and d["event_type"] == "call.dialing" for d in rows)
    assert all(d["next_retry_at"] for d in rows[1:]) and rows[0]["next_retry_at"] is None
    assert all(d["error"].startswith("HTTP 500") for d in rows[1:]) and rows[0]["error"] is None
    assert all(isinstance(d["latency_ms"], int) for d in rows)
    failed = rig.client.get(f"/api/v1/webhooks/{hook['id']}/deliveries?status=FAILED", headers=tenant.headers)
    assert failed.get_json()["pagination"]["total"] == 3

    # a redelivery sends the same event again
    again = rig.client.post(f"/api/v1/webhooks/deliveries/{rows[0]['id']}/redeliver", headers=tenant.headers)
    assert again.status_code == 202 and again.get_json()["event_id"] == event_id
    wait_for("the redelivery", lambda: len(receiver.completed) == 2, timeout=30)
    assert receiver.completed[1].body == receiver.completed[0].body
    # every job ended well (a failed attempt is an outcome the job records, not a job failure)
    queue = Queue(rig.settings.webhook_queue, connection=redis.Redis.from_url(rig.settings.redis_url or ""))
    assert FailedJobRegistry(queue=queue).count == 0
    assert FinishedJobRegistry(queue=queue).count >= 5


def test_a_worker_killed_mid_delivery_loses_nothing(rig: Rig, make_tenant: Any) -> None:
    receiver = rig.receiver(lambda n, r: (200, 3.0 if n == 0 else 0.0))
    tenant, call_id = tenant_with_call(rig, make_tenant)
    endpoint(rig, tenant, receiver.url)
    (event_id,) = write_events(rig, tenant.account_id, call_id, [(CallStatus.DIALING, 1)])
    rig.sweeper()
    first = rig.worker()
    wait_for("the first request to arrive", lambda: receiver.received, timeout=30)
    first.kill9()  # while the receiver is still answering
    rig.worker()

    wait_for("the event to be delivered after the kill", lambda: send_status(rig, event_id) == ["SUCCEEDED"],
             timeout=40)
    assert {r.headers["ZensCall-Event-Id"] for r in receiver.received} == {event_id}
    assert len(receiver.received) >= 2  # at least once: the killed attempt's receiver saw it too


def test_a_redis_flush_loses_nothing(rig: Rig, make_tenant: Any) -> None:
    receiver = rig.receiver()
    tenant, call_id = tenant_with_call(rig, make_tenant)
    endpoint(rig, tenant, receiver.url)
    events = write_events(rig, tenant.account_id, call_id, [(CallStatus.DIALING, 1)])
    rig.sweeper()
    conn = redis.Redis.from_url(rig.settings.redis_url or "")
    queue_key = f"rq:queue:{rig.settings.webhook_queue}"
    wait_for("the job to be enqueued", lambda: conn.llen(queue_key) > 0, timeout=20)
    conn.flushdb()  # the job is gone; no worker ever saw it
    rig.worker()

    wait_for("the event after the flush", lambda: send_status(rig, events[0]) == ["SUCCEEDED"], timeout=40)
    assert [r.headers["ZensCall-Event-Id"] for r in receiver.completed] == events


def test_one_calls_events_arrive_in_order_and_other_calls_do_not_wait(rig: Rig, make_tenant: Any) -> None:
    def answer(n: int, got: Received) -> tuple[int, float]:
        body = got.json
        # call A's first event fails twice; everything else is accepted
        failing = body["data"]["id"] == slow_call[0] and body["type"] == "call.dialing"
        return (503 if failing and sum(1 for r in rig_receiver[0].received[:n]
                                       if r.json["id"] == body["id"]) < 2 else 200), 0.0

    slow_call: list[str] = []
    rig_receiver: list[Any] = []
    receiver = rig.receiver(answer)
    rig_receiver.append(receiver)
    tenant, call_a = tenant_with_call(rig, make_tenant)
    slow_call.append(call_a)
    placed = rig.client.post("/api/v1/calls", headers=tenant.headers,
                             json={"phone_number": "03001234568",
                                   "audio_id": rig.client.get(f"/api/v1/calls/{call_a}", headers=tenant.headers)
                                   .get_json()["audio_id"]})
    call_b = placed.get_json()["id"]
    endpoint(rig, tenant, receiver.url)
    steps = [(CallStatus.DIALING, 1), (CallStatus.RINGING, 1), (CallStatus.ANSWERED, 1), (CallStatus.COMPLETED, 1)]
    a_events = write_events(rig, tenant.account_id, call_a, steps)
    b_events = write_events(rig, tenant.account_id, call_b, steps)
    rig.sweeper()
    rig.worker()
    rig.worker()

    wait_for("all eight events", lambda: len(receiver.completed) == 8, timeout=60)
    done = receiver.bodies(receiver.completed)
    a_seen = [b["id"] for b in done if b["data"]["id"] == call_a]
    b_seen = [b["id"] for b in done if b["data"]["id"] == call_b]
    assert a_seen == a_events, "call A's events out of order"
    assert b_seen == b_events, "call B's events out of order"
    assert [b["sequence"] for b in done if b["data"]["id"] == call_a] == [11, 12, 13, 14]
    # call B went on while call A's first event was being retried
    first_a = [r.at for r in receiver.completed if r.json["id"] == a_events[0]][0]
    b_done = [r.at for r in receiver.completed if r.json["data"]["id"] == call_b]
    assert min(b_done) < first_a
    attempts_a0 = [r for r in receiver.received if r.json["id"] == a_events[0]]
    assert len(attempts_a0) == 3
    # each event's status is the one it announced, whatever the call's row says now
    assert [b["data"]["status"] for b in done if b["data"]["id"] == call_a] == [
        "DIALING", "RINGING", "ANSWERED", "COMPLETED"]


def test_a_private_address_is_refused_at_delivery(rig: Rig, make_tenant: Any) -> None:
    """The endpoint was accepted (say its name resolved to a public address then); the worker
    refuses the loopback address it would connect to now."""
    receiver = rig.receiver()
    tenant, call_id = tenant_with_call(rig, make_tenant)
    hook = endpoint(rig, tenant, receiver.url)
    write_events(rig, tenant.account_id, call_id, [(CallStatus.DIALING, 1)])
    rig.sweeper()
    rig.worker(WEBHOOK_ALLOW_PRIVATE="false")

    def failures() -> list[dict[str, Any]]:
        data = rig.client.get(f"/api/v1/webhooks/{hook['id']}/deliveries", headers=tenant.headers).get_json()
        return data["data"]  # type: ignore[no-any-return]

    rows = wait_for("a refused attempt", failures, timeout=30)
    assert rows[0]["status"] == "FAILED" and rows[0]["http_status"] is None
    assert "127.0.0.1" in rows[0]["error"] and "private" in rows[0]["error"]
    time.sleep(1.0)
    assert receiver.received == []


def test_redirects_are_not_followed(rig: Rig, make_tenant: Any) -> None:
    other = rig.receiver()
    receiver = rig.receiver(lambda n, r: (302, 0.0))
    tenant, call_id = tenant_with_call(rig, make_tenant)
    hook = endpoint(rig, tenant, receiver.url)
    write_events(rig, tenant.account_id, call_id, [(CallStatus.DIALING, 1)])
    rig.sweeper()
    rig.worker()
    rows = wait_for("a failed attempt", lambda: rig.client.get(
        f"/api/v1/webhooks/{hook['id']}/deliveries", headers=tenant.headers).get_json()["data"], timeout=30)
    assert rows[0]["http_status"] == 302 and rows[0]["status"] == "FAILED"
    assert other.received == []


def test_ping_and_rotation_sign_with_both_secrets(rig: Rig, make_tenant: Any) -> None:
    receiver = rig.receiver()
    tenant = make_tenant()
    hook = endpoint(rig, tenant, receiver.url, ["call.completed"])
    rotated = rig.client.post(f"/api/v1/webhooks/{hook['id']}/rotate-secret", headers=tenant.headers)
    assert rotated.status_code == 200
    new_secret = rotated.get_json()["secret"]
    assert new_secret.startswith("whsec_") and new_secret != hook["secret"]
    rig.sweeper()
    rig.worker()
    ping = rig.client.post(f"/api/v1/webhooks/{hook['id']}/test", headers=tenant.headers)
    assert ping.status_code == 202
    got = wait_for("the ping", lambda: receiver.completed[:1], timeout=30)[0]
    assert got.json["type"] == "ping" and got.json["id"] == ping.get_json()["event_id"]
    signature = got.headers["ZensCall-Signature"]
    assert signature.count("v1=") == 2
    verify = readme_verify()
    assert verify(new_secret, got.body, signature) and verify(hook["secret"], got.body, signature)


def test_status_callback_gets_the_calls_events_signed_with_the_account_secret(rig: Rig, make_tenant: Any) -> None:
    receiver = rig.receiver()
    tenant, call_id = tenant_with_call(rig, make_tenant, status_callback=receiver.url)
    secret = rig.client.get("/api/v1/webhooks/signing-secret", headers=tenant.headers).get_json()["secret"]
    rig.sweeper()
    rig.worker()
    assert rig.client.post(f"/api/v1/calls/{call_id}/cancel", headers=tenant.headers).status_code == 200
    got = wait_for("the callback", lambda: receiver.completed[:1], timeout=30)[0]
    assert got.json["type"] == "call.cancelled" and got.json["data"]["id"] == call_id
    assert readme_verify()(secret, got.body, got.headers["ZensCall-Signature"])


def test_an_endpoint_failing_too_long_is_disabled_and_the_others_are_told(rig: Rig, make_tenant: Any) -> None:
    dead = rig.receiver(lambda n, r: (500, 0.0))
    alive = rig.receiver()
    tenant, call_id = tenant_with_call(rig, make_tenant)
    failing = endpoint(rig, tenant, dead.url)
    endpoint(rig, tenant, alive.url)
    write_events(rig, tenant.account_id, call_id, [(CallStatus.DIALING, 1)])
    rig.sweeper()
    rig.worker(WEBHOOK_DISABLE_AFTER_HOURS=str(1.5 / 3600))  # 1.5 s of failures instead of 3 days

    notice = wait_for("the webhook.disabled event on the other endpoint", lambda: [
        b for b in alive.bodies(alive.completed) if b["type"] == "webhook.disabled"], timeout=40)[0]
    assert notice["data"]["id"] == failing["id"] and notice["data"]["disabled_reason"] == "FAILING"
    shown = rig.client.get(f"/api/v1/webhooks/{failing['id']}", headers=tenant.headers).get_json()
    assert shown["enabled"] is False and shown["disabled_reason"] == "FAILING" and shown["failing_since"]
    attempts = len(dead.received)
    time.sleep(1.5)
    assert len(dead.received) == attempts  # nothing more is sent to it
    assert [b["type"] for b in dead.bodies()].count("webhook.disabled") == 0


def test_a_send_failing_past_the_retry_window_ends_failed(webhook_settings: Any, tmp_path: Path,
                                                          make_tenant: Any) -> None:
    from dataclasses import replace

    from api import create_app

    settings = replace(webhook_settings, webhook_retry_hours=2.0 / 3600)  # 2 s instead of 24 h
    app = create_app(settings)
    rig = Rig(settings, app, tmp_path)
    try:
        dead = rig.receiver(lambda n, r: (500, 0.0))
        tenant, call_id = tenant_with_call(rig, make_tenant)
        endpoint(rig, tenant, dead.url)
        (event_id,) = write_events(rig, tenant.account_id, call_id, [(CallStatus.DIALING, 1)])
        rig.sweeper()
        rig.worker()
        wait_for("the send to give up", lambda: send_status(rig, event_id) == ["FAILED"], timeout=40)
        attempts = len(dead.received)
        assert attempts >= 1
        time.sleep(1.5)
        assert len(dead.received) == attempts
    finally:
        rig.close()
        app.extensions["zenscall"].engine.dispose()
