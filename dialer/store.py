"""Where the dialer changes a call's state in SQL: claims, progress, finishes, reconciliation.

Every write takes its allowed source statuses from the call state machine
(``core.call_states``) and works on batches, one transaction each:

* ``claim`` takes up to N due calls of one source (a campaign, or one account's single
  calls) in one transaction: the rows are locked (``FOR UPDATE SKIP LOCKED``, so dialers never
  wait for each other), the do-not-call ones end CANCELLED, the caps are granted in Redis
  (one round trip, ``grant``), the money is reserved (the account row locked once), and the
  calls move QUEUED -> DIALING with an attempt row each, stamped with this process as
  ``owner`` and with the rate and pulse it will be charged at;
* ``advance`` applies RINGING / ANSWERED to many calls in one UPDATE (never backwards);
* ``finish`` ends many attempts at once: the attempts once (``WHERE ended_at IS NULL``), their
  calls (retry or final; a cancel asked for meanwhile always wins, in SQL), the money
  (release + charge at the frozen rate, one UPDATE of each account and the ledger rows);
* ``unclaim`` gives back attempts whose originate was never sent (their retry is not used,
  their reservation is kept for the next claim, their ``call.dialing`` withdrawn if not sent yet);
* ``register`` / ``heartbeat`` / ``dead_owners`` / ``adopt``: an attempt is judged only by the
  process that owns it, or by whoever adopts it once the owner's heartbeat is stale.

Nothing here talks to FreeSWITCH or keeps state between calls; every function is safe to run
again with the same input.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from billing.books import Books
from billing.rating import call_cost, reservation_for
from billing.settlement import book_attempt
from core import call_states as cs
from core import outbox, sqlbatch
from core.call_states import CallStatus, HangupFacts, Step
from core.campaign_states import INSUFFICIENT_BALANCE as PAUSED_UNPAID
from core.campaign_states import CampaignStatus, CampaignStep
from core.db import utcnow
from core.models import (
    Account,
    AudioFile,
    Call,
    CallAttempt,
    Campaign,
    DialerInstance,
    DncNumber,
    LedgerEntry,
    new_id,
)
from core.states import LedgerKind
from core.window import Window

log = logging.getLogger("zenscall.dialer")

ZERO = Decimal("0")
_calls, _attempts, _accounts = Call.__table__, CallAttempt.__table__, Account.__table__
_ledger, _campaigns, _instances = LedgerEntry.__table__, Campaign.__table__, DialerInstance.__table__


# --------------------------------------------------------------------------- values


@dataclass(frozen=True)
class Source:
    """A queue of due calls the dispatcher serves on its own: one RUNNING campaign inside its
    calling window, or one account's single calls."""

    account_id: str
    campaign_id: str | None
    account_limit: int
    campaign_limit: int | None = None
    window: Window | None = None

    @property
    def key(self) -> str:
        return f"camp:{self.campaign_id}" if self.campaign_id else f"acct:{self.account_id}"


@dataclass(frozen=True)
class Candidate:
    """A due call read by ``claim``, offered to the caps before it is claimed."""

    call_id: str
    phone_number: str
    caller_id: str | None
    audio_id: str
    audio_ms: int
    attempts_count: int
    next_attempt_id: str | None
    max_retries: int
    retry_delay: int
    rate: Decimal | None
    pulse: int | None


@dataclass(slots=True)
class Attempt:
    """An attempt owned by this process: everything settlement needs, from claim to finish."""

    attempt_id: str
    call_id: str
    account_id: str
    campaign_id: str | None
    attempt_no: int
    phone_number: str
    audio_id: str
    audio_ms: int
    caller_id: str | None
    max_retries: int
    retry_delay: int
    rate: Decimal
    pulse: int
    hold: Decimal  # the reservation held for it (0: nothing held)
    started_at: datetime
    window: Window | None = None
    status: CallStatus = CallStatus.DIALING
    ringing_at: datetime | None = None
    answered_at: datetime | None = None
    cancel_requested: bool = False


@dataclass
class Claim:
    claimed: list[Attempt] = field(default_factory=list)
    #: granted by the caps but not claimed (the caller releases their leases)
    ungranted: list[Candidate] = field(default_factory=list)
    #: ended without a dial: do-not-call (CANCELLED) and unpaid single calls (FAILED)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (call id, cause)
    #: the campaign was paused because the balance cannot pay its next attempt
    paused_unpaid: bool = False


