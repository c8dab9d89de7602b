"""The dialer engine: decides what to dial, originates it, and turns events into states.

Greenlets (all in one gevent process per FreeSWITCH node):

* ``supervisor`` keeps the ESL connection up: connect, subscribe, reconcile every
  non-final attempt of this node against FreeSWITCH; on loss, reconnect with backoff;
* ``dispatcher`` sweeps SQL for due calls (woken early by RQ jobs) and, within the
  caps and the pacing, claims each attempt in SQL, then originates it;
* ``event workers`` apply ESL events to SQL through ``Store`` (events of one attempt
  always go to the same worker, so they stay in order; ringing/answered events waiting
  together at the head of a worker's queue are applied in one transaction);
* ``housekeeping`` renews cap leases, finishes originates that failed without a
  channel, hangs up calls the user cancelled, re-checks stale attempts, enqueues
  again the CSV imports whose worker died, and publishes the heartbeat and counters
  the API's readiness check reads.

FreeSWITCH is spoken to only through ``dialer.esl.EslClient``; SQL is changed only
through ``dialer.store.Store``; money moves only in ``billing.ledger``.
"""

from __future__ import annotations

import json
import logging
import os
import time
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import gevent
import gevent.event
import gevent.lock
import gevent.pool
import gevent.queue
import redis
from sqlalchemy import exc as sa_exc

from billing import ledger
from billing.rating import worst_case_billsec
from campaigns.importer import import_stall_seconds
from core.db import utcnow
from core.phone import dial_digits
from core.queues import work_queue
from core.settings import Settings
from core.states import CallStatus
from dialer import caps as capmod
from dialer import lifecycle
from dialer.esl import EslClient, EslCommandError, EslError
from dialer.events import (
    ChannelAnswered,
    ChannelHangup,
    ChannelProgress,
    ConnectionLost,
    DomainEvent,
    OriginateResult,
    PlaybackStopped,
)
from dialer.store import Advance, DueCall, Finished, HangupFacts, Store

log = logging.getLogger("zenscall.dialer")

# An originate that failed with -ERR usually also produces CHANNEL_HANGUP_COMPLETE
# (with the SIP status); wait this long for it before finishing from the job result.
JOB_FAILURE_GRACE = 3.0
# How long an event is retried while the database or Redis is unreachable (the
# reconciler settles whatever is still open after that).
EVENT_RETRY_SECONDS = 120.0
# At most this many RINGING / ANSWERED events already waiting in a worker's queue are
# applied in one transaction.
ADVANCE_BATCH = 32
_ADVANCING = (ChannelProgress, ChannelAnswered)
# Attempts younger than this are not judged by uuid_exists (the channel may not exist yet).
RECONCILE_MIN_AGE = timedelta(seconds=3)


@dataclass
class Live:
    """What the engine remembers of an attempt out on FreeSWITCH."""

    call_id: str
    lease_keys: list[str]
    played_ms: int | None = None
    job_failure: tuple[str, float] | None = None  # (cause, monotonic deadline)
    kill_sent: bool = False


@dataclass
class Counters:
    originates: int = 0
    finished: int = 0
    answered: int = 0
    retries: int = 0
    reconnects: int = 0
    reconciled: int = 0
    recent_originates: deque[float] = field(default_factory=lambda: deque(maxlen=10_000))

    def originates_per_second(self, window: float = 10.0) -> float:
        cutoff = time.monotonic() - window
        return sum(1 for t in self.recent_originates if t >= cutoff) / window


def gateway_of(dial_template: str) -> str:
    """``sofia/gateway/carrier/{number}`` -> ``carrier`` (the pacing key)."""
    parts = dial_template.split("/")
    return parts[2] if len(parts) > 3 and parts[1] == "gateway" else dial_template.split("{", 1)[0]


