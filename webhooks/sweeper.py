"""The webhook sweeper: from the outbox in SQL to jobs on the ``webhooks`` RQ queue.

Each pass (``python -m webhooks``, every ``WEBHOOK_SWEEP_SECONDS``):

1. **fan out**: every new event (``fanned_out_at`` NULL) gets one send per receiver: each enabled
   endpoint of its account subscribed to its type (or to ``"*"``), and the ``status_callback`` of
   its call and of the call's campaign (or of the campaign). An event nobody receives is deleted.
   Fan-out goes in rounds, fair per account: a round takes the oldest ``FAIR_SHARE`` new events of
   every account that has some (accounts with the oldest waiting event first, ``BATCH`` accounts
   at most), and each round is followed by a dispatch. So one account's burst of thousands of
   events delays another account's events by one round, not by the whole burst.
2. **dispatch** (after every fan-out round): every PENDING send that is due and not leased gets a job, with a lease
   (``WEBHOOK_LEASE_SECONDS``); a send whose job was lost (Redis flushed, worker killed) is
   enqueued again once its lease ends. Two rules choose among the due sends:
   * per call (any subject) and receiver, events go in ``sequence`` order: a send waits while an
     earlier one of the same subject and receiver is still PENDING (retrying), unless that one is
     older than ``WEBHOOK_ORDER_WAIT_SECONDS``; different calls are never serialised;
   * at most ``WEBHOOK_ENDPOINT_CONCURRENCY`` sends of one receiver are leased at once, so a slow
     or dead receiver holds that many workers at most and never the others' deliveries.
3. once an hour, finished sends, their events and the attempts list older than 30 days are deleted.

Rows are taken ``FOR UPDATE SKIP LOCKED``, so several sweepers may run.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import redis
import sqlalchemy as sa
from rq import Queue

from core.db import utcnow
from core.models import Call, Campaign, WebhookDelivery, WebhookEndpoint, WebhookEvent, WebhookSend, new_id
from core.redis_keys import WEBHOOK_SWEEPER_KEY
from core.settings import Settings

log = logging.getLogger("zenscall.webhooks")

DELIVER_JOB = "webhooks.delivery.deliver"
BATCH = 500  # accounts per fan-out round; receivers per dispatch
FAIR_SHARE = 100  # events of one account per fan-out round
PENDING, SUCCEEDED, FAILED = "PENDING", "SUCCEEDED", "FAILED"

_events, _sends, _endpoints = WebhookEvent.__table__, WebhookSend.__table__, WebhookEndpoint.__table__
_calls, _campaigns, _deliveries = Call.__table__, Campaign.__table__, WebhookDelivery.__table__


def callback_target(url: str) -> str:
    return "callback:" + hashlib.sha256(url.encode()).hexdigest()[:40]


def subscribed(events: list[str], type_: str) -> bool:
    return "*" in events or type_ in events


def send_row(event: Any, now: datetime, *, endpoint_id: str | None = None, callback_url: str | None = None,
             retry_hours: float) -> dict[str, Any]:
    return {"id": new_id(), "event_id": event.id, "account_id": event.account_id, "endpoint_id": endpoint_id,
            "callback_url": callback_url,
            "target": endpoint_id if endpoint_id else callback_target(callback_url or ""),
            "subject": f"{event.subject_type}:{event.subject_id}", "sequence": event.sequence,
            "status": PENDING, "attempts": 0, "next_attempt_at": now,
            "retry_until": now + timedelta(hours=retry_hours), "lease_until": None, "created_at": now,
            "updated_at": now}


def fan_out(conn: sa.Connection, settings: Settings, now: datetime | None = None) -> int:
    """One fair round: sends for the oldest ``FAIR_SHARE`` new events of each account that has
    some; how many events were handled (0: none was waiting). Commits."""
    now = now or utcnow()
    e = _events.c
    waiting = e.fanned_out_at.is_(None)
    with conn.begin():
        accounts = conn.execute(sa.select(e.account_id).where(waiting).group_by(e.account_id)
                                .order_by(sa.func.min(e.created_at)).limit(BATCH)).scalars().all()
        events: list[Any] = []
        for account_id in accounts:
            events += conn.execute(sa.select(e.id, e.account_id, e.type, e.subject_type, e.subject_id, e.sequence)
                                   .where(waiting, e.account_id == account_id).order_by(e.created_at)
                                   .limit(FAIR_SHARE).with_for_update(skip_locked=True)).all()
        if not events:
            return 0
        ep = _endpoints.c
        endpoints: dict[str, list[tuple[str, list[str]]]] = defaultdict(list)
        for eid, account_id, types in conn.execute(sa.select(ep.id, ep.account_id, ep.events).where(
                ep.account_id.in_({ev.account_id for ev in events}), ep.enabled.is_(True))):
            endpoints[account_id].append((eid, list(types or [])))
        callbacks = _callbacks(conn, events)
        rows: list[dict[str, Any]] = []
        for ev in events:
            rows += [send_row(ev, now, endpoint_id=eid, retry_hours=settings.webhook_retry_hours)
                     for eid, types in endpoints.get(ev.account_id, []) if subscribed(types, ev.type)]
            rows += [send_row(ev, now, callback_url=url, retry_hours=settings.webhook_retry_hours)
                     for url in callbacks.get((ev.subject_type, ev.subject_id), [])]
        if rows:
            conn.execute(sa.insert(_sends), rows)
        kept = {r["event_id"] for r in rows}
        unsent = [ev.id for ev in events if ev.id not in kept]
        if unsent:
            conn.execute(sa.delete(_events).where(e.id.in_(unsent)))
        if kept:
            conn.execute(sa.update(_events).where(e.id.in_(kept)).values(fanned_out_at=now))
    return len(events)


def _callbacks(conn: sa.Connection, events: list[Any]) -> dict[tuple[str, str], list[str]]:
    """The status_callback URLs of the events' calls and campaigns (a call's campaign's too)."""
    c, camp = _calls.c, _campaigns.c
    call_ids = {ev.subject_id for ev in events if ev.subject_type == "call"}
    campaign_ids = {ev.subject_id for ev in events if ev.subject_type == "campaign"}
    out: dict[tuple[str, str], list[str]] = defaultdict(list)
    call_campaign: dict[str, str] = {}
    if call_ids:
        for cid, url, campaign_id in conn.execute(sa.select(c.id, c.status_callback, c.campaign_id).where(
                c.id.in_(call_ids))):
            if url:
                out[("call", cid)].append(url)
            if campaign_id:
                call_campaign[cid] = campaign_id
    wanted = campaign_ids | set(call_campaign.values())
    if wanted:
        urls = dict(conn.execute(sa.select(camp.id, camp.status_callback).where(
            camp.id.in_(wanted), camp.status_callback.is_not(None))).all())
        for cid in campaign_ids:
            if urls.get(cid):
                out[("campaign", cid)].append(urls[cid])
        for call_id, campaign_id in call_campaign.items():
            url = urls.get(campaign_id)
            if url and url not in out[("call", call_id)]:
                out[("call", call_id)].append(url)
    return out