@dataclass(frozen=True)
class Finished:
    """What ``finish`` did, for logs, leases and counters."""

    call_id: str
    attempt_id: str
    status: CallStatus  # the call's new status (QUEUED when a retry is scheduled)
    cause: str | None
    charged: Decimal
    next_attempt_at: datetime | None
    answered: bool


@dataclass(frozen=True)
class Advance:
    """A live-state step of an attempt (RINGING or ANSWERED at ``at``)."""

    attempt: Attempt
    to: CallStatus
    at: datetime


@dataclass
class _Settle:
    """One attempt's end as ``finish`` computes it."""

    attempt: Attempt
    facts: HangupFacts
    answered: bool
    billsec: int
    charge: Decimal
    cause: str
    attempt_status: CallStatus
    nxt: cs.Next
    unknown: bool


# --------------------------------------------------------------------------- statements


def _source_where(source: Source, now: datetime) -> list[Any]:
    c = _calls.c
    return [c.campaign_id.is_(None) if source.campaign_id is None else c.campaign_id == source.campaign_id,
            c.status == CallStatus.QUEUED, c.account_id == source.account_id, c.next_attempt_at <= now,
            c.cancel_requested_at.is_(None)]


def _by_source(query: sa.Select[Any]) -> sa.Select[Any]:
    """Read due calls by source (ix_calls_source_due: campaign_id, status, account_id,
    next_attempt_at). Left to itself MariaDB takes ix_calls_due (status, next_attempt_at) and walks
    every due call of every campaign, paused ones included, to find one source's: a claim or a
    sweep then costs hundreds of ms at 50,000 due calls and grows with them (``bench/dispatch.py``)."""
    return query.with_hint(_calls, "FORCE INDEX (ix_calls_source_due)", "mysql").with_hint(
        _calls, "FORCE INDEX (ix_calls_source_due)", "mariadb")


def _live_guard(table: sa.Table) -> list[Any]:
    return [sqlbatch.one_of(table.c.status, sorted(Step.FINISH.sources))]


def _not_ended(table: sa.Table) -> list[Any]:
    return [table.c.ended_at.is_(None)]


_FINISH_ATTEMPT_COLS = ("ended_at", "status", "hangup_cause", "q850_cause", "sip_status", "billsec", "duration",
                        "played_ms", "cost", "answered_at", "ringing_at")
_FINISH_CALL_COLS = ("status", "next_attempt_at", "last_cause", "last_sip_status", "billsec", "cost",
                     "answered_at", "ended_at")


def _retry(fn: Callable[[], Any], what: str, tries: int = 3) -> Any:
    """Run a transaction again when the database chose it as a deadlock victim."""
    for attempt in range(tries):
        try:
            return fn()
        except sa_exc.OperationalError as exc:
            code = getattr(getattr(exc, "orig", None), "args", [None])[0]
            if code not in (1213, 1205) or attempt == tries - 1:  # deadlock, lock wait timeout
                raise
            log.warning("%s: deadlock, trying again", what)
    return None


