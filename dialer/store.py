"""Where a call's state changes: every dialer write to SQL, one transaction each.

* ``due_calls`` finds what to dial (indexed on status, next_attempt_at);
* ``claim`` moves a call QUEUED -> DIALING with a conditional UPDATE, creates the
  attempt (its id is the FreeSWITCH ``origination_uuid``) and reserves its worst-case
  cost, all in one transaction, before any originate is sent;
* ``mark_ringing`` / ``mark_answered`` advance live states (never backwards);
* ``finish`` finalises an attempt once (``WHERE ended_at IS NULL``), settles its
  money and decides retry or final state with the pure lifecycle rules.

Every function is safe to run twice with the same input.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from billing import ledger
from billing.rating import call_cost, reservation_for
from core import campaigns
from core.calls import end_queued
from core.db import utcnow
from core.models import Account, AudioFile, Call, CallAttempt, Campaign, DncNumber, new_id
from core.states import CallStatus, CampaignStatus
from core.window import Window
from dialer import lifecycle

log = logging.getLogger("zenscall.dialer")

LIVE = [s.value for s in CallStatus if s.is_live]


@dataclass(frozen=True)
class DueCall:
    call_id: str
    account_id: str
    campaign_id: str | None
    phone_number: str
    caller_id: str | None
    audio_id: str
    audio_ms: int
    account_limit: int
    campaign_limit: int | None
    do_not_call: bool = False
    # as read by ``due_calls`` (None: ``claim`` reads them itself)
    attempts_count: int | None = None
    next_attempt_id: str | None = None
    rate_per_minute: Decimal | None = None
    pulse_seconds: int | None = None


@dataclass(frozen=True)
class Claimed:
    attempt_id: str
    attempt_no: int
    call: DueCall


@dataclass(frozen=True)
class Finished:
    """What ``finish`` did, for logs, leases and counters."""

    call_id: str
    attempt_id: str
    status: CallStatus  # the call's new status (QUEUED when a retry is scheduled)
    cause: str | None
    charged: Decimal
    next_attempt_at: datetime | None


@dataclass(frozen=True)
class HangupFacts:
    """What is known about an attempt's end (from an ESL event or from reconciliation)."""

    cause: str
    q850: int | None = None
    sip_status: int | None = None
    answered: bool = False
    answered_at: datetime | None = None
    ended_at: datetime | None = None
    billsec: int = 0
    duration: int = 0
    played_ms: int | None = None


@dataclass(frozen=True)
class Advance:
    """A live-state step of an attempt (RINGING or ANSWERED at ``at``); ``call_id`` when known."""

    attempt_id: str
    to: CallStatus
    at: datetime
    call_id: str | None = None


@dataclass(frozen=True)
class LiveAttempt:
    attempt_id: str
    call_id: str
    account_id: str
    campaign_id: str | None
    phone_number: str
    status: CallStatus
    answered_at: datetime | None
    started_at: datetime
    cancel_requested: bool
    audio_ms: int


def _finish_read() -> sa.Select[Any]:
    """What ``finish`` reads, in one statement: the attempt, its call, account, campaign and
    ledger entries. Built once (a bound parameter for the attempt id), so SQLAlchemy
    neither rebuilds it nor recomputes its cache key per hangup."""
    a, c, acc, camp = CallAttempt.__table__.c, Call.__table__.c, Account.__table__.c, Campaign.__table__.c
    return (
        sa.select(a.call_id, a.account_id, a.attempt_no, a.answered_at, a.ended_at,
                  c.max_retries, c.retry_delay_seconds, c.cancel_requested_at, c.billsec, c.cost,
                  c.campaign_id, acc.rate_per_minute, acc.pulse_seconds,
                  camp.status, camp.window_start, camp.window_end, camp.timezone,
                  *ledger.held_columns(a.id))
        .select_from(CallAttempt.__table__
                     .join(Call.__table__, c.id == a.call_id)
                     .join(Account.__table__, acc.id == a.account_id)
                     .outerjoin(Campaign.__table__, camp.id == c.campaign_id))
        .where(a.id == sa.bindparam("attempt_id"))
    )


