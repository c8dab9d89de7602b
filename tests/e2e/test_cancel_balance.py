"""Cancel of live calls (uuid_kill on the switch) and a retry the balance cannot pay."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from billing import ledger
from core.db import utcnow
from tests.e2e.conftest import Stack


def test_cancel_ringing_call(stack: Stack, make_tenant: Any, upload: Any) -> None:
    sim = stack.simulator()
    stack.dialer(sim, FS_ORIGINATE_TIMEOUT=600)  # rings 30 s of real time
    tenant = stack.tenant(make_tenant)
    audio = upload(tenant, seconds=2)
    placed = stack.place(tenant, audio, "3", max_retries=2)
    stack.wait_status(placed.call_id, "RINGING")
    assert sim.stats()["current"] == 1
    body = stack.cancel(tenant, placed.call_id)
    assert body["status"] in ("RINGING", "CANCELLED")
    call = stack.wait_status(placed.call_id, "CANCELLED")
    (attempt,) = stack.attempts(placed.call_id)
    assert attempt.ended_at is not None and attempt.answered_at is None
    assert attempt.billsec == 0 and Decimal(call.cost) == 0
    assert call.next_attempt_at is None  # a cancelled call is not retried
    (row,) = [r for r in sim.stats()["calls"] if r["uuid"] == attempt.id]
    assert row["end"] is not None and not row["answered"]  # hung up on the switch by uuid_kill
    assert sim.stats()["current"] == 0
    stack.assert_books_balance(tenant.account_id)


def test_cancel_answered_call_charges_the_answered_part(stack: Stack, make_tenant: Any, upload: Any) -> None:
    sim = stack.simulator()
    stack.dialer(sim)
    tenant = stack.tenant(make_tenant)
    audio = upload(tenant, seconds=240)  # 12 s of real time at the simulator's pace
    placed = stack.place(tenant, audio, "0")
    stack.wait_status(placed.call_id, "ANSWERED")
    time.sleep(0.5)  # let some (simulated) seconds of the message play
    stack.cancel(tenant, placed.call_id)
    call = stack.wait_status(placed.call_id, "CANCELLED", timeout=10)
    (attempt,) = stack.attempts(placed.call_id)
    (row,) = [r for r in sim.stats()["calls"] if r["uuid"] == attempt.id]
    assert row["answered"] and row["end"] is not None
    assert 0 < attempt.billsec < 240, attempt.billsec
    assert attempt.played_ms is None or attempt.played_ms < 240_000
    assert Decimal(call.cost) > 0
    stack.assert_money(placed.call_id)
    stack.assert_books_balance(tenant.account_id)


def test_retry_without_balance_fails_insufficient_balance(stack: Stack, make_tenant: Any, upload: Any) -> None:
    sim = stack.simulator()
    stack.dialer(sim)
    tenant = stack.tenant(make_tenant, balance="50")
    audio = upload(tenant, seconds=2)
    placed = stack.place(tenant, audio, "2", max_retries=2)
    stack.set_call(placed.call_id, retry_delay_seconds=3600)
    stack.wait_retry_scheduled(placed.call_id, 1)
    # the balance drops between attempts (an operator's correction takes what is left)
    with Session(stack.sql) as session:
        view = ledger.balance_of(session, tenant.account_id)
        assert view.reserved == 0
        ledger.debit_adjustment(session, tenant.account_id, view.available - Decimal("0.01"),
                                description="correction")
        session.commit()
    stack.set_call(placed.call_id, next_attempt_at=utcnow())
    call = stack.wait_status(placed.call_id, "FAILED")
    assert call.last_cause == "INSUFFICIENT_BALANCE"
    assert call.attempts_count == 1 and len(stack.attempts(placed.call_id)) == 1
    assert call.next_attempt_at is None and call.ended_at is not None
    assert sum(1 for r in sim.stats()["calls"] if r["number"].endswith(placed.phone[-10:])) == 1
    stack.assert_books_balance(tenant.account_id)
    assert stack.account(tenant.account_id).balance == Decimal("0.01")
