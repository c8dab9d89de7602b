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
    READY = "READY"
    DELETED = "DELETED"
