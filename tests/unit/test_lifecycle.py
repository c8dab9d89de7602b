"""The pure call lifecycle: the cause table, retry counting, cancel, and live states."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core.states import CallStatus
from dialer import lifecycle
from dialer.lifecycle import Retry, advance, after_attempt, outcome_for

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
DELAY = timedelta(seconds=90)

TABLE = [
    ("USER_BUSY", CallStatus.BUSY, Retry.YES, False),
    ("NO_ANSWER", CallStatus.NO_ANSWER, Retry.YES, False),
    ("NO_USER_RESPONSE", CallStatus.NO_ANSWER, Retry.YES, False),
    ("ORIGINATOR_CANCEL", CallStatus.NO_ANSWER, Retry.YES, False),
    ("NORMAL_TEMPORARY_FAILURE", CallStatus.FAILED, Retry.YES, False),
    ("SWITCH_CONGESTION", CallStatus.FAILED, Retry.YES, False),
    ("NORMAL_CIRCUIT_CONGESTION", CallStatus.FAILED, Retry.YES, False),
    ("RECOVERY_ON_TIMER_EXPIRE", CallStatus.FAILED, Retry.YES, False),
    ("DESTINATION_OUT_OF_ORDER", CallStatus.FAILED, Retry.YES, False),
    ("NETWORK_OUT_OF_ORDER", CallStatus.FAILED, Retry.YES, False),
    ("SUBSCRIBER_ABSENT", CallStatus.FAILED, Retry.YES, False),
    ("GATEWAY_DOWN", CallStatus.FAILED, Retry.YES, False),
    ("CALL_REJECTED", CallStatus.FAILED, Retry.NEVER, False),
    ("UNALLOCATED_NUMBER", CallStatus.FAILED, Retry.NEVER, True),
    ("INVALID_NUMBER_FORMAT", CallStatus.FAILED, Retry.NEVER, True),
    ("NO_ROUTE_DESTINATION", CallStatus.FAILED, Retry.NEVER, True),
    ("OUTGOING_CALL_BARRED", CallStatus.FAILED, Retry.NEVER, True),
]


@pytest.mark.parametrize(("cause", "status", "retry", "permanent"), TABLE)
def test_cause_table(cause: str, status: CallStatus, retry: Retry, permanent: bool) -> None:
    outcome = outcome_for(cause, answered=False)
    assert (outcome.status, outcome.retry, outcome.permanent) == (status, retry, permanent)
    assert outcome_for(cause.lower(), answered=False) == outcome


@pytest.mark.parametrize("cause", [c for c, *_ in TABLE] + ["NORMAL_CLEARING", None, "SOMETHING_NEW"])
def test_answered_is_completed_whatever_the_cause(cause: str | None) -> None:
    assert outcome_for(cause, answered=True) == lifecycle.COMPLETED
    assert lifecycle.COMPLETED.retry is Retry.NEVER


@pytest.mark.parametrize("cause", [None, "", "SOMETHING_NEW", lifecycle.LOST, lifecycle.ORIGINATE_FAILED])
def test_unknown_causes_are_temporary_failures(cause: str | None) -> None:
    assert outcome_for(cause, answered=False) == lifecycle.TEMPORARY_FAILURE


@pytest.mark.parametrize("max_retries", [0, 1, 2, 5])
def test_retry_counting(max_retries: int) -> None:
    """max_retries=N means at most N+1 attempts, then the attempt's own status."""
    statuses = []
    for made in range(1, max_retries + 2):
        nxt = after_attempt(lifecycle.BUSY, attempts_made=made, max_retries=max_retries, retry_delay=DELAY, now=NOW)
        statuses.append(nxt.status)
        if made <= max_retries:
            assert nxt == lifecycle.Next(CallStatus.QUEUED, NOW + DELAY) and not nxt.final
        else:
            assert nxt == lifecycle.Next(CallStatus.BUSY, None) and nxt.final
    assert statuses.count(CallStatus.QUEUED) == max_retries


@pytest.mark.parametrize("outcome", [lifecycle.COMPLETED, lifecycle.REJECTED, lifecycle.PERMANENT_FAILURE])
def test_never_retried_outcomes(outcome: lifecycle.Outcome) -> None:
    nxt = after_attempt(outcome, attempts_made=1, max_retries=10, retry_delay=DELAY, now=NOW)
    assert nxt.status == outcome.status and nxt.next_attempt_at is None and nxt.final


@pytest.mark.parametrize("outcome", [lifecycle.COMPLETED, lifecycle.BUSY, lifecycle.NO_ANSWER,
                                     lifecycle.TEMPORARY_FAILURE, lifecycle.PERMANENT_FAILURE])
def test_cancel_ends_cancelled_without_retry(outcome: lifecycle.Outcome) -> None:
    nxt = after_attempt(outcome, attempts_made=1, max_retries=5, retry_delay=DELAY, now=NOW,
                        cancel_requested=True)
    assert nxt == lifecycle.Next(CallStatus.CANCELLED, None) and nxt.final


LIVE_ORDER = [CallStatus.QUEUED, CallStatus.DIALING, CallStatus.RINGING, CallStatus.ANSWERED]


@pytest.mark.parametrize("current", list(CallStatus))
@pytest.mark.parametrize("to", list(CallStatus))
def test_advance_never_goes_backwards(current: CallStatus, to: CallStatus) -> None:
    got = advance(current, to)
    if current.is_final:
        assert got == current  # a final state never changes
    elif current in LIVE_ORDER and to in LIVE_ORDER:
        assert LIVE_ORDER.index(got) == max(LIVE_ORDER.index(current), LIVE_ORDER.index(to))
    else:
        assert got == current
    assert advance(got, to) == got  # idempotent: repeating the event changes nothing


def test_events_in_any_order_end_at_the_furthest_state() -> None:
    import itertools

    for order in itertools.permutations([CallStatus.RINGING, CallStatus.ANSWERED, CallStatus.RINGING]):
        state = CallStatus.DIALING
        for event in order:
            state = advance(state, event)
        assert state == CallStatus.ANSWERED
