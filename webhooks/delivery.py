"""The RQ job that posts one send (``deliver``), and what it writes after each attempt.

The body is made once per event (``payload``: the same bytes on every retry and redelivery):
``{"id", "type", "created_at", "sequence", "data"}``, where ``data`` is the object as its GET
answers it when the event is first sent, with ``status`` as of the event. A 2xx is success;
anything else (another status, a redirect, a timeout, a refused address) is retried after
``WEBHOOK_BACKOFF_BASE_SECONDS * 2^(attempt-1)`` (at most ``WEBHOOK_BACKOFF_MAX_SECONDS``) with
full jitter on the upper half, until ``WEBHOOK_RETRY_HOURS`` after the event: then FAILED.
An endpoint that has failed every attempt for ``WEBHOOK_DISABLE_AFTER_HOURS`` is disabled, and a
``webhook.disabled`` event goes to the account's other endpoints.
"""

from __future__ import annotations

import json
import logging
import random
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from rq import Queue, get_current_job
from sqlalchemy.orm import Session

from core import outbox
from core.db import make_engine, make_session_factory, utcnow
from core.models import (
    Call,
    Campaign,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
    WebhookSend,
    WebhookSigningSecret,
    new_id,
)
from core.settings import Settings, load_settings
from services.representations import call_object, campaign_object
from webhooks import http, signing
from webhooks.sweeper import FAILED, PENDING, SUCCEEDED, dispatch, rq_enqueuer

log = logging.getLogger("zenscall.webhooks")

_engine: sa.Engine | None = None
_settings: Settings | None = None


def _process_engine() -> tuple[sa.Engine, Settings]:
    """One engine per worker process (RQ's SimpleWorker keeps it between jobs)."""
    global _engine, _settings
    if _engine is None or _settings is None:
        _settings = load_settings()
        _engine = make_engine(_settings.database_url, pool_size=2)
    return _engine, _settings


def deliver(send_id: str) -> str:
    """The RQ job: one attempt of one send, then the next due sends of the same receiver (its slot
    is free now: a receiver is not kept waiting for the sweeper's next pass). Returns what
    happened (shown by rq-dashboard)."""
    engine, settings = _process_engine()
    outcome = deliver_with(make_session_factory(engine), settings, send_id)
    job = get_current_job()
    if job is not None:
        with engine.connect() as conn:
            target = conn.execute(sa.select(WebhookSend.target).where(WebhookSend.id == send_id)).scalar()
            conn.commit()
            if target is not None:
                dispatch(conn, settings, rq_enqueuer(Queue(job.origin, connection=job.connection), settings),
                         targets=[target])
    return outcome


def deliver_with(sessions: Any, settings: Settings, send_id: str) -> str:
    with sessions() as session:
        send = session.get(WebhookSend, send_id)
        if send is None or send.status != PENDING:
            return "nothing to do"
        event = session.get(WebhookEvent, send.event_id)
        if event is None:
            _finish(session, send, FAILED)
            return "event gone"
        target = _receiver(session, send)
        if target is None:
            _finish(session, send, FAILED)
            return "endpoint gone or disabled"
        url, keys = target
        if event.payload is None:
            event.payload = body_of(session, event)
        session.commit()
        body = event.payload.encode()
        now = utcnow()
        headers = {"Content-Type": "application/json", "ZensCall-Event-Id": event.id,
                   "ZensCall-Event-Type": event.type,
                   "ZensCall-Signature": signing.header(keys, int(now.timestamp()), body)}
        event_type, event_id = event.type, event.id
    result = http.post(url, body, headers, timeout=settings.webhook_timeout_seconds,
                       allow_private=settings.webhook_allow_private)
    with sessions() as session:
        return record(session, settings, send_id, event_id, event_type, url, result)