class Engine:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        caps: capmod.Caps,
        redis_client: redis.Redis,
        *,
        esl_factory: Callable[[Callable[[DomainEvent], None]], EslClient] | None = None,
        event_workers: int = 4,
        batch_size: int = 200,
        dial_concurrency: int = 8,
    ) -> None:
        self.settings = settings
        self.store = store
        self.caps = caps
        self.redis = redis_client
        self.node = settings.dialer_node
        self.gateway = gateway_of(settings.fs_dial_template)
        self.batch_size = batch_size
        self.dial_concurrency = max(1, dial_concurrency)
        factory = esl_factory or (lambda on_event: EslClient(
            settings.fs_host, settings.fs_port, settings.fs_password, on_event=on_event,
            command_timeout=settings.fs_command_timeout, connect_timeout=settings.fs_command_timeout))
        self.esl = factory(self._on_event)
        self.live: dict[str, Live] = {}
        self.counters = Counters()
        self._queues = [gevent.queue.Queue() for _ in range(max(1, event_workers))]
        self._wake = gevent.event.Event()
        self._lost = gevent.event.Event()
        self._connected = gevent.event.Event()
        self._dispatch_lock = gevent.lock.RLock()
        self._greenlets: list[gevent.Greenlet] = []
        self._unpaid_campaigns: set[str] = set()  # campaigns paused for balance during this sweep
        self._running = False
        self.started_at = time.time()
        # a campaign IMPORTING this long with no live import gets its job enqueued again
        self.import_stall_seconds = import_stall_seconds()
        # more heartbeat fields from the wiring (e.g. the SQL statement count of a benchmark)
        self.extra_state: Callable[[], dict[str, Any]] | None = None
        # Leases are held per process: when two dialers race for the same due call, the
        # loser's release must not free the slots the winner holds.
        self.holder = f"{self.node}:{os.getpid()}:{os.urandom(4).hex()}"

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        self._running = True
        self._greenlets = [gevent.spawn(self._supervise), gevent.spawn(self._dispatch_loop),
                           gevent.spawn(self._housekeeping)]
        self._greenlets += [gevent.spawn(self._event_worker, q) for q in self._queues]

    def stop(self, timeout: float = 5.0) -> None:
        self._running = False
        self._wake.set()
        self._lost.set()
        for q in self._queues:
            q.put(None)
        gevent.joinall(self._greenlets, timeout=timeout)
        gevent.killall([g for g in self._greenlets if not g.dead], timeout=1)
        self.esl.close()
        self._publish_heartbeat(stopping=True)

    def nudge(self) -> None:
        """A call became due (an RQ job arrived): sweep now instead of at the next tick."""
        self._wake.set()

    @property
    def connected(self) -> bool:
        return self.esl.connected

    # -- ESL connection --------------------------------------------------------------------
    def _supervise(self) -> None:
        backoff = 0.2
        while self._running:
            try:
                self.esl.connect()
            except (EslError, OSError) as exc:
                log.warning("ESL connect to %s:%s failed: %s", self.settings.fs_host, self.settings.fs_port, exc,
                            extra={"event": "esl_connect_failed"})
                gevent.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
                continue
            backoff = 0.2
            self._lost.clear()
            log.info("ESL connected to %s:%s", self.settings.fs_host, self.settings.fs_port,
                     extra={"event": "esl_connected"})
            try:
                self.reconcile(min_age=timedelta(0))
            except Exception as exc:  # ESL, SQL or Redis away: the supervisor must outlive it
                log.warning("reconciliation interrupted: %s", exc, extra={"event": "reconcile_failed"})
                self.esl.close()
                gevent.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
                continue
            self._connected.set()
            self._wake.set()
            self._lost.wait()
            self._connected.clear()
            if self._running:
                self.counters.reconnects += 1
                log.warning("ESL connection lost; reconnecting", extra={"event": "esl_lost"})
                self.esl.close()

    def _on_event(self, event: DomainEvent) -> None:
        """Called from the ESL adapter's greenlet: never blocks, only routes."""
        if isinstance(event, ConnectionLost):
            self._lost.set()
            return
        key = event.job_uuid if isinstance(event, OriginateResult) else event.uuid
        self._queues[zlib.crc32(key.encode()) % len(self._queues)].put_nowait(event)

    # -- events -> states --------------------------------------------------------------------
    def _event_worker(self, queue: gevent.queue.Queue) -> None:
        while True:
            event = queue.get()
            if event is None:
                return
            if isinstance(event, _ADVANCING) and not queue.empty():
                # more waiting: the live-state events at the head of the queue go in one
                # transaction (in queue order; whatever follows them waits for the commit)
                batch = [event]
                while (len(batch) < ADVANCE_BATCH and not queue.empty()
                       and isinstance(queue.peek_nowait(), _ADVANCING)):
                    batch.append(queue.get_nowait())
                if len(batch) > 1:
                    self._apply_with_retry(batch)
                    continue
            self._apply_with_retry(event)

    def _apply_with_retry(self, event: DomainEvent | list[ChannelProgress | ChannelAnswered]) -> None:
        """Apply an event (or a batch of live-state events); while the database or Redis is
        unreachable, keep trying (with backoff, for up to EVENT_RETRY_SECONDS): the event is
        the only exact record of a hangup (cause, billsec), and applying it twice changes nothing."""
        deadline = time.monotonic() + EVENT_RETRY_SECONDS
        delay = 0.2
        name = type(event[0] if isinstance(event, list) else event).__name__
        while True:
            try:
                if isinstance(event, list):
                    self.apply_advances(event)
                else:
                    self.apply(event)
                return
            except (sa_exc.OperationalError, sa_exc.InterfaceError, redis.RedisError) as exc:
                if not self._running or time.monotonic() >= deadline:
                    log.error("event dropped after retries: %s", exc, extra={"event": name})
                    return
                log.warning("event handling failed, retrying: %s", exc, extra={"event": name})
                gevent.sleep(delay)
                delay = min(delay * 2, 5.0)
            except Exception:  # one bad event must not stop the worker
                log.exception("event handling failed", extra={"event": name})
                return

    def apply_advances(self, events: list[ChannelProgress | ChannelAnswered]) -> None:
        """Apply RINGING / ANSWERED events in one transaction, in order (idempotent as ``apply``)."""
        done = self.store.advance_many([
            Advance(e.uuid, CallStatus.RINGING if isinstance(e, ChannelProgress) else CallStatus.ANSWERED,
                    e.at, self._call_of(e.uuid)) for e in events])
        for event, changed in zip(events, done, strict=True):
            if not changed:
                continue
            if isinstance(event, ChannelProgress):
                self._log_state(event.uuid, event.call_id, "RINGING", early_media=event.early_media)
            else:
                self._log_state(event.uuid, event.call_id, "ANSWERED")

    def apply(self, event: DomainEvent) -> None:
        """Apply one ESL event to SQL. Idempotent: repeats and late events change nothing."""
        if isinstance(event, ChannelProgress):
            if self.store.mark_ringing(event.uuid, event.at, self._call_of(event.uuid)):
                self._log_state(event.uuid, event.call_id, "RINGING", early_media=event.early_media)
        elif isinstance(event, ChannelAnswered):
            if self.store.mark_answered(event.uuid, event.at, self._call_of(event.uuid)):
                self._log_state(event.uuid, event.call_id, "ANSWERED")
        elif isinstance(event, PlaybackStopped):
            live = self.live.get(event.uuid)
            if live is not None:
                live.played_ms = event.played_ms
        elif isinstance(event, ChannelHangup):
            live = self.live.get(event.uuid)
            self._finish(event.uuid, HangupFacts(
                cause=event.cause, q850=event.q850, sip_status=event.sip_status, answered=event.answered,
                answered_at=event.answered_at, ended_at=event.ended_at, billsec=event.billsec,
                duration=event.duration, played_ms=live.played_ms if live else None))
        elif isinstance(event, OriginateResult) and not event.ok:
            live = self.live.get(event.job_uuid)
            cause = event.cause or lifecycle.ORIGINATE_FAILED
            if live is not None:
                # the hangup event (if any) has the SIP details: give it a moment
                live.job_failure = (cause, time.monotonic() + JOB_FAILURE_GRACE)
            else:
                self._finish(event.job_uuid, HangupFacts(cause=cause))

    def _call_of(self, attempt_id: str) -> str | None:
        """The call of an attempt this process dialed (or reconciled); None if unknown."""
        live = self.live.get(attempt_id)
        return live.call_id if live is not None else None

    def _finish(self, attempt_id: str, facts: HangupFacts) -> Finished | None:
        done = self.store.finish(attempt_id, facts)
        live = self.live.pop(attempt_id, None)
        if live is not None:
            self._release(attempt_id, live)
            self._wake.set()  # a slot is free: something else may be dialed now
        if done is None:
            return None
        self.counters.finished += 1
        if done.charged > 0 or facts.answered:
            self.counters.answered += 1
        if done.status.value == "QUEUED":
            self.counters.retries += 1
        self._log_state(attempt_id, done.call_id, done.status.value, cause=facts.cause, sip=facts.sip_status,
                        billsec=facts.billsec, charged=str(done.charged),
                        next_attempt_at=done.next_attempt_at.isoformat() if done.next_attempt_at else None)
        if done.next_attempt_at is not None:
            delay = max(0.0, (done.next_attempt_at - utcnow()).total_seconds())
            gevent.spawn_later(delay + 0.05, self._wake.set)
        return done

    def _release(self, attempt_id: str, live: Live) -> None:
        try:
            self.caps.release(self._member(live.call_id), live.lease_keys)
        except redis.RedisError as exc:  # the leases expire by themselves
            log.warning("cap release failed: %s", exc, extra={"call_id": live.call_id, "uuid": attempt_id})

    def _log_state(self, uuid: str, call_id: str | None, state: str, **fields: Any) -> None:
        log.info("call %s %s", call_id, state,
                 extra={"event": "call_state", "call_id": call_id, "uuid": uuid, "state": state,
                        **{k: v for k, v in fields.items() if v is not None}})

    # -- dispatching -------------------------------------------------------------------------
    def _dispatch_loop(self) -> None:
        while self._running:
            self._wake.wait(timeout=self.settings.dialer_sweep_seconds)
            self._wake.clear()
            if not self._running:
                return
            if not self._connected.is_set():
                continue
            try:
                self.dispatch_once()
            except Exception:
                log.exception("dispatch sweep failed", extra={"event": "dispatch_failed"})
                gevent.sleep(1)

    def dispatch_once(self) -> int:
        """One sweep: dial what is due within the caps. Returns the number originated.

        Up to ``dial_concurrency`` calls are claimed and originated at once, so that one
        call's SQL, Redis and ESL round trips overlap another's. Caps stay exact: every
        slot is taken atomically in Redis before the claim, whoever takes it."""
        sent = 0
        with self._dispatch_lock:
            free = self.settings.node_max_channels - len(self.live)
            if free <= 0:
                return 0
            self._unpaid_campaigns: set[str] = set()
            pool = gevent.pool.Pool(self.dial_concurrency)
            results: list[gevent.Greenlet] = []
            for due in self.store.due_calls(min(self.batch_size, free * 2)):
                if not self._running or not self.esl.connected:
                    break
                if len(self.live) >= self.settings.node_max_channels:
                    break
                if due.campaign_id in self._unpaid_campaigns:
                    continue
                results.append(pool.spawn(self._dial, due))
            pool.join()
            for greenlet in results:
                if greenlet.exception is not None:
                    log.error("dial failed: %r", greenlet.exception, exc_info=greenlet.exc_info,
                              extra={"event": "dial_failed"})
                elif greenlet.value:
                    sent += 1
        if sent:
            self._wake.set()  # more may be due: sweep again straight away
        return sent

    def _member(self, call_id: str) -> str:
        """The lease member of a call held by this process."""
        return f"{call_id}@{self.holder}"

    def _caps_for(self, account_id: str, account_limit: int, phone: str,
                  campaign_id: str | None, campaign_limit: int | None) -> list[capmod.Cap]:
        caps = [capmod.node_cap(self.node, self.settings.node_max_channels),
                capmod.account_cap(account_id, account_limit),
                capmod.number_cap(phone)]
        if campaign_id is not None:
            caps.append(capmod.campaign_cap(campaign_id, campaign_limit or 1))
        return caps

    def _dial(self, due: DueCall) -> bool:
        if due.do_not_call:
            # added to the do-not-call list after it was queued: never dialed
            if self.store.skip_do_not_call(due.call_id):
                self._log_state("-", due.call_id, "CANCELLED", cause=lifecycle.DO_NOT_CALL)
            return False
        caps = self._caps_for(due.account_id, due.account_limit, due.phone_number,
                              due.campaign_id, due.campaign_limit)
        member = self._member(due.call_id)
        if self.caps.acquire(member, caps) is not None:
            return False
        keys = [c.key for c in caps]
        try:
            claimed = self.store.claim(due)
        except ledger.InsufficientBalance:
            self.caps.release(member, keys)
            if due.campaign_id is None:
                if self.store.fail_unpaid(due.call_id):
                    self._log_state("-", due.call_id, "FAILED", cause=lifecycle.INSUFFICIENT_BALANCE)
                return False
            self._unpaid_campaigns.add(due.campaign_id)
            if self.store.pause_unpaid_campaign(due.campaign_id):
                log.warning("campaign %s paused: the balance cannot pay the next attempt", due.campaign_id,
                            extra={"event": "campaign_paused", "campaign_id": due.campaign_id,
                                   "reason": lifecycle.INSUFFICIENT_BALANCE})
            return False
        except Exception:
            self.caps.release(member, keys)
            raise
        if claimed is None:
            self.caps.release(member, keys)
            return False
        attempt_id = claimed.attempt_id
        self.live[attempt_id] = Live(call_id=due.call_id, lease_keys=keys)
        wait = self.caps.pace(self.gateway, self.settings.gateway_cps)
        if wait > 0:
            gevent.sleep(wait)
        self._log_state(attempt_id, due.call_id, "DIALING", attempt_no=claimed.attempt_no,
                        number=due.phone_number)
        try:
            self.esl.originate(
                attempt_id, due.call_id, dial_digits(due.phone_number), self.settings.fs_dial_template,
                f"{self.settings.fs_audio_dir.rstrip('/')}/{due.audio_id}.wav",
                (due.caller_id or self.settings.fs_caller_id).lstrip("+"),
                self.settings.fs_originate_timeout,
            )
        except (EslCommandError, ValueError) as exc:
            # refused by FreeSWITCH (or by our own argument checks): no channel exists
            log.warning("originate refused: %s", exc, extra={"call_id": due.call_id, "uuid": attempt_id})
            self._finish(attempt_id, HangupFacts(cause=lifecycle.ORIGINATE_FAILED))
            return False
        except EslError as exc:
            # the connection broke while sending: FreeSWITCH may or may not have the
            # channel; reconciliation after the reconnect decides
            log.warning("originate interrupted: %s", exc, extra={"call_id": due.call_id, "uuid": attempt_id})
            return False
        self.counters.originates += 1
        self.counters.recent_originates.append(time.monotonic())
        return True

    # -- cancel ---------------------------------------------------------------------------------
    def cancel(self, call_id: str) -> bool:
        """Hang up a call's live attempt (the hangup event then finalises it CANCELLED)."""
        attempt_id = self.store.live_attempt_of(call_id)
        if attempt_id is None or not self.esl.connected:
            return False
        try:
            killed = self.esl.kill(attempt_id, "NORMAL_CLEARING")
        except EslError as exc:
            log.warning("uuid_kill failed: %s", exc, extra={"call_id": call_id, "uuid": attempt_id})
            return False
        self._log_state(attempt_id, call_id, "CANCEL_REQUESTED", killed=killed)
        return killed

    # -- reconciliation --------------------------------------------------------------------------
    def reconcile(self, min_age: timedelta = RECONCILE_MIN_AGE) -> int:
        """Check every open attempt of this node against FreeSWITCH; returns how many ended.

        A live channel keeps its attempt (and gets its leases back: Redis may have been
        flushed); a channel FreeSWITCH no longer knows ends the attempt once: answered
        ones are charged for the time they can have lasted, unanswered ones follow the
        retry rules.
        """
        ended = 0
        now = utcnow()
        with self._dispatch_lock:
            for attempt in self.store.open_attempts():
                if now - attempt.started_at < min_age:
                    continue
                due_keys = [c.key for c in self._caps_for(attempt.account_id, 1, attempt.phone_number,
                                                          attempt.campaign_id, 1)]
                if self.esl.exists(attempt.attempt_id):
                    live = self.live.setdefault(attempt.attempt_id, Live(attempt.call_id, due_keys))
                    self.caps.renew({self._member(attempt.call_id): live.lease_keys})
                    if attempt.cancel_requested:
                        self.esl.kill(attempt.attempt_id, "NORMAL_CLEARING")
                    continue
                self.live.setdefault(attempt.attempt_id, Live(attempt.call_id, due_keys))
                facts = self._lost_facts(attempt.answered_at, attempt.audio_ms, now)
                if self._finish(attempt.attempt_id, facts) is not None:
                    ended += 1
        self.counters.reconciled += ended
        if ended:
            log.info("reconciled %d attempts FreeSWITCH no longer has", ended, extra={"event": "reconciled"})
        return ended

    @staticmethod
    def _lost_facts(answered_at: Any, audio_ms: int, now: Any) -> HangupFacts:
        if answered_at is None:
            return HangupFacts(cause=lifecycle.LOST)
        # the hangup event was lost: bill the time it can have lasted, at most the message
        billsec = min(int((now - answered_at).total_seconds()), worst_case_billsec(audio_ms))
        return HangupFacts(cause=lifecycle.LOST, answered=True, answered_at=answered_at, ended_at=now,
                           billsec=max(billsec, 0), duration=max(billsec, 0))

    # -- housekeeping ----------------------------------------------------------------------------
    def _housekeeping(self) -> None:
        tick = 0
        import_check_every = max(1, min(30, self.import_stall_seconds // 4))
        while self._running:
            gevent.sleep(1.0)
            tick += 1
            if tick % import_check_every == 0:
                self._recover_imports()
            try:
                self._expire_job_failures()
                if tick % 2 == 0:
                    started, completed = self.store.campaign_housekeeping()
                    if started:
                        self._wake.set()
                    for campaign_id in completed:
                        log.info("campaign %s completed", campaign_id,
                                 extra={"event": "campaign_completed", "campaign_id": campaign_id})
                if tick % max(1, self.settings.cap_lease_seconds // 4) == 0:
                    self.caps.renew({self._member(lv.call_id): lv.lease_keys for lv in list(self.live.values())})
                if self._connected.is_set():
                    for attempt_id in self.store.cancel_requested_live():
                        live = self.live.get(attempt_id)
                        if live is not None and not live.kill_sent:
                            live.kill_sent = True
                            self.esl.kill(attempt_id, "NORMAL_CLEARING")
                    if tick % 30 == 0:
                        self.reconcile(min_age=timedelta(seconds=self.settings.fs_originate_timeout + 15))
                self._publish_heartbeat()
            except Exception:
                log.exception("housekeeping failed", extra={"event": "housekeeping_failed"})

    def _recover_imports(self) -> None:
        try:
            self.store.recover_stalled_imports(work_queue(self.redis), self.import_stall_seconds)
        except Exception:  # SQL or Redis away: the next pass tries again
            log.exception("import recovery failed", extra={"event": "import_recovery_failed"})

    def _expire_job_failures(self) -> None:
        now = time.monotonic()
        for attempt_id, live in list(self.live.items()):
            if live.job_failure is not None and live.job_failure[1] <= now:
                self._finish(attempt_id, HangupFacts(cause=live.job_failure[0]))

    def state(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "pid": os.getpid(),
            "ts": time.time(),
            "started_at": self.started_at,
            "esl_connected": self.esl.connected,
            "in_flight": len(self.live),
            "node_max_channels": self.settings.node_max_channels,
            "originates_total": self.counters.originates,
            "originates_per_second": round(self.counters.originates_per_second(), 2),
            "finished_total": self.counters.finished,
            "answered_total": self.counters.answered,
            "retries_total": self.counters.retries,
            "reconnects_total": self.counters.reconnects,
            "reconciled_total": self.counters.reconciled,
            **(self.extra_state() if self.extra_state is not None else {}),
        }

    def _publish_heartbeat(self, stopping: bool = False) -> None:
        key = f"zc:dialer:{self.node}:{os.getpid()}"
        try:
            if stopping:
                self.redis.delete(key)
            else:
                self.redis.set(key, json.dumps(self.state()), ex=15)
        except redis.RedisError:
            pass