class Store:
    def __init__(self, engine: sa.Engine, node: str, owner: str, clock: Callable[[], datetime] = utcnow) -> None:
        self.engine = engine
        self.node = node
        self.owner = owner  # this process (dialer_instances.id)
        self.clock = clock  # frozen in tests of calling windows
        self._audio_ms: dict[str, int] = {}  # audio is immutable once uploaded

    # -- the registry of dialer processes --------------------------------------------------
    def register(self, pid: int, hostname: str) -> None:
        now = self.clock()
        with self.engine.begin() as conn:
            conn.execute(sa.delete(_instances).where(_instances.c.id == self.owner))
            conn.execute(sa.insert(_instances).values(id=self.owner, node=self.node, pid=pid, hostname=hostname[:255],
                                                      started_at=now, heartbeat_at=now))

    def heartbeat(self) -> None:
        with self.engine.begin() as conn:
            conn.execute(sa.update(_instances).where(_instances.c.id == self.owner)
                         .values(heartbeat_at=self.clock()))

    def unregister(self) -> None:
        with self.engine.begin() as conn:
            conn.execute(sa.delete(_instances).where(_instances.c.id == self.owner))

    def live_owners(self, stale_after: timedelta) -> set[str]:
        """Dialer processes whose heartbeat is fresh, of every node (this one included): after a
        Redis flush each of them must restore its leases before anything new is granted, since
        account, campaign and number caps are shared by all nodes."""
        cutoff = self.clock() - stale_after
        with self.engine.connect() as conn:
            return set(conn.execute(sa.select(_instances.c.id).where(_instances.c.heartbeat_at >= cutoff)).scalars())

    # -- what to dial ------------------------------------------------------------------------
    def due_sources(self, now: datetime | None = None) -> list[Source]:
        """Every source with calls due now: each RUNNING campaign inside its calling window, and
        each account with due single calls. Three small reads; the calls themselves are read per
        source by ``claim``, so one source at its cap never hides another's calls."""
        now = now or self.clock()
        c, camp, a = _calls.c, _campaigns.c, _accounts.c
        with self.engine.connect() as conn:
            campaigns = conn.execute(
                sa.select(camp.id, camp.account_id, camp.concurrent_limit, camp.window_start, camp.window_end,
                          camp.timezone).where(camp.status == CampaignStatus.RUNNING).order_by(camp.created_at)
            ).all()
            # from ix_calls_source_due alone: an account found only for a call whose cancel is
            # asked is harmless (``claim`` skips such calls)
            singles = list(conn.execute(
                _by_source(sa.select(c.account_id).distinct()
                           .where(c.campaign_id.is_(None), c.status == CallStatus.QUEUED, c.next_attempt_at <= now))
            ).scalars())
            open_campaigns = []
            for cid, account_id, limit, start, end, tz in campaigns:
                window = Window.of(start, end, tz)
                if window.contains(now):
                    open_campaigns.append((cid, account_id, limit, window))
            ids = {r[1] for r in open_campaigns} | set(singles)
            if not ids:
                return []
            accounts = dict(conn.execute(sa.select(a.id, a.max_concurrent_calls)
                                         .where(a.id.in_(ids), a.active.is_(True))).all())
        sources = [Source(acc, cid, accounts[acc], limit, window)
                   for cid, acc, limit, window in open_campaigns if acc in accounts]
        sources += [Source(acc, None, accounts[acc]) for acc in singles if acc in accounts]
        return sources

    def _audio_durations(self, conn: sa.Connection, ids: set[str]) -> dict[str, int]:
        missing = ids - self._audio_ms.keys()
        if missing:
            self._audio_ms.update(conn.execute(
                sa.select(AudioFile.id, AudioFile.duration_ms).where(AudioFile.id.in_(missing))).all())
        return self._audio_ms

    # -- claiming ------------------------------------------------------------------------------
    def claim(self, source: Source, limit: int, grant: Callable[[list[Candidate]], list[Candidate]],
              now: datetime | None = None) -> Claim:
        """Claim up to ``limit`` due calls of ``source`` in one transaction (see the module doc).

        ``grant`` receives the dialable candidates in order and returns those that got their cap
        slots (it is called inside the transaction; if it raises, nothing is claimed). Whatever
        ``grant`` granted but was not claimed is returned in ``ungranted``."""
        now = now or self.clock()
        return _retry(lambda: self._claim(source, limit, grant, now), "claim")  # type: ignore[no-any-return]

    def _claim(self, source: Source, limit: int, grant: Callable[[list[Candidate]], list[Candidate]],
               now: datetime) -> Claim:
        c = _calls.c
        listed = sa.exists().where(DncNumber.account_id == c.account_id, DncNumber.phone_number == c.phone_number)
        result = Claim()
        with self.engine.begin() as conn:
            rows = conn.execute(
                _by_source(sa.select(c.id, c.phone_number, c.caller_id, c.audio_id, c.attempts_count,
                                     c.next_attempt_id, c.max_retries, c.retry_delay_seconds, c.rate_per_minute,
                                     c.pulse_seconds, listed))
                .where(*_source_where(source, now))
                .order_by(c.next_attempt_at, c.id).limit(limit)
                .with_for_update(skip_locked=True)
            ).all()
            if not rows:
                return result
            audio = self._audio_durations(conn, {r.audio_id for r in rows})
            dnc = [r.id for r in rows if r[10]]
            candidates = [Candidate(r.id, r.phone_number, r.caller_id, r.audio_id, audio.get(r.audio_id, 0),
                                    r.attempts_count, r.next_attempt_id, r.max_retries, r.retry_delay_seconds,
                                    r.rate_per_minute, r.pulse_seconds) for r in rows if not r[10]]
            granted = grant(candidates) if candidates else []
            pre = [g.next_attempt_id for g in granted if g.next_attempt_id]
            books = Books(conn, [source.account_id])
            held: dict[str, tuple[Decimal, bool]] = {}
            if pre or dnc:
                led = _ledger.c
                ids = pre + [x for x in conn.execute(sa.select(c.next_attempt_id).where(
                    c.id.in_(dnc), c.next_attempt_id.is_not(None))).scalars()]
                for attempt_id, kind, hold in conn.execute(
                        sa.select(led.attempt_id, led.kind, led.hold).where(
                            led.attempt_id.in_(ids), led.kind.in_([LedgerKind.RESERVE, LedgerKind.RELEASE]))):
                    hold_now, released = held.get(attempt_id, (ZERO, False))
                    if LedgerKind(kind) is LedgerKind.RESERVE:
                        held[attempt_id] = (hold, released)
                    else:
                        held[attempt_id] = (hold_now, True)
            events: list[dict[str, Any]] = []
            if dnc:
                result.skipped += self._end_queued(conn, books, dnc, Step.SKIP_DO_NOT_CALL, CallStatus.CANCELLED,
                                                   cs.DO_NOT_CALL, now, held, events)
            if source.account_id not in books.state:  # the account vanished: nothing to claim
                result.ungranted = granted
                outbox.write(conn, events)
                books.flush()
                return result
            rate, pulse = books.terms[source.account_id]
            claimed: list[Attempt] = []
            unpaid: list[str] = []
            for cand in granted:
                pre_id = cand.next_attempt_id
                hold, released = held.get(pre_id, (ZERO, True)) if pre_id else (ZERO, True)
                if pre_id and not released and hold > 0:
                    attempt_id = pre_id
                    a_rate, a_pulse = cand.rate or rate, cand.pulse or pulse
                else:
                    attempt_id = new_id() if pre_id and pre_id in held else (pre_id or new_id())
                    a_rate, a_pulse = rate, pulse
                    hold = reservation_for(cand.audio_ms, a_rate, a_pulse)
                    if unpaid or not books.move(source.account_id, LedgerKind.RESERVE, hold=hold, call_id=cand.call_id,
                                                attempt_id=attempt_id, description="reservation for call attempt",
                                                now=now):
                        unpaid.append(cand.call_id)
                        result.ungranted.append(cand)
                        continue
                claimed.append(Attempt(
                    attempt_id=attempt_id, call_id=cand.call_id, account_id=source.account_id,
                    campaign_id=source.campaign_id, attempt_no=cand.attempts_count + 1,
                    phone_number=cand.phone_number, audio_id=cand.audio_id, audio_ms=cand.audio_ms,
                    caller_id=cand.caller_id, max_retries=cand.max_retries, retry_delay=cand.retry_delay,
                    rate=a_rate, pulse=a_pulse, hold=hold, started_at=now, window=source.window))
            if unpaid:
                if source.campaign_id is not None:
                    result.paused_unpaid = conn.execute(
                        sa.update(_campaigns)
                        .where(_campaigns.c.id == source.campaign_id,
                               _campaigns.c.status.in_(CampaignStep.PAUSE_UNPAID.sources))
                        .values(status=CampaignStatus.PAUSED, pause_reason=PAUSED_UNPAID, updated_at=now)
                    ).rowcount == 1
                    if result.paused_unpaid:
                        outbox.campaign_events(conn, [source.campaign_id], "campaign.paused", now,
                                               {"pause_reason": PAUSED_UNPAID})
                else:
                    result.skipped += self._end_queued(conn, books, unpaid, Step.FAIL_UNPAID, CallStatus.FAILED,
                                                       cs.INSUFFICIENT_BALANCE, now, held, events)
            if claimed:
                rows_update = [{"id": a.call_id, "live_attempt_id": a.attempt_id, "attempts_count": a.attempt_no,
                                "rate_per_minute": a.rate, "pulse_seconds": a.pulse} for a in claimed]
                cols = ("live_attempt_id", "attempts_count", "rate_per_minute", "pulse_seconds")
                done = sqlbatch.run_batch_update(conn, _calls, "id", cols, rows_update, extra=_queued_guard, const={
                    "status": cs.check(Step.CLAIM, CallStatus.QUEUED, CallStatus.DIALING), "next_attempt_id": None,
                    "next_attempt_at": None, "updated_at": now})
                if done != len(claimed):  # cannot happen under the row locks; never dial on a doubt
                    raise RuntimeError(f"claim changed {done} of {len(claimed)} calls")
                sqlbatch.insert_rows(conn, _attempts, [{
                    "id": a.attempt_id, "call_id": a.call_id, "account_id": a.account_id,
                    "attempt_no": a.attempt_no, "node": self.node, "owner": self.owner,
                    "status": CallStatus.DIALING, "dialed_number": a.phone_number, "started_at": now,
                    "reserved_amount": a.hold, "rate_per_minute": a.rate, "pulse_seconds": a.pulse,
                    "billsec": 0, "duration": 0, "cost": ZERO} for a in claimed])
                events += [outbox.call_event(a.account_id, a.call_id, CallStatus.DIALING, a.attempt_no, now)
                           for a in claimed]
            outbox.write(conn, events)
            books.flush()
        result.claimed = claimed
        return result

    def _end_queued(self, conn: sa.Connection, books: Books, call_ids: list[str], step: Step,
                    status: CallStatus, cause: str, now: datetime,
                    held: dict[str, tuple[Decimal, bool]], events: list[dict[str, Any]]) -> list[tuple[str, str]]:
        """End QUEUED calls without dialing them, releasing what was reserved for their next attempt;
        their events are added to ``events``."""
        c = _calls.c
        cs.check(step, CallStatus.QUEUED, status)
        rows = conn.execute(sa.select(c.id, c.account_id, c.next_attempt_id, c.attempts_count).where(
            c.id.in_(call_ids), c.status.in_(step.sources))).all()
        if not rows:
            return []
        events += [outbox.call_event(r.account_id, r.id, status, r.attempts_count, now, queued_end=True) for r in rows]
        conn.execute(sa.update(_calls).where(c.id.in_([r.id for r in rows]), c.status.in_(step.sources))
                     .values(status=status, last_cause=cause, ended_at=now, next_attempt_at=None, updated_at=now))
        for call_id, account_id, next_attempt_id, _ in rows:
            hold, released = held.get(next_attempt_id, (ZERO, True)) if next_attempt_id else (ZERO, True)
            if not released and hold > 0 and account_id in books.state:
                books.move(account_id, LedgerKind.RELEASE, hold=-hold, call_id=call_id, attempt_id=next_attempt_id,
                           description="reservation released: call not dialed", now=now)
        return [(r.id, cause) for r in rows]

    def unclaim(self, attempts: Sequence[Attempt]) -> list[Attempt]:
        """Give back attempts whose originate was never sent: QUEUED again at once, the retry not
        used, the reservation kept for the next claim (the attempt id becomes the call's next).

        Returns the attempts NOT given back: their call was cancelled meanwhile, or its campaign
        was (a queued call would then never be claimed nor ended); the caller ends those (finish,
        with ``cancel_requested``). The calls are locked first, so a cancel cannot slip between."""
        if not attempts:
            return []
        now = self.clock()
        with self.engine.begin() as conn:
            # locked in the order every writer takes them (campaigns, then calls): a cancel of
            # either waits for this transaction and then finds the call where it can end it
            campaign_status, cancel_asked = self._lock_for_end(conn, attempts)

            def cancelled(a: Attempt) -> bool:
                return (a.call_id in cancel_asked
                        or campaign_status.get(a.campaign_id or "") is CampaignStatus.CANCELLED)

            ended = [a for a in attempts if cancelled(a)]
            back = [a for a in attempts if not cancelled(a)]
            if back:
                conn.execute(sa.delete(_attempts).where(
                    _attempts.c.id.in_([a.attempt_id for a in back]), _attempts.c.ended_at.is_(None),
                    _attempts.c.owner == self.owner))
                rows = [{"id": a.call_id, "live_attempt_id": a.attempt_id, "next_attempt_id": a.attempt_id,
                         "attempts_count": a.attempt_no - 1} for a in back]
                sqlbatch.run_batch_update(conn, _calls, "id", ("next_attempt_id", "attempts_count"), rows,
                                         guard="live_attempt_id", extra=_unclaim_guard, const={
                                             "status": cs.check(Step.UNCLAIM, CallStatus.DIALING, CallStatus.QUEUED),
                                             "live_attempt_id": None, "next_attempt_at": now, "updated_at": now})
                outbox.withdraw_dialing(conn, [(a.call_id, a.attempt_no) for a in back])
        for a in ended:
            a.cancel_requested = True
        return ended

    # -- live states -----------------------------------------------------------------------------
    def advance(self, steps: Sequence[Advance]) -> list[bool]:
        """RINGING / ANSWERED for many calls in one UPDATE (their attempts get the times at
        finish). A call moves only forward and only while the attempt is still its live one."""
        done = [False] * len(steps)
        rows: dict[str, dict[str, Any]] = {}
        moved: list[Advance] = []  # every step taken, for its event (ringing and answered in one batch: both)
        for i, step in enumerate(steps):
            a = step.attempt
            row = rows.get(a.call_id) or {"id": a.call_id, "live_attempt_id": a.attempt_id, "status": a.status,
                                          "answered_at": a.answered_at, "ringing_at": a.ringing_at}
            if cs.advance(row["status"], step.to) is row["status"]:
                continue
            row["status"] = step.to
            if step.to is CallStatus.RINGING:
                row["ringing_at"] = row["ringing_at"] or step.at
            else:
                row["answered_at"] = row["answered_at"] or step.at
            rows[a.call_id] = row
            done[i] = True
            moved.append(step)
        if rows:
            by_call = {step.attempt.call_id: step.attempt for step in steps}
            now = self.clock()
            with self.engine.begin() as conn:
                sqlbatch.run_batch_update(conn, _calls, "id", ("status", "answered_at"), list(rows.values()),
                                         guard="live_attempt_id", extra=_live_guard,
                                         const={"updated_at": now})
                outbox.write(conn, [outbox.call_event(m.attempt.account_id, m.attempt.call_id, m.to,
                                                      m.attempt.attempt_no, now) for m in moved])
            for call_id, row in rows.items():
                a = by_call[call_id]
                a.status, a.ringing_at, a.answered_at = row["status"], row["ringing_at"], row["answered_at"]
        return done

    # -- the end of attempts ------------------------------------------------------------------------
    def finish(self, ends: Sequence[tuple[Attempt, HangupFacts]]) -> list[Finished]:
        """End attempts (each once) with their calls and money, in one transaction."""
        if not ends:
            return []
        try:
            return _retry(lambda: self._finish(ends), "finish")  # type: ignore[no-any-return]
        except _Repeated:
            # some attempt had ended already (a repeated event, or another path got there first):
            # one by one, so each of the others is still finished exactly once
            out: list[Finished] = []
            for end in ends:
                try:
                    out += _retry(lambda end=end: self._finish([end]), "finish")
                except _Repeated:
                    pass
            return out

    def _finish(self, ends: Sequence[tuple[Attempt, HangupFacts]]) -> list[Finished]:
        now = self.clock()
        with self.engine.begin() as conn:
            # locks in the order every writer takes them (campaign, then calls, then accounts), so a
            # cancel arriving meanwhile waits and is then seen: a cancelled call is never queued again
            campaign_status, cancelled = self._lock_for_end(conn, [a for a, _ in ends])
            settles = [self._settle(a, f, a.call_id in cancelled, campaign_status.get(a.campaign_id or ""), now)
                       for a, f in ends]
            attempt_rows = [{
                "id": s.attempt.attempt_id, "ended_at": s.facts.ended_at or now, "status": s.attempt_status,
                "hangup_cause": s.facts.cause[:64], "q850_cause": s.facts.q850, "sip_status": s.facts.sip_status,
                "billsec": s.billsec, "duration": s.facts.duration, "played_ms": s.facts.played_ms,
                "cost": s.charge,
                "answered_at": s.attempt.answered_at or (s.facts.answered_at if s.answered else None),
                "ringing_at": s.attempt.ringing_at} for s in settles]
            changed = sqlbatch.run_batch_update(conn, _attempts, "id", _FINISH_ATTEMPT_COLS, attempt_rows,
                                               extra=_not_ended)
            if changed != len(settles):
                raise _Repeated()
            call_rows = []
            for s in settles:
                ended_at = s.facts.ended_at or now
                call_rows.append({
                    "id": s.attempt.call_id, "live_attempt_id": s.attempt.attempt_id, "status": s.nxt.status,
                    "next_attempt_at": s.nxt.next_attempt_at, "last_cause": s.cause[:64],
                    "last_sip_status": s.facts.sip_status, "billsec": s.billsec, "cost": s.charge,
                    "answered_at": (s.attempt.answered_at or s.facts.answered_at or ended_at) if s.answered else None,
                    "ended_at": ended_at if s.nxt.final else None})
            sqlbatch.run_batch_update(conn, _calls, "id", _FINISH_CALL_COLS, call_rows, guard="live_attempt_id",
                                     extra=_finish_call_guard, const={"live_attempt_id": None, "updated_at": now},
                                     add=("billsec", "cost"))
            outbox.write(conn, [outbox.call_event(s.attempt.account_id, s.attempt.call_id, s.nxt.status,
                                                  s.attempt.attempt_no, now) for s in settles])
            books = Books(conn, [s.attempt.account_id for s in settles if s.attempt.hold > 0 and not s.unknown])
            for s in settles:
                a = s.attempt
                if a.hold <= 0 or s.unknown or a.account_id not in books.state:
                    continue  # nothing held; or the outcome is unknown: the hold waits for a settlement
                book_attempt(books, a, s.charge, now)
            books.flush()
        return [Finished(s.attempt.call_id, s.attempt.attempt_id, s.nxt.status, s.cause, s.charge,
                         s.nxt.next_attempt_at, s.answered) for s in settles]

    @staticmethod
    def _lock_for_end(conn: sa.Connection, attempts: Sequence[Attempt]) -> tuple[dict[str, Any], set[str]]:
        """Lock the campaigns, then the calls, of attempts about to end (the order every writer takes
        them); their campaigns' statuses and the calls whose customer asked to cancel."""
        c, camp = _calls.c, _campaigns.c
        camp_ids = sorted({a.campaign_id for a in attempts if a.campaign_id})
        status = {k: CampaignStatus(v) for k, v in conn.execute(
            sa.select(camp.id, camp.status).where(camp.id.in_(camp_ids)).order_by(camp.id).with_for_update()
        )} if camp_ids else {}
        cancel_asked = {r.id for r in conn.execute(
            sa.select(c.id, c.cancel_requested_at).where(c.id.in_(sorted({a.call_id for a in attempts})))
            .order_by(c.id).with_for_update()) if r.cancel_requested_at is not None}
        return status, cancel_asked

    def _settle(self, a: Attempt, f: HangupFacts, cancel_requested: bool, campaign_status: Any,
                now: datetime) -> _Settle:
        unknown = f.cause == cs.OUTCOME_UNKNOWN
        answered = not unknown and (f.answered or a.answered_at is not None or f.billsec > 0)
        started = f.message_started is not False  # unknown counts as started: never call twice
        outcome = cs.outcome_for(f.cause, answered=answered, message_started=started)
        billsec = f.billsec if answered else 0
        cost = call_cost(billsec, a.rate, a.pulse) if outcome is cs.COMPLETED else ZERO
        charge = min(cost, a.hold)
        cause = f.cause
        if answered and not started:
            cause = cs.MESSAGE_NOT_PLAYED
        cancelled_campaign = campaign_status is not None and CampaignStatus(campaign_status) is CampaignStatus.CANCELLED
        nxt = cs.after_attempt(outcome, attempts_made=a.attempt_no,
                               max_retries=0 if cancelled_campaign else a.max_retries,
                               retry_delay=timedelta(seconds=a.retry_delay), now=now,
                               cancel_requested=cancel_requested or a.cancel_requested)
        if a.window is not None and nxt.next_attempt_at is not None:
            # a campaign's retries are scheduled inside its calling window
            nxt = cs.Next(nxt.status, a.window.next_open(nxt.next_attempt_at))
        cs.check(Step.FINISH, a.status, nxt.status)
        return _Settle(a, f, answered, billsec, charge, cause, outcome.status, nxt, unknown)

    # -- reconciliation and ownership -----------------------------------------------------------------
    def adopt(self, dead: Iterable[str]) -> int:
        """Take over the open attempts of dialer processes of this node that are gone."""
        dead = list(dead)
        if not dead:
            return 0
        with self.engine.begin() as conn:
            a = _attempts.c
            n = conn.execute(sa.update(_attempts).where(a.owner.in_(dead), a.ended_at.is_(None), a.node == self.node)
                             .values(owner=self.owner)).rowcount
            conn.execute(sa.delete(_instances).where(_instances.c.id.in_(dead)))
        return int(n)

    def orphans(self, live: set[str]) -> list[str]:
        """Owners (other than the live ones) that still hold open attempts of this node."""
        a = _attempts.c
        with self.engine.connect() as conn:
            owners = set(conn.execute(sa.select(a.owner).distinct().where(
                a.node == self.node, a.ended_at.is_(None))).scalars())
        return sorted(o or "" for o in owners if o not in live)

    def owned_attempts(self, exclude: set[str] | None = None) -> list[Attempt]:
        """This process's open attempts as SQL has them (after a restart or an adoption)."""
        a, c, camp, acc = _attempts.c, _calls.c, _campaigns.c, _accounts.c
        led = _ledger.c
        hold = (sa.select(led.hold).where(led.attempt_id == a.id, led.kind == LedgerKind.RESERVE)
                .scalar_subquery())
        released = sa.exists().where(led.attempt_id == a.id, led.kind == LedgerKind.RELEASE)
        query = (
            sa.select(a.id, a.call_id, a.account_id, c.campaign_id, a.attempt_no, a.dialed_number, c.audio_id,
                      c.caller_id, c.max_retries, c.retry_delay_seconds, a.rate_per_minute, a.pulse_seconds,
                      acc.rate_per_minute.label("acc_rate"), acc.pulse_seconds.label("acc_pulse"), hold,
                      released, a.started_at, a.ringing_at, a.answered_at, c.status, c.cancel_requested_at,
                      camp.window_start, camp.window_end, camp.timezone)
            .select_from(_attempts.join(_calls, c.id == a.call_id).join(_accounts, acc.id == a.account_id)
                         .outerjoin(_campaigns, camp.id == c.campaign_id))
            .where(a.owner == self.owner, a.ended_at.is_(None))
        )
        out: list[Attempt] = []
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
            audio = self._audio_durations(conn, {r.audio_id for r in rows})
        for r in rows:
            if exclude and r.id in exclude:
                continue
            status = CallStatus(r.status)
            out.append(Attempt(
                attempt_id=r.id, call_id=r.call_id, account_id=r.account_id, campaign_id=r.campaign_id,
                attempt_no=r.attempt_no, phone_number=r.dialed_number, audio_id=r.audio_id,
                audio_ms=audio.get(r.audio_id, 0), caller_id=r.caller_id, max_retries=r.max_retries,
                retry_delay=r.retry_delay_seconds, rate=r.rate_per_minute or r.acc_rate,
                pulse=r.pulse_seconds or r.acc_pulse, hold=ZERO if (r[14] is None or r[15]) else r[14],
                started_at=r.started_at,
                window=Window.of(r.window_start, r.window_end, r.timezone) if r.campaign_id else None,
                status=status if status.is_live else CallStatus.DIALING, ringing_at=r.ringing_at,
                answered_at=r.answered_at or (None if status is not CallStatus.ANSWERED else r.started_at),
                cancel_requested=r.cancel_requested_at is not None))
        return out

    def cancel_requested(self, call_ids: Iterable[str]) -> set[str]:
        """Which of these live calls the customer asked to hang up."""
        ids = list(call_ids)
        if not ids:
            return set()
        c = _calls.c
        found: set[str] = set()
        with self.engine.connect() as conn:
            for chunk in sqlbatch.chunks(ids, 500):
                found.update(conn.execute(sa.select(c.id).where(
                    c.id.in_(chunk), c.status.in_(Step.REQUEST_CANCEL.sources),
                    c.cancel_requested_at.is_not(None))).scalars())
        return found

    def ended(self, attempt_ids: Iterable[str]) -> dict[str, str | None]:
        """For the attempts SQL knows (switch records found on disk): None while an attempt is
        open, else the cause it ended with (OUTCOME_UNKNOWN: its record can still settle it)."""
        ids = list(attempt_ids)
        out: dict[str, str | None] = {}
        a = _attempts.c
        with self.engine.connect() as conn:
            for chunk in sqlbatch.chunks(ids, 500):
                out.update({r.id: (r.hangup_cause or cs.CAUSE_UNKNOWN) if r.ended_at is not None else None
                            for r in conn.execute(sa.select(a.id, a.ended_at, a.hangup_cause).where(a.id.in_(chunk)))})
        return out

    # -- campaigns -------------------------------------------------------------------------------------
    def campaign_housekeeping(self) -> tuple[int, list[str]]:
        """Start SCHEDULED campaigns whose time has come; complete finished ones."""
        from core import campaigns

        now = self.clock()
        with self.engine.connect() as conn:  # each step commits
            return campaigns.start_due(conn, now), campaigns.complete_finished(conn, now)


class _Repeated(Exception):
    """A batch held an attempt that had already ended."""


def _queued_guard(table: sa.Table) -> list[Any]:
    return [sqlbatch.one_of(table.c.status, sorted(Step.CLAIM.sources))]


def _unclaim_guard(table: sa.Table) -> list[Any]:
    return [sqlbatch.one_of(table.c.status, sorted(Step.UNCLAIM.sources))]


def _finish_call_guard(table: sa.Table) -> list[Any]:
    return [sqlbatch.one_of(table.c.status, sorted(Step.FINISH.sources))]
