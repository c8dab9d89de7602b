"""The call state machine: every status a call can be in, every step that moves it, who takes
each step, and the rules that decide an attempt's outcome. Standard library only.

This module answers "what can make a call CANCELLED?" in one place: look for the steps whose
targets contain CANCELLED in ``STEPS``. Every SQL writer of a call's status (the API, the CSV
import, campaign cancel, the dialer's claim / progress / finish / reconciliation, the operator's
settlement) takes its allowed source statuses from here (``Step.sources``), so a conditional
UPDATE can never move a call along a step this table does not have.

    QUEUED -> DIALING -> RINGING -> ANSWERED -> COMPLETED
                 \\          \\          \\-> (cancelled, limit reached: still COMPLETED / CANCELLED)
                  `--------`----------> BUSY | NO_ANSWER | FAILED (by hangup cause)
    a retryable outcome with attempts left -> QUEUED again (``next_attempt_at``)
    QUEUED -> CANCELLED (the customer, a campaign cancel, the do-not-call list)
    QUEUED -> FAILED (the balance cannot pay the next attempt)

"Answered" is decided from CHANNEL_ANSWER / the answer time / ``billsec > 0`` (never from the
cause). An answered attempt whose message never started playing did not deliver the message:
it is not COMPLETED, it is charged nothing and it is retried while retries are left.
An attempt whose end nobody saw (the dialer was blind and the switch's record never came) ends
in FAILED with the cause OUTCOME_UNKNOWN: never retried (the callee may have heard the message),
its reservation held until an operator (or a late record from the switch) settles it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum


class CallStatus(str, Enum):
    QUEUED = "QUEUED"
    DIALING = "DIALING"
    RINGING = "RINGING"
    ANSWERED = "ANSWERED"
    COMPLETED = "COMPLETED"
    BUSY = "BUSY"
    NO_ANSWER = "NO_ANSWER"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def is_final(self) -> bool:
        return self in FINAL

    @property
    def is_live(self) -> bool:
        """An attempt is out on FreeSWITCH (or about to be)."""
        return self in LIVE


FINAL = frozenset({CallStatus.COMPLETED, CallStatus.BUSY, CallStatus.NO_ANSWER, CallStatus.FAILED,
                   CallStatus.CANCELLED})
LIVE = frozenset({CallStatus.DIALING, CallStatus.RINGING, CallStatus.ANSWERED})
#: Not yet final: waiting for an attempt or in one.
OPEN = frozenset({CallStatus.QUEUED}) | LIVE
#: The order of the live states: a progress event never moves a call backwards.
LIVE_ORDER = {CallStatus.QUEUED: 0, CallStatus.DIALING: 1, CallStatus.RINGING: 2, CallStatus.ANSWERED: 3}


class Actor(str, Enum):
    """Who takes a step."""

    API = "api"  # the customer, through the API (create, cancel)
    IMPORT = "import"  # the campaign CSV import
    CAMPAIGN = "campaign"  # a campaign cancel ends its pending calls
    DIALER = "dialer"  # the dialer: claim, progress, finish, skip
    OPERATOR = "operator"  # an operator settling an attempt whose outcome is unknown


@dataclass(frozen=True)
class Transition:
    sources: frozenset[CallStatus]
    targets: frozenset[CallStatus]
    actors: frozenset[Actor]
    why: str

    def values(self) -> list[str]:
        """The source statuses as stored (for ``WHERE status IN (...)``)."""
        return sorted(s.value for s in self.sources)

    def allows(self, source: CallStatus, target: CallStatus) -> bool:
        return source in self.sources and target in self.targets


def _t(sources: Iterable[CallStatus], targets: Iterable[CallStatus], actors: Iterable[Actor],
       why: str) -> Transition:
    return Transition(frozenset(sources), frozenset(targets), frozenset(actors), why)


class Step(str, Enum):
    CREATE = "create"
    CLAIM = "claim"
    UNCLAIM = "unclaim"
    RING = "ring"
    ANSWER = "answer"
    FINISH = "finish"
    CANCEL_QUEUED = "cancel_queued"
    REQUEST_CANCEL = "request_cancel"
    SKIP_DO_NOT_CALL = "skip_do_not_call"
    FAIL_UNPAID = "fail_unpaid"
    CAMPAIGN_CANCEL = "campaign_cancel"
    SETTLE_UNKNOWN = "settle_unknown"

    @property
    def rule(self) -> Transition:
        return STEPS[self]

    @property
    def sources(self) -> list[str]:
        return STEPS[self].values()


_ENDS = (CallStatus.COMPLETED, CallStatus.BUSY, CallStatus.NO_ANSWER, CallStatus.FAILED, CallStatus.CANCELLED)

STEPS: dict[Step, Transition] = {
    # a new call (POST /calls, or one row of a campaign's CSV) waits for its first attempt
    Step.CREATE: _t((), (CallStatus.QUEUED,), (Actor.API, Actor.IMPORT), "a call is placed"),
    # the dialer takes a due call for one attempt (conditional UPDATE in SQL, before any originate)
    Step.CLAIM: _t((CallStatus.QUEUED,), (CallStatus.DIALING,), (Actor.DIALER,), "an attempt is claimed"),
    # a claimed attempt that was never originated goes back, its retry not used
    Step.UNCLAIM: _t((CallStatus.DIALING,), (CallStatus.QUEUED,), (Actor.DIALER,),
                     "the originate could not be sent"),
    Step.RING: _t((CallStatus.DIALING,), (CallStatus.RINGING,), (Actor.DIALER,), "180/183 from the far end"),
    Step.ANSWER: _t((CallStatus.DIALING, CallStatus.RINGING), (CallStatus.ANSWERED,), (Actor.DIALER,),
                    "the far end answered"),
    # the attempt ended: final by its outcome, or QUEUED again for a retry; a cancel asked for
    # while it was live ends it CANCELLED
    Step.FINISH: _t(LIVE, (CallStatus.QUEUED, *_ENDS), (Actor.DIALER,), "the attempt ended"),
    Step.CANCEL_QUEUED: _t((CallStatus.QUEUED,), (CallStatus.CANCELLED,), (Actor.API,),
                           "the customer cancelled a call not yet dialed"),
    # a live call is only marked: the dialer hangs it up and FINISH ends it CANCELLED
    Step.REQUEST_CANCEL: _t(LIVE, LIVE, (Actor.API, Actor.CAMPAIGN), "the customer asked to hang up"),
    Step.SKIP_DO_NOT_CALL: _t((CallStatus.QUEUED,), (CallStatus.CANCELLED,), (Actor.DIALER,),
                              "the number joined the do-not-call list"),
    Step.FAIL_UNPAID: _t((CallStatus.QUEUED,), (CallStatus.FAILED,), (Actor.DIALER,),
                         "the balance cannot pay the next attempt of a single call"),
    Step.CAMPAIGN_CANCEL: _t((CallStatus.QUEUED,), (CallStatus.CANCELLED,), (Actor.CAMPAIGN,),
                             "the campaign was cancelled"),
    # an attempt ended OUTCOME_UNKNOWN (a FAILED call) is settled once its outcome is known
    Step.SETTLE_UNKNOWN: _t((CallStatus.FAILED,), (CallStatus.COMPLETED, CallStatus.FAILED),
                            (Actor.DIALER, Actor.OPERATOR), "the switch's record or an operator settled it"),
}


class IllegalTransition(Exception):
    def __init__(self, step: Step, source: CallStatus | None, target: CallStatus) -> None:
        super().__init__(f"{step.value}: {source.value if source else '-'} -> {target.value} is not allowed")


def check(step: Step, source: CallStatus | None, target: CallStatus) -> CallStatus:
    """``target`` if the step may move a call from ``source`` to it, else IllegalTransition."""
    rule = STEPS[step]
    if target not in rule.targets or (source is not None and source not in rule.sources) or (
            source is None and rule.sources):
        raise IllegalTransition(step, source, target)
    return target


def steps_into(target: CallStatus) -> list[Step]:
    """Every step that can end in ``target`` (the answer to "what can make a call X?")."""
    return [step for step, rule in STEPS.items() if target in rule.targets]


def advance(current: CallStatus, to: CallStatus) -> CallStatus:
    """A progress event applied idempotently: late or repeated events never go back."""
    if current.is_final or to not in LIVE_ORDER or current not in LIVE_ORDER:
        return current
    return to if LIVE_ORDER[to] > LIVE_ORDER[current] else current


def earlier_than(to: CallStatus) -> list[str]:
    """The live statuses a progress event towards ``to`` may move a call from."""
    return sorted(s.value for s, n in LIVE_ORDER.items() if n < LIVE_ORDER[to] and s is not CallStatus.QUEUED)


# --------------------------------------------------------------------------- causes and outcomes


@dataclass(frozen=True)
class HangupFacts:
    """What is known about an attempt's end (from an ESL event, a CDR, or nothing at all)."""

    cause: str
    q850: int | None = None
    sip_status: int | None = None
    answered: bool = False
    answered_at: datetime | None = None
    ended_at: datetime | None = None
    billsec: int = 0
    duration: int = 0
    played_ms: int | None = None
    #: True / False when known (PLAYBACK_START seen, or the switch's record says); None: unknown
    message_started: bool | None = None


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
#: answered, but the message never started playing: not delivered, tried again
NOT_DELIVERED = Outcome(CallStatus.FAILED, Retry.YES)
#: nobody saw how the attempt ended (and the callee may have heard the message)
UNKNOWN = Outcome(CallStatus.FAILED, Retry.NEVER)

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

