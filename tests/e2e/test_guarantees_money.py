"""Money: a message that never played is not charged (and is tried again), the rate is frozen when
the attempt's money is reserved, and the operator cannot set a rate or pulse that would make a
charge zero or negative."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from billing.rating import call_cost
from core.states import LedgerKind
from tests.e2e.conftest import Stack, sim_rows_of


def test_answered_call_whose_message_never_played_is_not_charged_and_is_retried(
        stack: Stack, make_tenant: Any, upload: Any) -> None:
    """The message's file is missing on the switch: the callee answers, nothing plays, our leg
    hangs up. The attempt is not COMPLETED and costs nothing; the call is dialed again while it has
    retries left, then ends FAILED with MESSAGE_NOT_PLAYED.

    Old code: "answered" alone made the call COMPLETED and charged the answered seconds; the
    callee never heard the message and the call was never tried again."""
    sim = stack.simulator()
    tenant = stack.tenant(make_tenant)
    audio = upload(tenant, seconds=10)
    (stack.settings.audio_dir / f"{audio}.wav").unlink()
    placed = stack.place(tenant, audio, "6", max_retries=1)
    stack.set_call(placed.call_id, retry_delay_seconds=0)
    stack.dialer(sim)
    call = stack.wait_status(placed.call_id, "FAILED", timeout=30)

    channels = sim_rows_of(sim.logged_calls(), placed.call_id)
    attempts = stack.attempts(placed.call_id)
    assert len(channels) == len(attempts) == call.attempts_count == 2  # retried once, then no more
    assert all(row["answered"] for row in channels)  # the callee answered both times
    assert [a.id for a in attempts] == [row["uuid"] for row in channels]
    for attempt in attempts:
        assert attempt.answered_at is not None and attempt.status == "FAILED"
        assert attempt.hangup_cause == "NORMAL_CLEARING" and Decimal(attempt.cost) == 0
    assert (call.last_cause, Decimal(call.cost), call.next_attempt_at) == ("MESSAGE_NOT_PLAYED", 0, None)
    assert stack.charges(placed.call_id) == []
    stack.assert_no_overlap([placed.call_id])
    stack.assert_books_balance(tenant.account_id)


def test_rate_changed_during_a_live_call_bills_at_the_rate_reserved(stack: Stack, make_tenant: Any,
                                                                     upload: Any, e2e_app: Any) -> None:
    """The operator raises the account's rate and pulse while a call is answered: that call is
    billed at the rate and pulse in force when its money was reserved; the next call at the new
    ones. Every charge is a debit and the balance equals the ledger.

    Old code: the charge was computed at hangup from the account's current rate (and pulse),
    above the reservation made at the old rate."""
    sim = stack.simulator()
    tenant = stack.tenant(make_tenant, rate_per_minute=Decimal("3.00"), pulse_seconds=30)
    # 59 s: billed 2 pulses of 30 s, reserved 3 (59 + 2 s): a charge at another rate would show
    audio = upload(tenant, seconds=59)
    stack.dialer(sim)
    first = stack.place(tenant, audio, "6")
    stack.wait_status(first.call_id, "ANSWERED")
    cli = e2e_app.test_cli_runner()
    result = cli.invoke(args=["accounts", "set-rate", tenant.account_id, "--rate", "9.00", "--pulse", "60"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["rate_per_minute"] == "9.00"
    stack.wait_status(first.call_id, "COMPLETED", timeout=20)
    second = stack.place(tenant, audio, "6")
    stack.wait_status(second.call_id, "COMPLETED", timeout=20)

    (old,) = stack.attempts(first.call_id)
    assert (Decimal(old.rate_per_minute), old.pulse_seconds) == (Decimal("3.00"), 30)
    assert 59 <= old.billsec <= 60
    assert Decimal(old.cost) == call_cost(old.billsec, Decimal("3.00"), 30) < Decimal(old.reserved_amount)
    assert Decimal(old.cost) != call_cost(old.billsec, Decimal("9.00"), 60)
    (new,) = stack.attempts(second.call_id)
    assert (Decimal(new.rate_per_minute), new.pulse_seconds) == (Decimal("9.00"), 60)
    assert Decimal(new.cost) == call_cost(new.billsec, Decimal("9.00"), 60)
    for call_id in (first.call_id, second.call_id):
        (charge,) = stack.charges(call_id)
        assert Decimal(charge.amount) < 0  # a charge only ever takes money
        assert -Decimal(charge.amount) <= Decimal(stack.attempts(call_id)[0].reserved_amount)
        stack.assert_money(call_id)
    stack.assert_books_balance(tenant.account_id)


@pytest.mark.parametrize(("option", "value", "code"), [
    ("--rate", "0", "INVALID_RATE"), ("--rate", "-2.50", "INVALID_RATE"), ("--rate", "0.00", "INVALID_RATE"),
    ("--pulse", "0", "INVALID_PULSE"), ("--pulse", "-30", "INVALID_PULSE"),
])
def test_set_rate_refuses_zero_and_negative(stack: Stack, make_tenant: Any, e2e_app: Any, option: str,
                                            value: str, code: str) -> None:
    """``flask --app wsgi accounts set-rate`` refuses a rate or pulse that is not positive with a
    clear JSON error and exit status 1, and changes nothing.

    Old code: a zero or negative rate was stored (a negative charge then credited the customer);
    on the current schema the database refuses it, and the command died with a traceback."""
    tenant = stack.tenant(make_tenant)
    before = stack.account(tenant.account_id)
    result = e2e_app.test_cli_runner().invoke(args=["accounts", "set-rate", tenant.account_id, option, value])
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    error = json.loads(result.stderr.strip().splitlines()[-1])["error"]
    assert error["code"] == code and "positive" in error["message"], error
    after = stack.account(tenant.account_id)
    assert (after.rate_per_minute, after.pulse_seconds) == (before.rate_per_minute, before.pulse_seconds)
    with stack.sql.connect() as conn:
        from core.models import LedgerEntry

        kinds = [LedgerKind(k) for k in conn.execute(
            LedgerEntry.__table__.select().with_only_columns(LedgerEntry.kind)
            .where(LedgerEntry.account_id == tenant.account_id)).scalars()]
    assert kinds == [LedgerKind.TOPUP]