def dispatch(conn: sa.Connection, settings: Settings, enqueue: Callable[[list[str]], None],
             now: datetime | None = None, targets: list[str] | None = None) -> int:
    """Lease and enqueue the sends that may go now (of ``targets`` only, when given); how many.
    Commits before enqueueing.

    Each receiver is served on its own (its free slots, its earliest due sends), so however many
    sends wait for one slow receiver, the others' are picked in the same pass."""
    now = now or utcnow()
    s = _sends.c
    free_lease = sa.or_(s.lease_until.is_(None), s.lease_until < now)
    earlier = _sends.alias("earlier")
    waits_for_earlier = sa.exists().where(
        earlier.c.target == s.target, earlier.c.subject == s.subject, earlier.c.status == PENDING,
        earlier.c.sequence < s.sequence,
        earlier.c.created_at >= now - timedelta(seconds=settings.webhook_order_wait_seconds))
    chosen: list[str] = []
    with conn.begin():
        if targets is None:
            targets = list(conn.execute(sa.select(s.target).distinct().where(
                s.status == PENDING, s.next_attempt_at <= now, free_lease).limit(BATCH)).scalars())
        if not targets:
            return 0
        busy = dict(conn.execute(sa.select(s.target, sa.func.count()).where(
            s.target.in_(targets), s.status == PENDING, s.lease_until >= now).group_by(s.target)).all())
        for target in targets:
            slots = settings.webhook_endpoint_concurrency - int(busy.get(target, 0))
            if slots <= 0:
                continue  # this receiver already has its share of the workers
            rows = conn.execute(sa.select(s.id, s.subject).where(
                s.target == target, s.status == PENDING, s.next_attempt_at <= now, free_lease, ~waits_for_earlier)
                .order_by(s.next_attempt_at, s.sequence).limit(slots).with_for_update(skip_locked=True)).all()
            subjects: set[str] = set()
            for send_id, subject in rows:
                if subject not in subjects:  # two sends of one subject never run at once
                    subjects.add(subject)
                    chosen.append(send_id)
        if chosen:
            conn.execute(sa.update(_sends).where(s.id.in_(chosen)).values(
                lease_until=now + timedelta(seconds=settings.webhook_lease_seconds)))
    if chosen:
        enqueue(chosen)
    return len(chosen)