# Causes ZensCall itself records (never sent by FreeSWITCH)
INSUFFICIENT_BALANCE = "INSUFFICIENT_BALANCE"
CANCELLED_BY_USER = "CANCELLED_BY_USER"
CAMPAIGN_CANCELLED = "CAMPAIGN_CANCELLED"
DO_NOT_CALL = "DO_NOT_CALL"  # the number is on the account's do-not-call list
ORIGINATE_FAILED = "ORIGINATE_FAILED"  # FreeSWITCH refused the originate (no channel was made)
MESSAGE_NOT_PLAYED = "MESSAGE_NOT_PLAYED"  # answered, but the message never started
OUTCOME_UNKNOWN = "OUTCOME_UNKNOWN"  # the dialer was blind and the switch's record never came
CAUSE_UNKNOWN = "UNKNOWN"


def outcome_for(cause: str | None, *, answered: bool, message_started: bool = True) -> Outcome:
    """The outcome of one attempt. Unknown causes are temporary failures (retried)."""
    cause = (cause or "").upper()
    if cause == OUTCOME_UNKNOWN:
        return UNKNOWN
    if answered:
        return COMPLETED if message_started else NOT_DELIVERED
    return CAUSES.get(cause, TEMPORARY_FAILURE)


@dataclass(frozen=True)
class Next:
    """What becomes of the call after an attempt ends."""

    status: CallStatus
    next_attempt_at: datetime | None

    @property
    def final(self) -> bool:
        return self.status.is_final


def after_attempt(outcome: Outcome, *, attempts_made: int, max_retries: int, retry_delay: timedelta,
                  now: datetime, cancel_requested: bool = False) -> Next:
    """Retry or finish (``attempts_made`` counts the attempt that just ended).

    A call the customer cancelled ends CANCELLED even if it was answered (it is still charged
    for the answered seconds)."""
    if cancel_requested:
        return Next(CallStatus.CANCELLED, None)
    if outcome.retry is Retry.YES and attempts_made <= max_retries:
        return Next(CallStatus.QUEUED, now + retry_delay)
    return Next(outcome.status, None)