def _receiver(session: Session, send: WebhookSend) -> tuple[str, list[str]] | None:
    now = utcnow()
    if send.endpoint_id is not None:
        ep = session.get(WebhookEndpoint, send.endpoint_id)
        if ep is None or (not ep.enabled and not send.subject.startswith("webhook:")):
            return None  # a disabled endpoint still receives the test ping
        return ep.url, signing.signing_keys(ep.secret, ep.previous_secret, ep.previous_secret_expires_at, now)
    row = session.get(WebhookSigningSecret, send.account_id)
    if row is None or not send.callback_url:
        return None
    return send.callback_url, signing.signing_keys(row.secret, row.previous_secret, row.previous_secret_expires_at,
                                                   now)


def body_of(session: Session, event: WebhookEvent) -> str:
    """The event's JSON body (made once, then kept in ``payload``)."""
    data: dict[str, Any] = {}
    if event.subject_type == "call":
        call = session.get(Call, event.subject_id)
        data = call_object(call) if call is not None else {"id": event.subject_id}
    elif event.subject_type == "campaign":
        campaign = session.get(Campaign, event.subject_id)
        data = campaign_object(session, campaign) if campaign is not None else {"id": event.subject_id}
    data.update(event.data or {})
    return json.dumps({"id": event.id, "type": event.type, "created_at": event.created_at.isoformat(),
                       "sequence": event.sequence, "data": data}, separators=(",", ":"), sort_keys=True)


def backoff(settings: Settings, attempt: int) -> float:
    """Seconds before the next attempt after ``attempt`` failed ones (jitter: 50-100 %)."""
    delay = min(settings.webhook_backoff_max_seconds, settings.webhook_backoff_base_seconds * 2 ** (attempt - 1))
    return delay * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not a secret


def record(session: Session, settings: Settings, send_id: str, event_id: str, event_type: str, url: str,
           result: http.Response) -> str:
    """Write one attempt's outcome: the delivery row, the send's next step, the endpoint's health."""
    now = utcnow()
    send = session.execute(sa.select(WebhookSend).where(WebhookSend.id == send_id).with_for_update()).scalar_one()
    if send.status != PENDING:  # a duplicate job already finished it
        session.commit()
        return f"already {send.status}"
    send.attempts += 1
    next_at: datetime | None = None
    if result.ok:
        send.status = SUCCEEDED
    else:
        next_at = now + timedelta(seconds=backoff(settings, send.attempts))
        if send.retry_until is not None and next_at > send.retry_until:
            send.status, next_at = FAILED, None
        else:
            send.next_attempt_at = next_at
    send.lease_until = None
    error = result.error
    if error and result.body:
        error = f"{error}: {result.body[:200].decode('utf-8', 'replace')}"
    session.add(WebhookDelivery(
        id=new_id(), send_id=send.id, account_id=send.account_id, endpoint_id=send.endpoint_id, event_id=event_id,
        event_type=event_type, url=url, attempt_no=send.attempts, status=SUCCEEDED if result.ok else FAILED,
        http_status=result.status, latency_ms=result.latency_ms, error=error[:500] if error else None,
        next_retry_at=next_at, created_at=now))
    if send.endpoint_id is not None:
        _endpoint_health(session, settings, send.endpoint_id, result.ok, now)
    session.commit()
    log.info("webhook %s %s attempt %d: %s", event_type, event_id, send.attempts,
             "delivered" if result.ok else result.error, extra={"event": "webhook_attempt"})
    return send.status


def _endpoint_health(session: Session, settings: Settings, endpoint_id: str, ok: bool, now: datetime) -> None:
    ep = session.get(WebhookEndpoint, endpoint_id, with_for_update=True)
    if ep is None:
        return
    if ok:
        ep.failing_since = None
        return
    if ep.failing_since is None:
        ep.failing_since = now
    elif ep.enabled and now - ep.failing_since >= timedelta(hours=settings.webhook_disable_after_hours):
        ep.enabled, ep.disabled_at, ep.disabled_reason = False, now, "FAILING"
        outbox.write(session, [outbox.event(ep.account_id, "webhook.disabled", "webhook", ep.id,
                                            outbox.time_sequence(now), now,
                                            {"id": ep.id, "url": ep.url, "disabled_reason": "FAILING",
                                             "failing_since": ep.failing_since.isoformat()})])


def _finish(session: Session, send: WebhookSend, status: str) -> None:
    send.status, send.lease_until = status, None
    session.commit()