def retire(conn: sa.Connection, retention_days: float, now: datetime | None = None) -> None:
    """Delete finished sends and their events after ``retention_days``. Commits."""
    now = now or utcnow()
    cutoff = now - timedelta(days=retention_days)
    s, e = _sends.c, _events.c
    with conn.begin():
        conn.execute(sa.delete(_sends).where(s.status != PENDING, s.updated_at < cutoff))
        conn.execute(sa.delete(_deliveries).where(_deliveries.c.created_at < cutoff))
        conn.execute(sa.delete(_events).where(e.fanned_out_at < cutoff, ~sa.exists().where(s.event_id == e.id)))


def rq_enqueuer(queue: Queue, settings: Settings) -> Callable[[list[str]], None]:
    """Enqueue one delivery job per send in one Redis round trip. A failure (Redis away) is logged:
    the leases end and the next passes enqueue the sends again."""

    def enqueue(send_ids: list[str]) -> None:
        try:
            pipe = queue.connection.pipeline()
            stamp = int(time.time() * 1000)
            for send_id in send_ids:
                queue.enqueue(DELIVER_JOB, send_id, job_id=f"webhook-{send_id}-{stamp}",
                              job_timeout=int(settings.webhook_timeout_seconds) + 30, result_ttl=600,
                              failure_ttl=86400, description=f"deliver({send_id})", pipeline=pipe)
            pipe.execute()
        except (redis.RedisError, OSError) as exc:
            log.warning("enqueue of %d webhook sends failed: %s", len(send_ids), exc)

    return enqueue


class Sweeper:
    """The loop of ``python -m webhooks``."""

    def __init__(self, engine: sa.Engine, settings: Settings, queue: Queue, retention_days: float = 30.0) -> None:
        self.engine, self.settings, self.queue = engine, settings, queue
        self.enqueue = rq_enqueuer(queue, settings)
        self.retention_days = retention_days
        self._last_retire = 0.0

    def once(self) -> tuple[int, int]:
        with self.engine.connect() as conn:
            fanned = sent = 0
            while True:  # each round takes a fair share of every account's events, then dispatches
                n = fan_out(conn, self.settings)
                fanned += n
                sent += dispatch(conn, self.settings, self.enqueue)
                if not n:
                    break
            try:
                self.queue.connection.set(WEBHOOK_SWEEPER_KEY, int(time.time()), ex=30)
            except (redis.RedisError, OSError):
                pass  # Redis away: the enqueues failed too and are tried again
            if time.monotonic() - self._last_retire > 3600:
                retire(conn, self.retention_days)
                self._last_retire = time.monotonic()
        return fanned, sent

    def run(self, stop: Callable[[], bool] = lambda: False) -> None:
        while not stop():
            started = time.monotonic()
            try:
                self.once()
            except Exception:  # SQL or Redis away: the next pass tries again
                log.exception("webhook sweep failed", extra={"event": "webhook_sweep_failed"})
            time.sleep(max(0.0, self.settings.webhook_sweep_seconds - (time.monotonic() - started)))
