"""The dialer engine: decides what to dial, originates it, and turns events into states.

Greenlets (all in one gevent process per FreeSWITCH node):

* ``supervisor`` keeps the ESL connection up: connect, subscribe, reconcile; on loss,
  reconnect with backoff;
* ``dispatcher`` sweeps the sources of due calls (each RUNNING campaign, each account's single
  calls) fairly: a source at its cap is skipped without hiding the others; per source it claims a
  batch in SQL with the cap slots and pacing slots granted in one Redis round trip, then
  originates each claimed attempt at its pacing slot (cancellation checked right before);
* ``event loop`` takes every ESL event in order, keeps what it says in memory, and writes the
  changes in batches (group commit: whatever arrived while the last batch was written goes in
  the next one): progress in one UPDATE, hangups in one transaction;
* ``lease keeper`` renews cap leases and watches the lease epoch (a Redis flush), without SQL;
* ``housekeeping`` writes the SQL heartbeat of this process, adopts the attempts of dialer
  processes that are gone, hangs up cancelled calls and calls past their length limit (again
  and again until their hangup arrives), settles attempts the switch no longer has from its CDR
  records, starts and completes campaigns, and publishes the Redis heartbeat the readiness check
  and the operator CLI read.

Ownership: every attempt carries the id of the process that claimed it. Only that process (or,
once its SQL heartbeat is stale, the process that adopts its attempts) judges how an attempt
ended; an attempt another live process is about to originate is never touched.

FreeSWITCH is spoken to only through ``dialer.esl.EslClient``; SQL is changed only through
``dialer.store.Store`` with the rules of ``core.call_states``; money moves in ``Store``'s
transactions through its ``Books`` (the ledger's batch form).
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol

import gevent
import gevent.event
import gevent.lock
import gevent.pool
import gevent.queue
import redis
from sqlalchemy import exc as sa_exc

from billing import settlement
from billing.rating import worst_case_billsec
from core import call_states as cs
from core import redis_keys
from core.call_states import CallStatus, HangupFacts
from core.db import utcnow
from core.phone import dial_digits
from core.settings import Settings
from dialer import caps as capmod
from dialer.esl import EslClient, EslCommandError, EslError
from dialer.events import (
    ChannelAnswered,
    ChannelHangup,
    ChannelProgress,
    ConnectionLost,
    DomainEvent,
    OriginateResult,
    PlaybackStarted,
    PlaybackStopped,
)
from dialer.store import Advance, Attempt, Candidate, Finished, Source, Store

log = logging.getLogger("zenscall.dialer")

# An originate that failed with -ERR usually also produces CHANNEL_HANGUP_COMPLETE (with the SIP
# status); wait this long for it before finishing from the job result.
JOB_FAILURE_GRACE = 3.0
# How long a batch of events is retried while the database is unreachable.
EVENT_RETRY_SECONDS = 300.0
# At most this many events are taken off the queue for one batch.
EVENT_BATCH = 500
# The dispatcher sweeps at most this often (free slots gather into larger claims).
MIN_SWEEP_INTERVAL = 0.02
# The margin on top of the message's length (and the ringing time) before a call is cut.
LIMIT_MARGIN_SECONDS = 10
# Kills are sent again this often until the hangup arrives.
KILL_RETRY_SECONDS = 1.0


class SwitchRecords(Protocol):
    """The switch's own record of each leg (its CDRs), read after the dialer was blind."""

    def find(self, attempt_id: str) -> HangupFacts | None: ...

    def listed(self, limit: int) -> list[str]: ...

    def remove(self, attempt_id: str) -> None: ...


@dataclass(slots=True)
class Live:
    """An attempt out on FreeSWITCH (or about to be), as this process knows it."""

    a: Attempt
    lease: capmod.Lease
    # False: claimed, not sent yet; True: sent; None: unknown (adopted, or the send broke)
    originated: bool | None = False
    watched: bool = True  # every event of it went through this process since its originate
    message_started: bool = False
    played_ms: int | None = None
    job_failure: tuple[str, float] | None = None  # (cause, monotonic deadline)
    kill_cause: str | None = None  # hang it up with this cause until its hangup arrives
    kill_next: float = 0.0
    kill_since: float = 0.0
    deadline: float = 0.0  # monotonic: cut it when still up after this
    gone_since: float | None = None  # FreeSWITCH no longer has it: waiting for its CDR
    given_back: bool = False  # unclaimed: never to be originated by this object again


