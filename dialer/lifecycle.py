"""The call lifecycle as pure code: hangup causes to outcomes, and what happens next.

``QUEUED -> DIALING -> RINGING -> ANSWERED -> COMPLETED``; from DIALING/RINGING to
BUSY, NO_ANSWER or FAILED by hangup cause; CANCELLED from any non-final state.
A retryable outcome with attempts left goes back to QUEUED with a time for the next
attempt. "Answered" comes from CHANNEL_ANSWER / the answer time / ``billsec > 0``,
never from the cause. Standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum

from core.states import CallStatus


class Retry(str, Enum):
    NEVER = "never"
    YES = "yes"


@dataclass(frozen=True)
class Outcome:
    status: CallStatus
    retry: Retry
    permanent: bool = False


COMPLETED = Outcome(CallStatus.COMPLETED, Retry.NEVER)
BUSY = Outcome(CallStatus.BUSY, Retry.YES)
NO_ANSWER = Outcome(CallStatus.NO_ANSWER, Retry.YES)
TEMPORARY_FAILURE = Outcome(CallStatus.FAILED, Retry.YES)
REJECTED = Outcome(CallStatus.FAILED, Retry.NEVER)
PERMANENT_FAILURE = Outcome(CallStatus.FAILED, Retry.NEVER, permanent=True)

# FreeSWITCH hangup cause -> outcome of an attempt that was never answered
CAUSES: dict[str, Outcome] = {
    "USER_BUSY": BUSY,
    "NO_ANSWER": NO_ANSWER,
    "NO_USER_RESPONSE": NO_ANSWER,
    "ORIGINATOR_CANCEL": NO_ANSWER,  # the originate timed out on our side
    "ALLOTTED_TIMEOUT": NO_ANSWER,
    "NORMAL_TEMPORARY_FAILURE": TEMPORARY_FAILURE,
    "SWITCH_CONGESTION": TEMPORARY_FAILURE,
    "NORMAL_CIRCUIT_CONGESTION": TEMPORARY_FAILURE,
    "RECOVERY_ON_TIMER_EXPIRE": TEMPORARY_FAILURE,
    "DESTINATION_OUT_OF_ORDER": TEMPORARY_FAILURE,
    "NETWORK_OUT_OF_ORDER": TEMPORARY_FAILURE,
    "SUBSCRIBER_ABSENT": TEMPORARY_FAILURE,
    "GATEWAY_DOWN": TEMPORARY_FAILURE,
    "REQUESTED_CHAN_UNAVAIL": TEMPORARY_FAILURE,
    "MEDIA_TIMEOUT": TEMPORARY_FAILURE,
    "CALL_REJECTED": REJECTED,
    "UNALLOCATED_NUMBER": PERMANENT_FAILURE,
    "INVALID_NUMBER_FORMAT": PERMANENT_FAILURE,
    "NO_ROUTE_DESTINATION": PERMANENT_FAILURE,
    "NO_ROUTE_TRANSIT_NET": PERMANENT_FAILURE,
    "OUTGOING_CALL_BARRED": PERMANENT_FAILURE,
    "NUMBER_CHANGED": PERMANENT_FAILURE,
    "INCOMPATIBLE_DESTINATION": PERMANENT_FAILURE,
    # our own configuration is wrong: retrying the same gateway cannot help
    "INVALID_GATEWAY": REJECTED,
    "INVALID_PROFILE": REJECTED,
}

# Causes the dialer itself records (never sent by FreeSWITCH)
INSUFFICIENT_BALANCE = "INSUFFICIENT_BALANCE"
CANCELLED_BY_USER = "CANCELLED_BY_USER"
ORIGINATE_FAILED = "ORIGINATE_FAILED"  # the originate could not be sent
LOST = "CHANNEL_LOST"  # FreeSWITCH no longer knows the channel and no hangup event came
DO_NOT_CALL = "DO_NOT_CALL"  # the number is on the account's do-not-call list


def outcome_for(cause: str | None, *, answered: bool) -> Outcome:
    """The outcome of one attempt. Unknown causes are temporary failures (retried)."""
    if answered:
        return COMPLETED
    return CAUSES.get((cause or "").upper(), TEMPORARY_FAILURE)


@dataclass(frozen=True)
class Next:
    """What becomes of the call after an attempt ends."""

    status: CallStatus
    next_attempt_at: datetime | None

    @property
    def final(self) -> bool:
        return self.status.is_final


def after_attempt(
    outcome: Outcome,
    *,
    attempts_made: int,
    max_retries: int,
    retry_delay: timedelta,
    now: datetime,
    cancel_requested: bool = False,
) -> Next:
    """Retry or finish: ``attempts_made`` counts the attempt that just ended.

    A call the user cancelled ends CANCELLED even if it was answered (it is still
    charged for the answered seconds).
    """
    if cancel_requested:
        return Next(CallStatus.CANCELLED, None)
    if outcome.retry is Retry.YES and attempts_made <= max_retries:
        return Next(CallStatus.QUEUED, now + retry_delay)
    return Next(outcome.status, None)


# Which live state an event may move a call to; never backwards.
LIVE_ORDER = {CallStatus.QUEUED: 0, CallStatus.DIALING: 1, CallStatus.RINGING: 2, CallStatus.ANSWERED: 3}


def advance(current: CallStatus, to: CallStatus) -> CallStatus:
    """Apply a live-state event idempotently: late or repeated events never go back."""
    if current.is_final or to not in LIVE_ORDER or current not in LIVE_ORDER:
        return current
    return to if LIVE_ORDER[to] > LIVE_ORDER[current] else current
