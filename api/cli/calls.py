"""``flask --app wsgi calls unsettled|settle``: attempts nobody saw end.

When the dialer was blind (down, or cut off from FreeSWITCH) and the switch's own record of an
attempt never came, the attempt ends OUTCOME_UNKNOWN: its call is FAILED and never dialed again
(the callee may have heard the message), and the reservation stays held. An operator looks at the
switch (its CDRs, the carrier's records) and settles it: answered for N seconds (charged at the
attempt's frozen rate; the call becomes COMPLETED) or not answered (the hold is released).
A record of the switch that turns up later settles it the same way by itself.
"""

from __future__ import annotations

import click
import sqlalchemy as sa
from flask import Flask
from flask.cli import AppGroup

from api.cli.common import fail, out, services
from billing import settlement
from billing.rating import money_str
from core import call_states as cs
from core.call_states import HangupFacts
from core.db import utcnow
from core.models import CallAttempt, LedgerEntry
from core.states import LedgerKind


def group(app: Flask) -> AppGroup:
    calls_cli = AppGroup("calls", help="Calls and attempts an operator must settle.")

    @calls_cli.command("unsettled")
    @click.option("--account", "account_id", default=None, help="only this account's attempts")
    def calls_unsettled(account_id: str | None) -> None:
        """Every attempt that ended OUTCOME_UNKNOWN and still holds its reservation (one JSON line each)."""
        a, le = CallAttempt.__table__.c, LedgerEntry.__table__.c
        released = sa.exists().where(le.attempt_id == a.id, le.kind == LedgerKind.RELEASE)
        query = (sa.select(a.id, a.call_id, a.account_id, a.dialed_number, a.node, a.owner, a.started_at,
                           a.ended_at, a.reserved_amount, a.rate_per_minute, a.pulse_seconds)
                 .where(a.hangup_cause == cs.OUTCOME_UNKNOWN, ~released).order_by(a.started_at))
        if account_id:
            query = query.where(a.account_id == account_id)
        with services(app).engine.connect() as conn:
            for r in conn.execute(query):
                out({"attempt_id": r.id, "call_id": r.call_id, "account_id": r.account_id, "number": r.dialed_number,
                     "node": r.node, "owner": r.owner, "started_at": r.started_at, "ended_at": r.ended_at,
                     "held": money_str(r.reserved_amount),
                     "rate_per_minute": money_str(r.rate_per_minute) if r.rate_per_minute is not None else None,
                     "pulse_seconds": r.pulse_seconds})

    @calls_cli.command("settle")
    @click.argument("attempt_id")
    @click.option("--answered/--not-answered", required=True, help="what the switch's records say")
    @click.option("--billsec", type=click.IntRange(min=0), default=0, help="answered seconds (with --answered)")
    @click.option("--cause", default=None, help="the hangup cause, e.g. NORMAL_CLEARING or USER_BUSY")
    def calls_settle(attempt_id: str, answered: bool, billsec: int, cause: str | None) -> None:
        """Settle an OUTCOME_UNKNOWN attempt: charged at its frozen rate when answered, released when not."""
        if answered and billsec <= 0:
            fail("an answered attempt needs --billsec > 0", "INVALID_SETTLEMENT")
        if not answered and billsec:
            fail("--billsec is for answered attempts", "INVALID_SETTLEMENT")
        engine = services(app).engine
        attempt = settlement.unknown_attempt(engine, attempt_id)
        if attempt is None:
            fail(f"no unsettled attempt {attempt_id} (unknown, or settled already)", "NOT_FOUND")
        now = utcnow()
        facts = HangupFacts(cause=(cause or ("NORMAL_CLEARING" if answered else "NO_ANSWER")).upper(),
                            answered=answered, answered_at=now if answered else None, billsec=billsec,
                            duration=billsec, message_started=True if answered else None)
        done = settlement.settle_unknown(engine, attempt, facts)
        if done is None:
            fail(f"attempt {attempt_id} was settled meanwhile", "CONFLICT")
        out({"attempt_id": attempt_id, "call_id": done.call_id, "status": done.status.value,
             "charged": money_str(done.charged), "cause": done.cause})

    return calls_cli
