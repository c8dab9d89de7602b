"""Statuses of the things that are not state machines of their own (standard library only).

Calls and campaigns have theirs in ``core.call_states`` and ``core.campaign_states``.
"""

from __future__ import annotations

from enum import Enum


class LedgerKind(str, Enum):
    TOPUP = "TOPUP"
    RESERVE = "RESERVE"
    RELEASE = "RELEASE"
    CHARGE = "CHARGE"
    REFUND = "REFUND"
    ADJUSTMENT = "ADJUSTMENT"


class AudioStatus(str, Enum):
    PROCESSING = "PROCESSING"  # accepted, being converted by the worker
    READY = "READY"
    FAILED = "FAILED"  # the worker's conversion refused the file (error_code, error_message)
    DELETED = "DELETED"


class ImportStatus(str, Enum):
    """A do-not-call list upload imported by the worker: QUEUED -> RUNNING -> COMPLETED | FAILED."""

    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
