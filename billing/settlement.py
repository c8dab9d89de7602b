"""Settling an attempt's money: the release of its hold and the charge of what it cost.

``book_attempt`` is the one place an ended attempt's hold is released and its cost charged (never
more than the hold), for the dialer's batches and for the settlement of an attempt whose outcome
was unknown. ``settle_unknown`` settles such an attempt once its outcome is known (the switch's
late record, or an operator): the money at the rate frozen on the attempt, the call COMPLETED when
the message was heard or left FAILED with the real cause; never dialed again. When that changes
what the call shows (its status, its cause, its money), a ``call.completed`` / ``call.failed``
event is written in the same transaction (``core.outbox``: the attempt's settled sequence).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

import sqlalchemy as sa

from billing.books import Books
from billing.rating import call_cost
from core import call_states as cs
from core import outbox
from core.call_states import CallStatus, HangupFacts, Step
from core.db import utcnow
from core.models import Call, CallAttempt, LedgerEntry
from core.states import LedgerKind

ZERO = Decimal("0")
_calls, _attempts, _ledger = Call.__table__, CallAttempt.__table__, LedgerEntry.__table__


class Held(Protocol):
    attempt_id: str
    call_id: str
    account_id: str
    hold: Decimal


def book_attempt(books: Books, a: Held, charge: Decimal, now: datetime) -> None:
    """Release an attempt's hold and charge what it cost (never more than the hold)."""
    if not books.move(a.account_id, LedgerKind.RELEASE, hold=-a.hold, call_id=a.call_id,
                      attempt_id=a.attempt_id, description="reservation released at hangup", now=now):
        raise RuntimeError(f"release of attempt {a.attempt_id} refused")
    if charge > 0 and not books.move(a.account_id, LedgerKind.CHARGE, amount=-charge, call_id=a.call_id,
                                     attempt_id=a.attempt_id, description="answered call", now=now):
        raise RuntimeError(f"charge of attempt {a.attempt_id} refused")


@dataclass(frozen=True)
class UnknownAttempt:
    """An attempt that ended OUTCOME_UNKNOWN and still holds its reservation."""

    attempt_id: str
    call_id: str
    account_id: str
    rate: Decimal
    pulse: int
    hold: Decimal


@dataclass(frozen=True)
class Settled:
    call_id: str
    attempt_id: str
    status: CallStatus
    cause: str
    charged: Decimal
    answered: bool


def unknown_attempt(engine: sa.Engine, attempt_id: str) -> UnknownAttempt | None:
    a, led = _attempts.c, _ledger.c
    released = sa.exists().where(led.attempt_id == a.id, led.kind == LedgerKind.RELEASE)
    with engine.connect() as conn:
        r = conn.execute(
            sa.select(a.id, a.call_id, a.account_id, a.rate_per_minute, a.pulse_seconds, a.reserved_amount)
            .where(a.id == attempt_id, a.hangup_cause == cs.OUTCOME_UNKNOWN, ~released)
        ).one_or_none()
    return None if r is None else UnknownAttempt(*r)


def settle_unknown(engine: sa.Engine, attempt: UnknownAttempt, facts: HangupFacts,
                   now: datetime | None = None) -> Settled | None:
    """Settle it once (None when it was settled meanwhile)."""
    now = now or utcnow()
    answered = facts.answered or facts.billsec > 0
    started = facts.message_started is not False
    delivered = answered and started
    billsec = facts.billsec if answered else 0
    charge = min(call_cost(billsec, attempt.rate, attempt.pulse), attempt.hold) if delivered else ZERO
    status = cs.check(Step.SETTLE_UNKNOWN, CallStatus.FAILED, CallStatus.COMPLETED if delivered else CallStatus.FAILED)
    cause = cs.MESSAGE_NOT_PLAYED if answered and not started else facts.cause
    a, c = _attempts.c, _calls.c
    with engine.begin() as conn:
        done = conn.execute(sa.update(_attempts).where(a.id == attempt.attempt_id, a.hangup_cause == cs.OUTCOME_UNKNOWN)
                            .values(hangup_cause=facts.cause[:64], q850_cause=facts.q850, sip_status=facts.sip_status,
                                    billsec=billsec, duration=facts.duration, played_ms=facts.played_ms, cost=charge,
                                    status=cs.outcome_for(facts.cause, answered=answered,
                                                          message_started=started).status,
                                    answered_at=facts.answered_at if answered else None,
                                    ended_at=facts.ended_at or a.ended_at)).rowcount
        if done != 1:
            return None
        before = conn.execute(sa.select(c.status, c.last_cause, a.attempt_no).join_from(
            _calls, _attempts, a.call_id == c.id).where(a.id == attempt.attempt_id)).one()
        values: dict[str, Any] = {"status": status, "last_cause": cause[:64], "last_sip_status": facts.sip_status,
                                  "billsec": c.billsec + billsec, "cost": c.cost + charge, "updated_at": now}
        if answered:
            values["answered_at"] = facts.answered_at
        shown = conn.execute(sa.update(_calls).where(c.id == attempt.call_id, c.status.in_(
            Step.SETTLE_UNKNOWN.sources)).values(values)).rowcount
        if shown and (before.status != status.value or before.last_cause != cause[:64] or charge or billsec):
            outbox.write(conn, [outbox.call_event(attempt.account_id, attempt.call_id, status, before.attempt_no,
                                                  now, settled=True)])
        books = Books(conn, [attempt.account_id])
        if attempt.hold > 0 and attempt.account_id in books.state:
            book_attempt(books, attempt, charge, now)
        books.flush()
    return Settled(attempt.call_id, attempt.attempt_id, status, cause, charge, answered)