_FINISH_READ = _finish_read()


def _claim_statements() -> tuple[sa.Update, sa.Insert]:
    """``claim``'s conditional UPDATE of the call and the attempt INSERT, built once with
    bound parameters."""
    c = Call.__table__.c
    update = (
        sa.update(Call.__table__)
        .where(c.id == sa.bindparam("b_call_id"), c.status == CallStatus.QUEUED,
               c.attempts_count == sa.bindparam("b_attempts_count"), c.cancel_requested_at.is_(None))
        .values(status=CallStatus.DIALING, attempts_count=sa.bindparam("b_attempt_no"),
                live_attempt_id=sa.bindparam("b_attempt_id"), next_attempt_id=None, next_attempt_at=None,
                updated_at=sa.bindparam("b_now", type_=c.updated_at.type))
    )
    return update, sa.insert(CallAttempt.__table__)


_CLAIM, _INSERT_ATTEMPT = _claim_statements()


def _finish_statements() -> tuple[sa.Update, dict[tuple[bool, bool], sa.Update]]:
    """``finish``'s UPDATE of the attempt (once: ``WHERE ended_at IS NULL``) and of its call
    (one per (answered, final): which of answered_at / ended_at it sets), built once."""
    a, c = CallAttempt.__table__.c, Call.__table__.c
    attempt = (
        sa.update(CallAttempt.__table__)
        .where(a.id == sa.bindparam("b_attempt_id"), a.ended_at.is_(None))
        .values({name: sa.bindparam(f"b_{name}", type_=a[name].type)
                 for name in ("ended_at", "hangup_cause", "q850_cause", "sip_status", "billsec", "duration",
                              "played_ms", "cost", "answered_at", "status")})
    )
    calls: dict[tuple[bool, bool], sa.Update] = {}
    for answered in (False, True):
        for final in (False, True):
            names = ["status", "live_attempt_id", "next_attempt_at", "last_cause", "last_sip_status", "billsec",
                     "cost", "updated_at"]
            names += ["answered_at"] if answered else []
            names += ["ended_at"] if final else []
            calls[answered, final] = (
                sa.update(Call.__table__)
                .where(c.id == sa.bindparam("b_call_id"), c.live_attempt_id == sa.bindparam("b_attempt_id"))
                .values({name: sa.bindparam(f"b_{name}", type_=c[name].type) for name in names})
            )
    return attempt, calls


_FINISH_ATTEMPT, _FINISH_CALL = _finish_statements()


def _advance_statements(to: CallStatus, field: str) -> tuple[sa.Update, sa.Update]:
    """``Store._advance_on``'s two UPDATEs towards ``to``, built once with bound parameters.

    The attempt: its status moves to ``to`` only from an earlier live state (never
    backwards, as ``lifecycle.advance``), its timestamp is set if still missing; it matches
    only when one of the two changes something, so a repeated event changes nothing. The
    call follows the attempt (both are always written in the same transactions)."""
    a, c = CallAttempt.__table__.c, Call.__table__.c
    earlier = [s for s in lifecycle.LIVE_ORDER if lifecycle.LIVE_ORDER[s] < lifecycle.LIVE_ORDER[to]]
    target = sa.bindparam("to", type_=a.status.type)
    at = sa.bindparam("at", type_=a[field].type)
    attempt_update = (
        sa.update(CallAttempt.__table__)
        .where(a.id == sa.bindparam("attempt_id"), a.ended_at.is_(None),
               sa.or_(a.status.in_(earlier), a[field].is_(None)))
        .values({"status": sa.case((a.status.in_(earlier), target), else_=a.status),
                 field: sa.func.coalesce(a[field], at)})
    )
    values: dict[str, Any] = {"status": sa.case((c.status.in_(earlier), target), else_=c.status),
                              "updated_at": sa.bindparam("now", type_=c.updated_at.type)}
    if to is CallStatus.ANSWERED:
        values["answered_at"] = sa.bindparam("at", type_=c.answered_at.type)
    call_update = (
        sa.update(Call.__table__)
        .where(c.id == sa.bindparam("call_id"), c.live_attempt_id == sa.bindparam("attempt_id"),
               c.status.in_(LIVE))
        .values(values)
    )
    return attempt_update, call_update


