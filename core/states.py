"""The states every part of ZensCall agrees on (standard library only)."""

from __future__ import annotations

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
        return self in FINAL_CALL_STATUSES

    @property
    def is_live(self) -> bool:
        """An attempt is out on FreeSWITCH."""
        return self in LIVE_CALL_STATUSES


FINAL_CALL_STATUSES = frozenset(
    {CallStatus.COMPLETED, CallStatus.BUSY, CallStatus.NO_ANSWER, CallStatus.FAILED, CallStatus.CANCELLED}
)
LIVE_CALL_STATUSES = frozenset({CallStatus.DIALING, CallStatus.RINGING, CallStatus.ANSWERED})


class CampaignStatus(str, Enum):
    IMPORTING = "IMPORTING"
    SCHEDULED = "SCHEDULED"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    COMPLETED = "COMPLETED"
    CANCELLED = "CANCELLED"
    FAILED = "FAILED"


class LedgerKind(str, Enum):
    TOPUP = "TOPUP"
    RESERVE = "RESERVE"
    RELEASE = "RELEASE"
    CHARGE = "CHARGE"
    REFUND = "REFUND"
    ADJUSTMENT = "ADJUSTMENT"


class AudioStatus(str, Enum):
    READY = "READY"
    DELETED = "DELETED"


class ImportStatus(str, Enum):
    """A do-not-call list upload imported by the worker: QUEUED -> RUNNING -> COMPLETED | FAILED."""

    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
