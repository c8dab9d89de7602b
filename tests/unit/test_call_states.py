"""The call state machine: the steps and who takes them, the cause table, retry counting, cancel,
messages that never played, unknown outcomes, and live states."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core import call_states as lifecycle
from core.call_states import (
    STEPS,
    Actor,
    CallStatus,
    IllegalTransition,
    Retry,
    Step,
    advance,
    after_attempt,
    check,
    outcome_for,
    steps_into,
)

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


@pytest.mark.parametrize("cause", [None, "", "SOMETHING_NEW", lifecycle.ORIGINATE_FAILED, lifecycle.CAUSE_UNKNOWN])
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


def test_what_can_make_a_call_cancelled() -> None:
    """The question a newcomer asks, answered by the table itself."""
    assert set(steps_into(CallStatus.CANCELLED)) == {
        Step.FINISH, Step.CANCEL_QUEUED, Step.SKIP_DO_NOT_CALL, Step.CAMPAIGN_CANCEL}
    assert STEPS[Step.CANCEL_QUEUED].actors == {Actor.API}
    assert STEPS[Step.CAMPAIGN_CANCEL].actors == {Actor.CAMPAIGN}


def test_final_states_have_no_way_out_but_a_settlement() -> None:
    for step, rule in STEPS.items():
        for source in rule.sources:
            if source.is_final:
                assert step is Step.SETTLE_UNKNOWN and source is CallStatus.FAILED


@pytest.mark.parametrize(("step", "source", "target"), [
    (Step.CLAIM, CallStatus.QUEUED, CallStatus.DIALING),
    (Step.FINISH, CallStatus.RINGING, CallStatus.QUEUED),
    (Step.FINISH, CallStatus.ANSWERED, CallStatus.COMPLETED),
    (Step.UNCLAIM, CallStatus.DIALING, CallStatus.QUEUED),
])
def test_allowed_steps(step: Step, source: CallStatus, target: CallStatus) -> None:
    assert check(step, source, target) is target
    assert source.value in step.sources


@pytest.mark.parametrize(("step", "source", "target"), [
    (Step.CLAIM, CallStatus.RINGING, CallStatus.DIALING),  # never dialed twice at once
    (Step.CANCEL_QUEUED, CallStatus.ANSWERED, CallStatus.CANCELLED),  # a live call is hung up, not ended
    (Step.FINISH, CallStatus.QUEUED, CallStatus.COMPLETED),
    (Step.CREATE, CallStatus.QUEUED, CallStatus.QUEUED),
    (Step.SKIP_DO_NOT_CALL, CallStatus.QUEUED, CallStatus.FAILED),
])
def test_refused_steps(step: Step, source: CallStatus, target: CallStatus) -> None:
    with pytest.raises(IllegalTransition):
        check(step, source, target)


def test_answered_but_message_never_started_is_not_delivered_and_retried() -> None:
    outcome = outcome_for("NORMAL_CLEARING", answered=True, message_started=False)
    assert outcome is lifecycle.NOT_DELIVERED and outcome.status is CallStatus.FAILED
    nxt = after_attempt(outcome, attempts_made=1, max_retries=1, retry_delay=DELAY, now=NOW)
    assert nxt == lifecycle.Next(CallStatus.QUEUED, NOW + DELAY)
    last = after_attempt(outcome, attempts_made=2, max_retries=1, retry_delay=DELAY, now=NOW)
    assert last == lifecycle.Next(CallStatus.FAILED, None)


def test_unknown_outcome_is_final_and_never_retried() -> None:
    outcome = outcome_for(lifecycle.OUTCOME_UNKNOWN, answered=False)
    assert outcome is lifecycle.UNKNOWN
    assert after_attempt(outcome, attempts_made=1, max_retries=5, retry_delay=DELAY, now=NOW).final
