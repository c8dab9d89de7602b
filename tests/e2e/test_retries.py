"""Retries: busy and unanswered calls are dialed again up to max_retries, never more;
answered calls never again; a scheduled retry survives a dialer restart."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.e2e.conftest import Stack, assert_sim_no_overlap


@pytest.mark.parametrize(("digit", "final", "cause"), [("2", "BUSY", "USER_BUSY"),
                                                         ("3", "NO_ANSWER", "NO_ANSWER")])
def test_retryable_outcome_is_dialed_three_times(stack: Stack, make_tenant: Any, upload: Any,
                                                  digit: str, final: str, cause: str) -> None:
    sim = stack.simulator()
    tenant = stack.tenant(make_tenant)
    audio = upload(tenant, seconds=2)
    # placed before any dialer runs, so the short delay is in SQL before the first attempt
    placed = stack.place(tenant, audio, digit, max_retries=2)
    stack.set_call(placed.call_id, retry_delay_seconds=1)
    stack.dialer(sim, FS_ORIGINATE_TIMEOUT=2)
    call = stack.wait_status(placed.call_id, final, timeout=30)
    attempts = stack.attempts(placed.call_id)
    assert call.attempts_count == 3 and len(attempts) == 3
    assert [a.hangup_cause for a in attempts] == [cause] * 3
    assert call.last_cause == cause and call.next_attempt_at is None and call.ended_at is not None
    stack.assert_no_overlap([placed.call_id])
    # the switch saw exactly three channels to the number, one after the other
    rows = [r for r in sim.stats()["calls"] if r["number"].endswith(placed.phone[-10:])]
    assert len(rows) == 3
    assert_sim_no_overlap(rows)
    time.sleep(1.5)  # longer than the retry delay: nothing more is dialed
    assert len(stack.attempts(placed.call_id)) == 3
    stack.assert_money(placed.call_id)
    stack.assert_books_balance(tenant.account_id)


@pytest.mark.parametrize("digit", ["1", "6"])
def test_answered_call_is_never_dialed_again(stack: Stack, make_tenant: Any, upload: Any, digit: str) -> None:
    sim = stack.simulator()
    tenant = stack.tenant(make_tenant)
    audio = upload(tenant, seconds=2)
    placed = stack.place(tenant, audio, digit, max_retries=2)
    stack.set_call(placed.call_id, retry_delay_seconds=0)
    stack.dialer(sim)
    call = stack.wait_status(placed.call_id, "COMPLETED")
    time.sleep(1.0)
    assert call.attempts_count == 1 and len(stack.attempts(placed.call_id)) == 1
    assert stack.status(placed.call_id) == "COMPLETED"
    assert sum(1 for r in sim.stats()["calls"] if r["number"].endswith(placed.phone[-10:])) == 1
    stack.assert_books_balance(tenant.account_id)


def test_scheduled_retry_survives_dialer_restart(stack: Stack, make_tenant: Any, upload: Any) -> None:
    sim = stack.simulator()
    tenant = stack.tenant(make_tenant)
    audio = upload(tenant, seconds=2)
    placed = stack.place(tenant, audio, "2", max_retries=1)
    stack.set_call(placed.call_id, retry_delay_seconds=3600)
    first = stack.dialer(sim)
    call = stack.wait_retry_scheduled(placed.call_id, 1)
    assert call.next_attempt_at is not None
    first.stop()
    # the retry is due now; only SQL knows about it
    from core.db import utcnow

    stack.set_call(placed.call_id, next_attempt_at=utcnow())
    stack.dialer(sim)
    call = stack.wait_status(placed.call_id, "BUSY")
    time.sleep(1.0)
    attempts = stack.attempts(placed.call_id)
    assert call.attempts_count == 2 and len(attempts) == 2
    assert sum(1 for r in sim.stats()["calls"] if r["number"].endswith(placed.phone[-10:])) == 2
    stack.assert_no_overlap([placed.call_id])
    stack.assert_books_balance(tenant.account_id)
