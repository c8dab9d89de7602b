"""Every outcome digit of the simulator, through API -> RQ -> dialer -> switch -> SQL."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.conftest import Stack

# digit -> (final status, hangup cause, SIP status, answered)
EXPECTED: dict[str, tuple[str, str, int | None, bool]] = {
    "1": ("COMPLETED", "NORMAL_CLEARING", 200, True),   # far end hangs up after 3 s
    "6": ("COMPLETED", "NORMAL_CLEARING", None, True),  # our message plays to its end
    "0": ("COMPLETED", "NORMAL_CLEARING", None, True),  # answers and stays: the message ends it
    "2": ("BUSY", "USER_BUSY", 486, False),
    "3": ("NO_ANSWER", "NO_ANSWER", None, False),       # rings until the originate timeout
    "4": ("FAILED", "CALL_REJECTED", 403, False),
    "5": ("FAILED", "UNALLOCATED_NUMBER", 404, False),
    "7": ("NO_ANSWER", "NO_USER_RESPONSE", 480, False),
    "8": ("FAILED", "NORMAL_TEMPORARY_FAILURE", 503, False),
    "9": ("NO_ANSWER", "NO_ANSWER", None, False),       # early media, never answered
}


def test_every_outcome_digit(stack: Stack, make_tenant: Any, upload: Any) -> None:
    sim = stack.simulator()
    stack.dialer(sim)
    tenant = stack.tenant(make_tenant, balance="500")
    audio = upload(tenant, seconds=10)
    placed = [stack.place(tenant, audio, digit) for digit in EXPECTED]
    stack.wait_final([p.call_id for p in placed])

    for p in placed:
        status, cause, sip, answered = EXPECTED[p.digit]
        call = stack.call(p.call_id)
        attempts = stack.attempts(p.call_id)
        got = (call.status, call.last_cause, len(attempts))
        assert got == (status, cause, 1), f"digit {p.digit}: {got}"
        (attempt,) = attempts
        assert attempt.hangup_cause == cause
        if sip is not None:
            assert attempt.sip_status == sip, f"digit {p.digit}: SIP {attempt.sip_status}"
        assert (attempt.answered_at is not None) == answered, f"digit {p.digit}"
        if answered:
            assert attempt.billsec > 0, f"digit {p.digit}: answered without billsec"
            assert call.cost > 0
        else:
            assert attempt.billsec == 0 and call.cost == 0, f"digit {p.digit}: unanswered was charged"
        stack.assert_money(p.call_id)
        body = stack.api_call(tenant, p.call_id)
        assert body["status"] == status

    # the far end hung up after 3 s of a 10 s message; the others heard all of it
    by_digit = {p.digit: stack.attempts(p.call_id)[0] for p in placed}
    assert by_digit["1"].billsec < by_digit["6"].billsec
    stack.assert_books_balance(tenant.account_id)


@pytest.mark.parametrize("digit", ["4", "5"])
def test_permanent_failures_are_never_retried(stack: Stack, make_tenant: Any, upload: Any, digit: str) -> None:
    sim = stack.simulator()
    stack.dialer(sim)
    tenant = stack.tenant(make_tenant)
    audio = upload(tenant, seconds=2)
    placed = stack.place(tenant, audio, digit, max_retries=2)
    stack.set_call(placed.call_id, retry_delay_seconds=0)
    call = stack.wait_status(placed.call_id, "FAILED")
    assert call.attempts_count == 1 and len(stack.attempts(placed.call_id)) == 1
    assert call.next_attempt_at is None
    stack.assert_books_balance(tenant.account_id)