@dataclass
class Counters:
    originates: int = 0
    finished: int = 0
    answered: int = 0
    retries: int = 0
    reconnects: int = 0
    reconciled: int = 0
    adopted: int = 0
    unknown: int = 0
    kills: int = 0
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
        records: SwitchRecords | None = None,
        batch_size: int = 100,
        dial_concurrency: int = 16,
        holder: str | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.caps = caps
        self.redis = redis_client
        self.records = records
        self.node = settings.dialer_node
        self.gateway = gateway_of(settings.fs_dial_template)
        self.batch_size = batch_size
        self.dial_concurrency = max(1, dial_concurrency)
        factory = esl_factory or (lambda on_event: EslClient(
            settings.fs_host, settings.fs_port, settings.fs_password, on_event=on_event,
            command_timeout=settings.fs_command_timeout, connect_timeout=settings.fs_command_timeout,
            event_format=settings.fs_event_format))
        self.esl = factory(self._on_event)
        self.live: dict[str, Live] = {}
        self.by_call: dict[str, str] = {}  # call id -> live attempt id
        self.counters = Counters()
        self._events: gevent.queue.Queue = gevent.queue.Queue()
        self._wake = gevent.event.Event()
        self._lost = gevent.event.Event()
        self._connected = gevent.event.Event()
        self._reconciling = gevent.lock.RLock()
        self._dial_pool = gevent.pool.Pool(self.dial_concurrency)
        self._greenlets: list[gevent.Greenlet] = []
        self._running = False
        self._rotation = 0
        self._pace_horizon = 0.0  # the last pacing slot handed to this process (monotonic)
        self._recently_ended: OrderedDict[str, None] = OrderedDict()  # their CDR files are deleted unread
        # hangups of our calls this process does not own (yet): kept for a while in case it adopts them
        self._orphans: OrderedDict[str, HangupFacts] = OrderedDict()
        self._live_owners: set[str] = set()
        self.started_at = time.time()
        self.holder = holder or store.owner
        self.extra_state: Callable[[], dict[str, Any]] | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        self._running = True
        self.store.register(os.getpid(), socket.gethostname())
        self._greenlets = [gevent.spawn(self._supervise), gevent.spawn(self._dispatch_loop),
                           gevent.spawn(self._event_loop), gevent.spawn(self._lease_keeper),
                           gevent.spawn(self._housekeeping)]

    def stop(self, timeout: float = 5.0) -> None:
        self._running = False
        self._wake.set()
        self._lost.set()
        self._events.put(None)
        gevent.joinall(self._greenlets, timeout=timeout)
        gevent.killall([g for g in self._greenlets if not g.dead], timeout=1)
        self._dial_pool.kill(timeout=1)
        try:  # claimed but never sent: back to the queue (retry unused) for another dialer
            self._unclaim([lv for lv in self.live.values() if lv.originated is False])
        except (sa_exc.SQLAlchemyError, redis.RedisError):
            pass  # they stay ours until the heartbeat goes stale, then are adopted
        self.esl.close()
        try:
            if not self.live:  # attempts still open stay ours until the heartbeat goes stale
                self.store.unregister()
        except sa_exc.SQLAlchemyError:
            pass
        try:
            redis_keys.clear_heartbeat(self.redis, self.node, os.getpid())
        except redis.RedisError:
            pass

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
                self.reconcile()
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
        """Called from the ESL adapter's greenlet: never blocks, only queues."""
        if isinstance(event, ConnectionLost):
            self._lost.set()
            return
        self._events.put_nowait(event)

    # -- events -> states --------------------------------------------------------------------
    def _event_loop(self) -> None:
        while True:
            event = self._events.get()
            if event is None:
                return
            batch = [event]
            while len(batch) < EVENT_BATCH:
                try:
                    more = self._events.get_nowait()
                except gevent.queue.Empty:
                    break
                if more is None:
                    self._events.put(None)
                    break
                batch.append(more)
            self._with_retry(lambda batch=batch: self.apply(batch), "events")

    def _with_retry(self, fn: Callable[[], Any], what: str) -> Any:
        """Run ``fn``; while the database or Redis is unreachable keep trying (with backoff): an
        event is the only exact record of a hangup, and applying it twice changes nothing."""
        deadline = time.monotonic() + EVENT_RETRY_SECONDS
        delay = 0.2
        while True:
            try:
                return fn()
            except (sa_exc.OperationalError, sa_exc.InterfaceError, redis.RedisError) as exc:
                if not self._running or time.monotonic() >= deadline:
                    log.error("%s dropped after retries: %s", what, exc, extra={"event": "events_dropped"})
                    return None
                log.warning("%s failed, retrying: %s", what, exc, extra={"event": "events_retry"})
                gevent.sleep(delay)
                delay = min(delay * 2, 5.0)
            except Exception:  # one bad batch must not stop the loop
                log.exception("%s failed", what, extra={"event": "events_failed"})
                return None

    def apply(self, events: list[DomainEvent]) -> list[Finished]:
        """Apply ESL events: memory first, then SQL in two batched writes (progress, hangups).
        Idempotent: repeats and late events change nothing."""
        advances: list[Advance] = []
        ends: dict[str, tuple[Live, HangupFacts]] = {}
        for event in events:
            if isinstance(event, OriginateResult):
                if event.ok:
                    continue
                live = self.live.get(event.job_uuid)
                if live is not None and event.job_uuid not in ends:
                    # the hangup event (if any) has the SIP details: give it a moment
                    live.job_failure = (event.cause or cs.ORIGINATE_FAILED, time.monotonic() + JOB_FAILURE_GRACE)
                continue
            live = self.live.get(event.uuid)
            if live is None:
                if isinstance(event, ChannelHangup) and event.uuid not in self._recently_ended:
                    self._keep_orphan(event)
                continue  # not an attempt of this process (another's, or not adopted yet)
            if event.uuid in ends:
                continue  # already ended in this batch
            if isinstance(event, ChannelProgress):
                advances.append(Advance(live.a, CallStatus.RINGING, event.at))
            elif isinstance(event, ChannelAnswered):
                advances.append(Advance(live.a, CallStatus.ANSWERED, event.at))
                live.deadline = time.monotonic() + live.a.audio_ms / 1000 + LIMIT_MARGIN_SECONDS
            elif isinstance(event, PlaybackStarted):
                live.message_started = True
            elif isinstance(event, PlaybackStopped):
                live.played_ms = event.played_ms
                live.message_started = live.message_started or bool(event.played_ms)
            elif isinstance(event, ChannelHangup):
                ends[event.uuid] = (live, self._facts(live, event))
        if advances:
            advances = [s for s in advances if s.attempt.attempt_id not in ends]
            for step, changed in zip(advances, self.store.advance(advances), strict=True):
                if changed:
                    self._log_state(step.attempt, step.to.value, level=logging.DEBUG)
        return self._finish(list(ends.values()))

    def _keep_orphan(self, event: ChannelHangup) -> None:
        self._orphans[event.uuid] = HangupFacts(
            cause=event.cause, q850=event.q850, sip_status=event.sip_status,
            answered=event.answered or event.billsec > 0, answered_at=event.answered_at, ended_at=event.ended_at,
            billsec=event.billsec, duration=event.duration, played_ms=event.played_ms,
            message_started=event.message_started)
        while len(self._orphans) > 20_000:
            self._orphans.popitem(last=False)

    @staticmethod
    def _facts(live: Live, event: ChannelHangup) -> HangupFacts:
        answered = event.answered or event.billsec > 0
        # the hangup event's own variables say whether the switch opened the message; playback
        # events (when subscribed) say it too
        started: bool | None = event.message_started
        if live.message_started or live.played_ms:
            started = True
        return HangupFacts(cause=event.cause, q850=event.q850, sip_status=event.sip_status, answered=answered,
                           answered_at=event.answered_at, ended_at=event.ended_at, billsec=event.billsec,
                           duration=event.duration, played_ms=live.played_ms or event.played_ms,
                           message_started=started)

    def _finish(self, ends: list[tuple[Live, HangupFacts]]) -> list[Finished]:
        """End attempts in SQL (one transaction), then free their cap slots (one round trip)."""
        if not ends:
            return []
        done = self.store.finish([(live.a, facts) for live, facts in ends])
        for live, _ in ends:
            self._forget(live)
        self._release([live.lease for live, _ in ends])
        self._wake.set()  # slots are free: something else may be dialed now
        by_attempt = {live.a.attempt_id: live for live, _ in ends}
        for f in done:
            self.counters.finished += 1
            if f.answered:
                self.counters.answered += 1
            if f.status is CallStatus.QUEUED:
                self.counters.retries += 1
                delay = max(0.0, (f.next_attempt_at - utcnow()).total_seconds()) if f.next_attempt_at else 0.0
                gevent.spawn_later(delay + 0.05, self._wake.set)
            if f.cause == cs.OUTCOME_UNKNOWN:
                self.counters.unknown += 1
                self._recently_ended.pop(f.attempt_id, None)  # its late record must be read, not deleted
            live = by_attempt.get(f.attempt_id)
            if live is not None:
                self._log_state(live.a, f.status.value, cause=f.cause, charged=str(f.charged),
                                next_attempt_at=f.next_attempt_at.isoformat() if f.next_attempt_at else None)
        return done

    def _forget(self, live: Live) -> None:
        if self.live.get(live.a.attempt_id) is not live:
            return  # already forgotten, and maybe claimed again under the same id
        del self.live[live.a.attempt_id]
        if self.by_call.get(live.a.call_id) == live.a.attempt_id:
            del self.by_call[live.a.call_id]
        self._recently_ended[live.a.attempt_id] = None
        while len(self._recently_ended) > 10_000:
            self._recently_ended.popitem(last=False)

    def _log_state(self, a: Attempt, state: str, level: int = logging.INFO, **fields: Any) -> None:
        if log.isEnabledFor(level):
            log.log(level, "call %s %s", a.call_id, state,
                    extra={"event": "call_state", "call_id": a.call_id, "uuid": a.attempt_id, "state": state,
                           "attempt_no": a.attempt_no, **{k: v for k, v in fields.items() if v is not None}})

    # -- dispatching -------------------------------------------------------------------------
    def _dispatch_loop(self) -> None:
        last = 0.0
        while self._running:
            self._wake.wait(timeout=self.settings.dialer_sweep_seconds)
            self._wake.clear()
            if not self._running:
                return
            if not self._connected.is_set():
                continue
            pause = last + MIN_SWEEP_INTERVAL - time.monotonic()
            if pause > 0:
                gevent.sleep(pause)
            last = time.monotonic()
            try:
                self.dispatch_once()
            except capmod.EpochChanged as exc:
                log.warning("dispatch held back: %s", exc, extra={"event": "caps_epoch"})
                gevent.sleep(0.2)
                self._wake.set()
            except Exception:
                log.exception("dispatch sweep failed", extra={"event": "dispatch_failed"})
                gevent.sleep(1)

    def dispatch_once(self) -> int:
        """One sweep over every source of due calls; returns how many attempts were claimed."""
        free_node = self.settings.node_max_channels - len(self.live)
        if free_node <= 0:
            return 0
        sources = self.store.due_sources()
        if not sources:
            return 0
        # fair: each sweep starts with the next source, and a source at its cap is skipped
        self._rotation = (self._rotation + 1) % len(sources)
        sources = sources[self._rotation:] + sources[:self._rotation]
        keys = sorted({capmod.account_cap(s.account_id, 0).key for s in sources}
                      | {capmod.campaign_cap(s.campaign_id, 0).key for s in sources if s.campaign_id})
        used = dict(zip(keys, self.caps.in_use(keys), strict=True))
        claimed_total = 0
        for source in sources:
            if not self._running or not self.esl.connected or free_node <= 0:
                break
            if self._pace_horizon - time.monotonic() > 1.0:
                break  # a second of originates is already waiting for its pacing slots
            acct_key = capmod.account_cap(source.account_id, 0).key
            free = source.account_limit - used[acct_key]
            if source.campaign_id is not None:
                free = min(free, (source.campaign_limit or 1) - used[capmod.campaign_cap(source.campaign_id, 0).key])
            cps = self.settings.gateway_cps
            want = min(free, free_node, self.batch_size, max(1, int(cps)) if cps > 0 else self.batch_size)
            if want <= 0:
                continue
            grants: dict[str, tuple[float, capmod.Lease]] = {}
            claim = self.store.claim(source, want, lambda cands, s=source, g=grants: self._grant(s, cands, g))
            self._release([grants[c.call_id][1] for c in claim.ungranted if c.call_id in grants])
            for call_id, cause in claim.skipped:
                log.info("call %s not dialed: %s", call_id, cause,
                         extra={"event": "call_state", "call_id": call_id, "state": "ENDED", "cause": cause})
            if claim.paused_unpaid:
                log.warning("campaign %s paused: the balance cannot pay the next attempt", source.campaign_id,
                            extra={"event": "campaign_paused", "campaign_id": source.campaign_id,
                                   "reason": cs.INSUFFICIENT_BALANCE})
            for attempt in claim.claimed:
                slot, lease = grants[attempt.call_id]
                self._pace_horizon = max(self._pace_horizon, slot)
                self._dial_pool.spawn(self._originate, self._track(attempt, lease, slot), slot)
            n = len(claim.claimed)
            used[acct_key] += n
            if source.campaign_id is not None:
                used[capmod.campaign_cap(source.campaign_id, 0).key] += n
            free_node -= n
            claimed_total += n
        if claimed_total:
            self._wake.set()  # more may be due: sweep again
        return claimed_total

    def _caps_of(self, source: Source, phone: str) -> list[capmod.Cap]:
        caps = [capmod.node_cap(self.node, self.settings.node_max_channels),
                capmod.account_cap(source.account_id, source.account_limit), capmod.number_cap(phone)]
        if source.campaign_id is not None:
            caps.append(capmod.campaign_cap(source.campaign_id, source.campaign_limit or 1))
        return caps

    def _member(self, call_id: str) -> str:
        """The lease member of a call held by this process."""
        return f"{call_id}@{self.holder}"

    def _grant(self, source: Source, candidates: list[Candidate],
               grants: dict[str, tuple[float, capmod.Lease]]) -> list[Candidate]:
        """The caps' answer for a batch of candidates: their pacing slots (monotonic) and leases."""
        offers = [(self._member(c.call_id), self._caps_of(source, c.phone_number)) for c in candidates]
        granted = []
        started = time.monotonic()
        for index, wait in self.caps.grant(offers, self.gateway, self.settings.gateway_cps):
            cand = candidates[index]
            member, caps = offers[index]
            grants[cand.call_id] = (started + wait, capmod.Lease(member, tuple(c.key for c in caps)))
            granted.append(cand)
        return granted

    def _release(self, leases: list[capmod.Lease]) -> None:
        try:
            self.caps.release(leases)
        except redis.RedisError as exc:  # the leases expire by themselves
            log.warning("cap release failed: %s", exc, extra={"event": "cap_release_failed"})

    def _track(self, a: Attempt, lease: capmod.Lease, slot: float) -> Live:
        live = Live(a, lease)
        live.deadline = max(slot, time.monotonic()) + self._ring_limit(a)
        self.live[a.attempt_id] = live
        self.by_call[a.call_id] = a.attempt_id
        return live

    def _ring_limit(self, a: Attempt) -> float:
        return self.settings.fs_originate_timeout + a.audio_ms / 1000 + LIMIT_MARGIN_SECONDS

    def _originate(self, live: Live, slot: float) -> None:
        wait = slot - time.monotonic()
        if wait > 0:
            gevent.sleep(wait)
        a = live.a
        if self.live.get(a.attempt_id) is not live or live.given_back:
            return  # ended meanwhile (e.g. cancelled), or given back and claimed again under its id
        if live.kill_cause is not None or a.cancel_requested:
            # cancelled while it waited for its slot: never dialed
            self._with_retry(lambda: self._finish([(live, HangupFacts(cause=cs.CANCELLED_BY_USER))]), "cancel")
            return
        if not self.esl.connected:
            self._with_retry(lambda: self._unclaim([live]), "unclaim")
            return
        self._log_state(a, "DIALING", level=logging.DEBUG, number=a.phone_number)
        limit = worst_case_billsec(a.audio_ms) + LIMIT_MARGIN_SECONDS
        try:
            live.originated = None  # from here on FreeSWITCH may have it
            self.esl.originate(
                a.attempt_id, a.call_id, dial_digits(a.phone_number), self.settings.fs_dial_template,
                f"{self.settings.fs_audio_dir.rstrip('/')}/{a.audio_id}.wav",
                (a.caller_id or self.settings.fs_caller_id).lstrip("+"), self.settings.fs_originate_timeout,
                limit_s=limit,
            )
        except (EslCommandError, ValueError) as exc:
            # refused by FreeSWITCH (or by our own argument checks): no channel exists
            log.warning("originate refused: %s", exc, extra={"call_id": a.call_id, "uuid": a.attempt_id})
            self._with_retry(lambda: self._finish([(live, HangupFacts(cause=cs.ORIGINATE_FAILED))]), "finish")
            return
        except EslError as exc:
            # the connection broke while sending: FreeSWITCH may or may not have the channel;
            # reconciliation after the reconnect decides (originated stays None: unknown)
            log.warning("originate interrupted: %s", exc, extra={"call_id": a.call_id, "uuid": a.attempt_id})
            return
        live.originated = True
        self.counters.originates += 1
        self.counters.recent_originates.append(time.monotonic())

    def _unclaim(self, lives: list[Live]) -> None:
        """Attempts never sent go back to the queue; those whose call (or campaign) was cancelled
        meanwhile end CANCELLED instead, never dialed. An attempt is given back once: the call may
        be claimed again at once under the same attempt id, by a new object this must not touch."""
        lives = [lv for lv in lives if not lv.given_back and lv.originated is False
                 and self.live.get(lv.a.attempt_id) is lv]
        if not lives:
            return
        for live in lives:
            live.given_back = True
        cancelled = {a.attempt_id for a in self.store.unclaim([lv.a for lv in lives])}
        self._finish([(lv, HangupFacts(cause=cs.CANCELLED_BY_USER)) for lv in lives if lv.a.attempt_id in cancelled])
        for live in lives:
            self._forget(live)
        self._release([lv.lease for lv in lives if lv.a.attempt_id not in cancelled])
        self._wake.set()

    # -- cancel -------------------------------------------------------------------------------------
    def cancel(self, call_id: str) -> bool:
        """The customer cancelled a live call: hang it up, again and again until its hangup comes
        (a channel that does not exist yet is killed as soon as it does; an attempt still waiting
        for its originate is never dialed)."""
        attempt_id = self.by_call.get(call_id)
        live = self.live.get(attempt_id) if attempt_id else None
        if live is None:
            return False
        live.a.cancel_requested = True
        self._request_kill(live, "NORMAL_CLEARING")
        return True

    def _request_kill(self, live: Live, cause: str) -> None:
        if live.kill_cause is None:
            live.kill_cause, live.kill_next, live.kill_since = cause, 0.0, time.monotonic()
        self._send_kills()

    def _send_kills(self) -> None:
        if not self.esl.connected:
            return
        now = time.monotonic()
        for live in list(self.live.values()):
            if live.kill_cause is None or live.originated is False or live.kill_next > now:
                continue
            live.kill_next = now + KILL_RETRY_SECONDS
            try:
                killed = self.esl.kill(live.a.attempt_id, live.kill_cause)
            except EslError as exc:
                log.warning("uuid_kill failed: %s", exc, extra={"call_id": live.a.call_id, "uuid": live.a.attempt_id})
                return
            self.counters.kills += 1
            self._log_state(live.a, "KILL_SENT", level=logging.DEBUG, killed=killed, cause=live.kill_cause)

    # -- reconciliation --------------------------------------------------------------------------
    def reconcile(self) -> int:
        """After a (re)connect: adopt the attempts of dialer processes that are gone, then check
        every attempt this process owns against FreeSWITCH. A live channel keeps its attempt (and
        gets its leases back); an attempt never sent goes back to the queue, its retry unused; a
        channel the switch no longer has is settled from the switch's record (or ends
        OUTCOME_UNKNOWN when no record comes). Returns how many attempts were settled."""
        with self._reconciling:
            self._adopt()
            channels = self.esl.channel_uuids()
            never_sent = [lv for lv in self.live.values() if lv.originated is False]
            now = time.monotonic()
            for live in self.live.values():
                if live.originated is False:
                    continue
                live.watched = False  # events may have been missed while disconnected
                if live.a.attempt_id in channels:
                    live.originated, live.gone_since = True, None
                    if live.kill_cause is not None:
                        live.kill_next = 0.0
                elif live.gone_since is None:
                    live.gone_since = now
            self.caps.renew([lv.lease for lv in self.live.values()])
            if never_sent:
                self._unclaim(never_sent)
            return self.settle_gone()

    def _adopt(self) -> list[Live]:
        """Take over the open attempts of gone processes of this node; returns those newly tracked."""
        stale = timedelta(seconds=self.settings.dialer_owner_stale_seconds)
        self._live_owners = self.store.live_owners(stale) | {self.store.owner}
        dead = self.store.orphans(self._live_owners)
        if dead:
            n = self.store.adopt(dead)
            self.counters.adopted += n
            log.warning("adopted %d open attempts of dialer processes that are gone: %s", n, ", ".join(dead),
                        extra={"event": "attempts_adopted"})
        added: list[Live] = []
        for a in self.store.owned_attempts(exclude=set(self.live)):
            if a.attempt_id in self.live:
                # claimed and tracked by the dispatcher while the query ran: its originate is
                # waiting for its pacing slot, and replacing its Live would leave it undialed
                continue
            keys = tuple(c.key for c in self._caps_of(
                Source(a.account_id, a.campaign_id, 1_000_000, 1_000_000 if a.campaign_id else None), a.phone_number))
            live = Live(a, capmod.Lease(self._member(a.call_id), keys), originated=None, watched=False)
            live.deadline = time.monotonic() + self._ring_limit(a)
            if a.cancel_requested:
                live.kill_cause, live.kill_since = "NORMAL_CLEARING", time.monotonic()
            self.live[a.attempt_id] = live
            self.by_call[a.call_id] = a.attempt_id
            added.append(live)
        return added

    def settle_gone(self) -> int:
        """Attempts FreeSWITCH no longer has: settle each from the switch's record; after the wait
        for it (``CDR_WAIT_SECONDS``) one that has none ends OUTCOME_UNKNOWN (never retried)."""
        gone = [lv for lv in self.live.values() if lv.gone_since is not None]
        if not gone:
            return 0
        wait = self.settings.cdr_wait_seconds
        now = time.monotonic()
        ends: list[tuple[Live, HangupFacts]] = []
        for live in gone:
            facts = self._orphans.pop(live.a.attempt_id, None)
            if facts is None and self.records is not None:
                facts = self.records.find(live.a.attempt_id)
            if facts is not None:
                ends.append((live, facts))
            elif live.job_failure is not None:
                ends.append((live, HangupFacts(cause=live.job_failure[0])))
            elif now - live.gone_since >= wait:  # type: ignore[operator]
                ends.append((live, HangupFacts(cause=cs.OUTCOME_UNKNOWN)))
        self._finish(ends)
        for live, facts in ends:
            if self.records is not None and facts.cause != cs.OUTCOME_UNKNOWN:
                self.records.remove(live.a.attempt_id)
        self.counters.reconciled += len(ends)
        if ends:
            log.info("settled %d attempts the switch no longer has", len(ends), extra={"event": "reconciled"})
        return len(ends)

    def sweep_records(self, limit: int = 2000) -> int:
        """Delete the switch's records of attempts already settled (unread: the ESL event said
        it all); settle an attempt that ended OUTCOME_UNKNOWN when its record turns up late."""
        if self.records is None:
            return 0
        listed = self.records.listed(limit)
        if not listed:
            return 0
        unknown = [u for u in listed if u not in self._recently_ended and u not in self.live]
        states = self.store.ended(unknown) if unknown else {}
        removed = 0
        for uuid in listed:
            if uuid in self.live:
                continue  # its own hangup event (or the reconciliation) will settle it
            if uuid in states and states[uuid] == cs.OUTCOME_UNKNOWN:
                attempt = settlement.unknown_attempt(self.store.engine, uuid)
                facts = self.records.find(uuid)
                if attempt is not None and facts is not None:
                    settled = settlement.settle_unknown(self.store.engine, attempt, facts)
                    if settled is not None:
                        log.warning("attempt %s settled from the switch's late record: %s", uuid,
                                    settled.status.value, extra={"event": "late_record", "call_id": attempt.call_id})
            elif uuid in states and states[uuid] is None:
                continue  # open, owned by another live process: it is theirs to settle
            self.records.remove(uuid)
            removed += 1
        return removed

    # -- cap leases ----------------------------------------------------------------------------------
    def _leases(self) -> list[capmod.Lease]:
        return [lv.lease for lv in list(self.live.values())]

    def _lease_keeper(self) -> None:
        """Renew the leases of live calls and watch the lease epoch; no SQL on this path."""
        renew_every = max(1.0, self.settings.cap_lease_seconds / 4)
        last_renew = time.monotonic()
        while self._running:
            try:
                self.caps.sync_epoch(self.holder, self._leases, lambda: self._live_owners or {self.holder})
                if time.monotonic() - last_renew >= renew_every:
                    self.caps.renew(self._leases())
                    last_renew = time.monotonic()
            except redis.RedisError as exc:
                log.warning("lease keeping failed: %s", exc, extra={"event": "lease_keeper_failed"})
            gevent.sleep(0.5)

    # -- housekeeping ----------------------------------------------------------------------------------
    def _housekeeping(self) -> None:
        tick = 0
        last_beat = 0.0
        # the SQL heartbeat is written 4 times per stale period; gone owners are looked for twice
        stale = self.settings.dialer_owner_stale_seconds
        self._beat_every = max(0.5, min(5.0, stale / 4))
        adopt_ticks = max(1, int(min(10.0, stale / 2) / 0.5))
        while self._running:
            gevent.sleep(0.5)
            tick += 1
            for name, every, job in (
                ("heartbeat", 1, self._sql_heartbeat),
                ("kills", 1, self._kill_overdue),
                ("job_failures", 1, self._expire_job_failures),
                ("cancels", 2, self._poll_cancels),
                ("campaigns", 4, self._campaigns),
                ("records", 2, self._records),
                ("adopt", adopt_ticks, self._adopt_if_connected),
            ):
                if tick % every == 0:
                    try:
                        job()
                    except Exception:
                        log.exception("housekeeping %s failed", name, extra={"event": "housekeeping_failed"})
            if time.monotonic() - last_beat >= 1.0:
                last_beat = time.monotonic()
                self._publish_heartbeat()

    def _sql_heartbeat(self) -> None:
        now = time.monotonic()
        if now - getattr(self, "_last_sql_beat", 0.0) >= self._beat_every:
            self.store.heartbeat()
            self._last_sql_beat = now

    def _kill_overdue(self) -> None:
        """Every call ends: a channel still up past its limit is hung up (again until it goes)."""
        now = time.monotonic()
        for live in list(self.live.values()):
            if live.kill_cause is None and live.originated is not False and now > live.deadline:
                log.warning("call %s past its length limit: hanging up", live.a.call_id,
                            extra={"event": "limit_reached", "call_id": live.a.call_id, "uuid": live.a.attempt_id})
                live.kill_cause, live.kill_since = "ALLOTTED_TIMEOUT", now
            if (live.kill_cause is not None and live.kill_since and now > live.kill_since + 30
                    and live.gone_since is None and self._connected.is_set()
                    and not self.esl.exists(live.a.attempt_id)):
                # killed for 30 s and still no hangup: the switch no longer has it
                live.gone_since = now
        self._send_kills()

    def _expire_job_failures(self) -> None:
        now = time.monotonic()
        ends = [(lv, HangupFacts(cause=lv.job_failure[0])) for lv in list(self.live.values())
                if lv.job_failure is not None and lv.job_failure[1] <= now]
        self._finish(ends)

    def _poll_cancels(self) -> None:
        """The cancel job may be lost (Redis flushed): SQL says which live calls must be hung up."""
        wanted = self.store.cancel_requested(lv.a.call_id for lv in self.live.values() if lv.kill_cause is None)
        for call_id in wanted:
            self.cancel(call_id)

    def _campaigns(self) -> None:
        started, completed = self.store.campaign_housekeeping()
        if started:
            self._wake.set()
        for campaign_id in completed:
            log.info("campaign %s completed", campaign_id,
                     extra={"event": "campaign_completed", "campaign_id": campaign_id})

    def _records(self) -> None:
        if self._connected.is_set():
            with self._reconciling:
                self.settle_gone()
        self.sweep_records()

    def _adopt_if_connected(self) -> None:
        """Attempts of a dialer process that died meanwhile are adopted and checked one by one."""
        if not self._connected.is_set():
            return
        with self._reconciling:
            added = self._adopt()
            now = time.monotonic()
            for live in added:
                if self.esl.exists(live.a.attempt_id):
                    live.originated = True
                else:
                    live.gone_since = now
            if added:
                self.caps.renew([lv.lease for lv in added])

    # -- state -------------------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "pid": os.getpid(),
            "owner": self.store.owner,
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
            "adopted_total": self.counters.adopted,
            "unknown_total": self.counters.unknown,
            "lease_epoch_changes_total": self.caps.flushes_seen,
            **(self.extra_state() if self.extra_state is not None else {}),
        }

    def _publish_heartbeat(self) -> None:
        try:
            redis_keys.publish_heartbeat(self.redis, self.node, os.getpid(), self.state())
        except redis.RedisError:
            pass