_ADVANCE = {CallStatus.RINGING: _advance_statements(CallStatus.RINGING, "ringing_at"),
            CallStatus.ANSWERED: _advance_statements(CallStatus.ANSWERED, "answered_at")}
_ATTEMPT_CALL = (sa.select(CallAttempt.__table__.c.call_id)
                 .where(CallAttempt.__table__.c.id == sa.bindparam("attempt_id")))


class Store:
    def __init__(self, sessions: sessionmaker[Session], node: str,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.sessions = sessions
        # ``finish`` and the live-state steps load no ORM objects: they run on a plain
        # connection of the sessions' engine, without a session around it
        self.engine: sa.Engine = sessions.kw["bind"]
        self.node = node
        self.clock = clock  # frozen in tests of calling windows

    # -- what to dial ------------------------------------------------------------------
    def due_calls(self, limit: int, now: datetime | None = None) -> list[DueCall]:
        """Calls to dial now: single calls, then each RUNNING campaign inside its calling
        window. One indexed range query per source over ``calls`` alone, read in the order of
        (campaign_id, status, next_attempt_at) and stopped after LIMIT rows, so the cost stays
        flat however many calls are pending; accounts and audio are read once per sweep."""
        now = now or self.clock()
        listed = sa.exists().where(DncNumber.account_id == Call.account_id,
                                   DncNumber.phone_number == Call.phone_number)
        base = (
            sa.select(Call.id, Call.account_id, Call.campaign_id, Call.phone_number, Call.caller_id,
                      Call.audio_id, Call.attempts_count, Call.next_attempt_id, listed)
            .where(Call.status == CallStatus.QUEUED, Call.next_attempt_at <= now,
                   Call.cancel_requested_at.is_(None))
            .order_by(Call.next_attempt_at, Call.id)
            # the planner may prefer ix_calls_due (status, next_attempt_at) and walk every source's
            # queued calls; this index is an exact range per source, already in ORDER BY order
            .with_hint(Call, "FORCE INDEX (ix_calls_campaign_due)", dialect_name="mysql")
        )
        picked: list[tuple[Any, int | None]] = []
        with self.sessions() as session:
            picked += [(row, None) for row in session.execute(base.where(Call.campaign_id.is_(None)).limit(limit))]
            campaigns = session.execute(
                sa.select(Campaign.id, Campaign.concurrent_limit, Campaign.window_start, Campaign.window_end,
                          Campaign.timezone)
                .where(Campaign.status == CampaignStatus.RUNNING)
                .order_by(Campaign.created_at)
            ).all()
            for campaign_id, concurrent, start, end, tz in campaigns:
                if Window.of(start, end, tz).contains(now):
                    query = base.where(Call.campaign_id == campaign_id).limit(min(limit, concurrent * 2))
                    picked += [(row, concurrent) for row in session.execute(query)]
            if not picked:
                return []
            accounts = {row[0]: row[1:] for row in session.execute(
                sa.select(Account.id, Account.max_concurrent_calls, Account.rate_per_minute, Account.pulse_seconds)
                .where(Account.id.in_({r.account_id for r, _ in picked}), Account.active.is_(True)))}
            audio_ms = dict(session.execute(
                sa.select(AudioFile.id, AudioFile.duration_ms).where(AudioFile.id.in_({r.audio_id for r, _ in picked}))
            ).all())
        due: list[DueCall] = []
        for r, concurrent in picked:
            account = accounts.get(r.account_id)
            if account is None or r.audio_id not in audio_ms:
                continue  # a disabled account's calls wait
            max_calls, rate, pulse = account
            due.append(DueCall(r.id, r.account_id, r.campaign_id, r.phone_number, r.caller_id, r.audio_id,
                               audio_ms[r.audio_id], max_calls, concurrent, bool(r[8]), r.attempts_count,
                               r.next_attempt_id, rate, pulse))
        return due

    # -- claiming an attempt -----------------------------------------------------------
    def claim(self, due: DueCall) -> Claimed | None:
        """QUEUED -> DIALING plus the attempt row and its reservation; None if another
        dialer claimed it first, or the call is no longer due. Raises
        ``ledger.InsufficientBalance`` (nothing written) when the attempt cannot be paid.

        Plain SQL on the session's connection: the conditional UPDATE of the call (on the
        attempt count ``due_calls`` read), the attempt row with its reservation amount, and
        the ledger's hold."""
        now = utcnow()
        calls = Call.__table__
        with self.sessions() as session:
            conn = session.connection()
            if due.attempts_count is None or due.rate_per_minute is None or due.pulse_seconds is None:
                row = conn.execute(
                    sa.select(calls.c.next_attempt_id, calls.c.attempts_count, Account.rate_per_minute,
                              Account.pulse_seconds)
                    .join(Account.__table__, Account.id == calls.c.account_id).where(calls.c.id == due.call_id)
                ).one_or_none()
                if row is None:
                    return None
                next_attempt_id, attempts_count, rate, pulse = row
            else:
                next_attempt_id, attempts_count = due.next_attempt_id, due.attempts_count
                rate, pulse = due.rate_per_minute, due.pulse_seconds
            attempt_id = next_attempt_id or new_id()
            attempt_no = attempts_count + 1
            claimed = conn.execute(_CLAIM, {
                "b_call_id": due.call_id, "b_attempts_count": attempts_count, "b_attempt_no": attempt_no,
                "b_attempt_id": attempt_id, "b_now": now}).rowcount
            if claimed != 1:
                session.rollback()
                return None
            amount = reservation_for(due.audio_ms, rate, pulse)
            # the account row is locked (by the reservation's UPDATE) before the attempt row
            # is inserted: the insert's foreign-key check would otherwise share-lock it first,
            # and two claims upgrading their shared locks deadlock
            try:
                if next_attempt_id is None:
                    ledger.reserve_new(session, due.account_id, amount, call_id=due.call_id, attempt_id=attempt_id)
                else:  # reserved when the call was placed (or by an earlier try of this claim)
                    ledger.reserve(session, due.account_id, amount, call_id=due.call_id, attempt_id=attempt_id)
            except ledger.InsufficientBalance:
                session.rollback()
                raise
            conn.execute(_INSERT_ATTEMPT, {
                "id": attempt_id, "call_id": due.call_id, "account_id": due.account_id, "attempt_no": attempt_no,
                "node": self.node, "status": CallStatus.DIALING, "dialed_number": due.phone_number,
                "started_at": now, "reserved_amount": amount})
            session.commit()
        return Claimed(attempt_id=attempt_id, attempt_no=attempt_no, call=due)

    def skip_do_not_call(self, call_id: str) -> bool:
        """A number put on the do-not-call list after the call was queued is never dialed."""
        return self._end_unqueued(call_id, CallStatus.CANCELLED, lifecycle.DO_NOT_CALL)

    def pause_unpaid_campaign(self, campaign_id: str) -> bool:
        """A campaign whose next attempt cannot be paid pauses until resumed after a top-up."""
        with self.sessions() as session:
            return campaigns.pause(session, campaign_id, reason=campaigns.INSUFFICIENT_BALANCE)

    def campaign_housekeeping(self) -> tuple[int, list[str]]:
        """Start SCHEDULED campaigns whose time has come; complete finished ones."""
        with self.sessions() as session:
            return campaigns.start_due(session, self.clock()), campaigns.complete_finished(session, self.clock())

    def recover_stalled_imports(self, queue: Any, stall_seconds: int) -> list[str]:
        """Enqueue again the CSV imports whose worker died (see ``campaigns.importer``)."""
        from campaigns.importer import recover_stalled_imports

        with self.sessions() as session:
            return recover_stalled_imports(session.connection(), queue, stall_seconds)

    def fail_unpaid(self, call_id: str) -> bool:
        """A single call whose next attempt cannot be paid ends FAILED (INSUFFICIENT_BALANCE)."""
        return self._end_unqueued(call_id, CallStatus.FAILED, lifecycle.INSUFFICIENT_BALANCE)

    def _end_unqueued(self, call_id: str, status: CallStatus, cause: str) -> bool:
        """End a QUEUED call without dialing it (its reservation, if any, is released)."""
        with self.sessions() as session:
            return end_queued(session, call_id, status, cause, now=self.clock())

    # -- live states ---------------------------------------------------------------------
    @staticmethod
    def _advance_on(conn: sa.Connection, step: Advance) -> bool:
        """Two conditional UPDATEs, no read: the attempt moves forward (or gets its missing
        timestamp) while it has not ended; then its call, while the attempt is still the
        call's live one. Late or repeated events match nothing and write nothing."""
        attempt_update, call_update = _ADVANCE[step.to]
        call_id = step.call_id
        if call_id is None:  # not known to this process (e.g. before reconciliation)
            call_id = conn.execute(_ATTEMPT_CALL, {"attempt_id": step.attempt_id}).scalar()
            if call_id is None:
                return False
        params = {"attempt_id": step.attempt_id, "to": step.to, "at": step.at}
        if conn.execute(attempt_update, params).rowcount != 1:
            return False
        conn.execute(call_update, {**params, "call_id": call_id, "now": utcnow()})
        return True

    def advance_many(self, steps: list[Advance]) -> list[bool]:
        """Apply live-state steps in order, in one transaction; for each, whether it changed
        anything. Every step is idempotent, so the whole batch can be applied again."""
        with self.engine.connect() as conn:
            done = [self._advance_on(conn, step) for step in steps]
            if any(done):
                conn.commit()
            else:
                conn.rollback()
            return done

    def mark_ringing(self, attempt_id: str, at: datetime, call_id: str | None = None) -> bool:
        return self.advance_many([Advance(attempt_id, CallStatus.RINGING, at, call_id)])[0]

    def mark_answered(self, attempt_id: str, at: datetime, call_id: str | None = None) -> bool:
        return self.advance_many([Advance(attempt_id, CallStatus.ANSWERED, at, call_id)])[0]

    # -- the end of an attempt --------------------------------------------------------------
    def finish(self, attempt_id: str, facts: HangupFacts) -> Finished | None:
        """Finalise an attempt once; None when it is unknown or already final.

        One SELECT reads the attempt, its call, account, campaign and ledger entries; the
        conditional UPDATE of the attempt (``WHERE ended_at IS NULL``) makes it happen once;
        then the settlement and the call's new state."""
        now = self.clock()
        with self.engine.connect() as conn:
            row = conn.execute(_FINISH_READ, {"attempt_id": attempt_id}).one_or_none()
            if row is None or row.ended_at is not None:
                return None
            (call_id, account_id, attempt_no, attempt_answered_at, _, max_retries, retry_delay, cancel_requested_at,
             call_billsec, call_cost_so_far, campaign_id, rate, pulse, campaign_status, window_start, window_end,
             timezone, reserve_hold, release_id, charge_amount) = row
            held = ledger.held_of(reserve_hold, release_id, charge_amount)
            answered = facts.answered or attempt_answered_at is not None or facts.billsec > 0
            billsec = facts.billsec if answered else 0
            cost = call_cost(billsec, rate, pulse) if answered else Decimal("0")
            charged = (ledger.ZERO if held.hold is None else held.charged if held.released
                       else min(cost, held.hold))
            ended_at = facts.ended_at or now
            done = conn.execute(_FINISH_ATTEMPT, {
                "b_attempt_id": attempt_id, "b_ended_at": ended_at, "b_hangup_cause": facts.cause,
                "b_q850_cause": facts.q850, "b_sip_status": facts.sip_status, "b_billsec": billsec,
                "b_duration": facts.duration, "b_played_ms": facts.played_ms, "b_cost": charged,
                "b_answered_at": attempt_answered_at or (facts.answered_at if answered else None),
                "b_status": CallStatus.COMPLETED if answered else
                lifecycle.outcome_for(facts.cause, answered=False).status}).rowcount
            if done != 1:
                conn.rollback()
                return None
            charged = ledger.settle_held(conn, held, cost, account_id=account_id, call_id=call_id,
                                         attempt_id=attempt_id)
            outcome = lifecycle.outcome_for(facts.cause, answered=answered)
            campaign_status = CampaignStatus(campaign_status) if campaign_status is not None else None
            nxt = lifecycle.after_attempt(
                outcome, attempts_made=attempt_no,
                # a cancelled campaign retries nothing
                max_retries=0 if campaign_status is CampaignStatus.CANCELLED else max_retries,
                retry_delay=timedelta(seconds=retry_delay), now=now,
                cancel_requested=cancel_requested_at is not None,
            )
            if campaign_id is not None and nxt.next_attempt_at is not None:
                # retries of a campaign are scheduled inside its calling window
                window = Window.of(window_start, window_end, timezone)
                nxt = lifecycle.Next(nxt.status, window.next_open(nxt.next_attempt_at))
            values: dict[str, object] = {
                "b_call_id": call_id, "b_attempt_id": attempt_id,
                "b_status": nxt.status, "b_live_attempt_id": None, "b_next_attempt_at": nxt.next_attempt_at,
                "b_last_cause": facts.cause,
                "b_last_sip_status": facts.sip_status, "b_billsec": call_billsec + billsec,
                "b_cost": call_cost_so_far + charged, "b_updated_at": now,
            }
            if answered:
                values["b_answered_at"] = attempt_answered_at or facts.answered_at or ended_at
            if nxt.final:
                values["b_ended_at"] = ended_at
            conn.execute(_FINISH_CALL[answered, nxt.final], values)
            conn.commit()
            return Finished(call_id=call_id, attempt_id=attempt_id, status=nxt.status, cause=facts.cause,
                            charged=charged, next_attempt_at=nxt.next_attempt_at)

    # -- reconciliation ----------------------------------------------------------------------
    def open_attempts(self) -> list[LiveAttempt]:
        """Every attempt of this node that has not ended (after a restart or reconnect)."""
        query = (
            sa.select(CallAttempt.id, CallAttempt.call_id, CallAttempt.account_id, Call.campaign_id,
                      CallAttempt.dialed_number, CallAttempt.status, CallAttempt.answered_at,
                      CallAttempt.started_at, Call.cancel_requested_at.is_not(None), AudioFile.duration_ms)
            .join(Call, Call.id == CallAttempt.call_id)
            .join(AudioFile, AudioFile.id == Call.audio_id)
            .where(CallAttempt.node == self.node, CallAttempt.ended_at.is_(None))
        )
        with self.sessions() as session:
            return [LiveAttempt(*row) for row in session.execute(query)]

    def cancel_requested_live(self) -> list[str]:
        """Attempt ids of live calls whose user asked for a hang-up."""
        with self.sessions() as session:
            return list(session.execute(
                sa.select(Call.live_attempt_id).join(CallAttempt, CallAttempt.id == Call.live_attempt_id)
                .where(Call.cancel_requested_at.is_not(None), Call.status.in_(LIVE),
                       CallAttempt.node == self.node)
            ).scalars())

    def live_attempt_of(self, call_id: str) -> str | None:
        with self.sessions() as session:
            return session.execute(
                sa.select(Call.live_attempt_id).where(Call.id == call_id, Call.status.in_(LIVE))
            ).scalar_one_or_none()
