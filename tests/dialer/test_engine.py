"""``dialer.engine.Engine`` and ``dialer.store.Store`` in this process: dispatch, caps, the
billing of a hangup, cancel and retry scheduling, against real MariaDB and Redis and the
simulator over ESL (numbers ending in 1 answer and hang up after 3 s, 2 are busy, 3 ring until
the originate timeout, 6 hear the whole message)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import gevent
import pytest
import sqlalchemy as sa

from billing import ledger
from billing.rating import call_cost, reservation_for
from core.call_states import CallStatus
from core.models import Account as AccountRow
from core.models import Call, CallAttempt
from dialer.store import Attempt
from services.calls import cancel

from .conftest import Account, Rig, TenantStore, wait_until

pytestmark = pytest.mark.timeout(60)


def call_row(rig: Rig, call_id: str) -> Any:
    with rig.sessions() as session:
        return session.execute(sa.select(Call.__table__).where(Call.id == call_id)).one()


def attempts(rig: Rig, call_id: str) -> list[Any]:
    with rig.sessions() as session:
        return list(session.execute(sa.select(CallAttempt.__table__).where(CallAttempt.call_id == call_id)
                                    .order_by(CallAttempt.attempt_no)).all())


def final(rig: Rig, call_id: str, timeout: float = 15.0) -> Any:
    return wait_until(f"call {call_id} final", lambda: (
        lambda row: row if CallStatus(row.status).is_final else None)(call_row(rig, call_id)), timeout)


def books(rig: Rig, account: Account) -> tuple[Decimal, Decimal, ledger.BalanceView]:
    with rig.sessions() as session:
        row = session.execute(sa.select(AccountRow.balance, AccountRow.reserved)
                              .where(AccountRow.id == account.id)).one()
        return row.balance, row.reserved, ledger.ledger_totals(session, account.id)


def test_dispatch_dials_each_due_call_once_and_settles_it(rig: Rig) -> None:
    account = rig.account()
    calls = [(digit, rig.place(account, digit)) for digit in "1226"]
    ends = [(digit, CallStatus(final(rig, call_id).status)) for digit, call_id in calls]
    assert ends == [("1", CallStatus.COMPLETED), ("2", CallStatus.BUSY), ("2", CallStatus.BUSY),
                    ("6", CallStatus.COMPLETED)]
    for _, call_id in calls:
        rows = attempts(rig, call_id)
        assert len(rows) == 1, rows  # dialed once
        assert rows[0].owner == rig.engine.store.owner and rows[0].node == rig.engine.node
        assert rows[0].ended_at is not None
    busy = attempts(rig, calls[1][1])[0]
    assert busy.hangup_cause == "USER_BUSY" and busy.sip_status == 486 and busy.cost == 0
    assert not rig.engine.live  # nothing left in flight, no lease held
    assert rig.engine.counters.originates == 4 and rig.engine.counters.finished == 4


def test_a_hangup_is_billed_at_the_frozen_rate_and_the_reservation_released(rig: Rig) -> None:
    account = rig.account(balance="50", rate="2.40", pulse=30, message_seconds=20)
    reserved = reservation_for(account.audio_ms, account.rate, account.pulse)
    short, whole = rig.place(account, "1"), rig.place(account, "6")
    assert books(rig, account)[1] == 2 * reserved  # both reservations held while they wait
    short_end, whole_end = final(rig, short), final(rig, whole)
    assert CallStatus(short_end.status) is CallStatus.COMPLETED
    assert short_end.billsec == 3  # answered, hung up by the callee after 3 s
    assert short_end.cost == call_cost(3, Decimal("2.40"), 30) == Decimal("1.2000")
    assert whole_end.billsec >= 20  # heard the whole 20 s message
    assert whole_end.cost == call_cost(whole_end.billsec, Decimal("2.40"), 30)
    balance, held, totals = books(rig, account)
    assert held == 0  # nothing reserved once both ended
    assert balance == Decimal("50") - short_end.cost - whole_end.cost
    assert (totals.balance, totals.reserved) == (balance, held)  # the account row equals its ledger
    for call_id, end in ((short, short_end), (whole, whole_end)):
        (attempt,) = attempts(rig, call_id)
        assert attempt.cost == end.cost and attempt.billsec == end.billsec
        assert attempt.rate_per_minute == Decimal("2.40") and attempt.pulse_seconds == 30


def test_the_account_cap_holds_while_more_calls_are_due(rig: Rig) -> None:
    account = rig.account(max_concurrent=2, message_seconds=10)  # 1 s of real time per answered call
    call_ids = [rig.place(account, "6") for _ in range(5)]
    peak = [0]

    def watch() -> None:
        while True:
            live = sum(1 for lv in list(rig.engine.live.values()) if lv.a.account_id == account.id)
            peak[0] = max(peak[0], live)
            gevent.sleep(0.01)

    watcher = gevent.spawn(watch)
    try:
        ends = [final(rig, call_id, timeout=30) for call_id in call_ids]
    finally:
        watcher.kill()
    assert [CallStatus(e.status) for e in ends] == [CallStatus.COMPLETED] * 5
    assert peak[0] == 2  # the cap was reached, never passed: the others waited for a free slot
    assert all(len(attempts(rig, c)) == 1 for c in call_ids)  # waiting for the cap costs no attempt


def test_cancel_hangs_up_a_ringing_call_and_charges_nothing(rig: Rig) -> None:
    account = rig.account(balance="20")
    call_id = rig.place(account, "3")  # rings until the originate timeout (20 s, 2 s of real time)
    wait_until("the call rings", lambda: CallStatus(call_row(rig, call_id).status) is CallStatus.RINGING)
    with rig.sessions() as session:
        assert cancel(session, call_id)  # what the API does: marks the live call in SQL ...
    assert rig.engine.cancel(call_id)  # ... and what its job asks of the dialer that owns it
    end = final(rig, call_id)
    assert CallStatus(end.status) is CallStatus.CANCELLED
    assert end.cost == 0 and end.answered_at is None
    (attempt,) = attempts(rig, call_id)
    assert attempt.ended_at is not None and attempt.cost == 0
    assert rig.engine.counters.kills >= 1
    balance, held, totals = books(rig, account)
    assert (balance, held) == (Decimal("20"), Decimal("0"))
    assert (totals.balance, totals.reserved) == (balance, held)


def test_a_cancel_seen_only_in_sql_is_picked_up_by_the_engine(rig: Rig) -> None:
    account = rig.account()
    call_id = rig.place(account, "3")
    wait_until("the call rings", lambda: CallStatus(call_row(rig, call_id).status) is CallStatus.RINGING)
    with rig.sessions() as session:
        assert cancel(session, call_id)  # its job lost: the engine's own poll finds it
    assert CallStatus(final(rig, call_id).status) is CallStatus.CANCELLED


def test_a_busy_call_is_retried_after_its_delay_then_ends_busy(rig: Rig) -> None:
    account = rig.account()
    call_id = rig.place(account, "2", max_retries=1, retry_delay=1)
    first = wait_until("the first attempt ended", lambda: (
        lambda rows: rows[0] if rows and rows[0].ended_at is not None else None)(attempts(rig, call_id)))
    queued = call_row(rig, call_id)
    # the switch's times (ended_at) are simulated; the schedule is on the dialer's clock
    if CallStatus(queued.status) is CallStatus.QUEUED:  # not claimed again yet: its schedule is visible
        assert queued.attempts_count == 1 and queued.live_attempt_id is None
        assert queued.next_attempt_at - queued.updated_at == timedelta(seconds=1)
        due = queued.next_attempt_at
    else:
        due = first.started_at + timedelta(seconds=1)  # a lower bound of the schedule
    end = final(rig, call_id)
    assert CallStatus(end.status) is CallStatus.BUSY
    rows = attempts(rig, call_id)
    assert [r.attempt_no for r in rows] == [1, 2]
    assert rows[1].started_at >= due  # not before its delay
    assert end.attempts_count == 2 and end.next_attempt_at is None
    balance, held, totals = books(rig, account)
    assert (balance, held) == (Decimal("100"), Decimal("0"))
    assert (totals.balance, totals.reserved) == (balance, held)


class SlowOwnedAttempts(TenantStore):
    """The real store, whose read of this process's open attempts takes a while (as a query does
    on a busy server, when other greenlets run meanwhile)."""

    delay = 0.0

    def owned_attempts(self, exclude: set[str] | None = None) -> list[Attempt]:
        gevent.sleep(self.delay)
        return super().owned_attempts(exclude)


def test_adoption_never_takes_over_an_attempt_claimed_while_it_ran(make_rig: Any) -> None:
    rig = make_rig(store_class=SlowOwnedAttempts, gateway_cps=1.0)  # the second call waits 1 s for its slot
    account = rig.account(message_seconds=10)
    store = rig.engine.store
    assert isinstance(store, SlowOwnedAttempts)
    store.delay = 0.5
    adoption = gevent.spawn(rig.engine._adopt_if_connected)  # reads the attempts it knows now, then SQL
    call_ids = [rig.place(account, "6") for _ in range(2)]  # claimed and tracked while the read runs
    adoption.get(timeout=10)
    store.delay = 0.0
    ends = [final(rig, call_id, timeout=20) for call_id in call_ids]
    assert [(CallStatus(e.status), e.last_cause) for e in ends] == [(CallStatus.COMPLETED, "NORMAL_CLEARING")] * 2
    assert rig.engine.counters.originates == 2 and rig.engine.counters.unknown == 0
