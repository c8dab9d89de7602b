"""Pure rating: what a call costs (standard library only, Decimal throughout).

A call is billed per started pulse: ``cost = ceil(billsec / pulse) * pulse / 60 * rate``,
rounded up to the ledger's precision of 1/10000 PKR. Unanswered attempts cost nothing.
"""

from __future__ import annotations

import math
from decimal import ROUND_CEILING, Decimal

MONEY_QUANTUM = Decimal("0.0001")
ZERO = Decimal("0")

# Our leg hangs up when the message ends; the far end's answer and the BYE add a
# little on top of the file's length, so the reservation allows for it.
PLAYBACK_SLACK_SECONDS = 2


def pulses(billsec: int, pulse_seconds: int) -> int:
    if pulse_seconds <= 0:
        raise ValueError("pulse_seconds must be positive")
    if billsec <= 0:
        return 0
    return math.ceil(billsec / pulse_seconds)


def call_cost(billsec: int, rate_per_minute: Decimal, pulse_seconds: int) -> Decimal:
    """Cost of an answered attempt that lasted ``billsec`` seconds."""
    n = pulses(billsec, pulse_seconds)
    if n == 0:
        return ZERO.quantize(MONEY_QUANTUM)
    raw = Decimal(n * pulse_seconds) * rate_per_minute / Decimal(60)
    return raw.quantize(MONEY_QUANTUM, rounding=ROUND_CEILING)


def worst_case_billsec(audio_duration_ms: int) -> int:
    """The longest an attempt playing this message can be billed for."""
    return math.ceil(audio_duration_ms / 1000) + PLAYBACK_SLACK_SECONDS


def reservation_for(audio_duration_ms: int, rate_per_minute: Decimal, pulse_seconds: int) -> Decimal:
    """The amount held before an originate: the worst-case cost of one attempt."""
    return call_cost(worst_case_billsec(audio_duration_ms), rate_per_minute, pulse_seconds)


def format_pkr(amount: Decimal) -> str:
    """``PKR 1,234.50`` style, for human messages."""
    return f"PKR {amount.quantize(Decimal('0.01')):,.2f}"


def money_str(amount: Decimal) -> str:
    """Money in JSON: a string with 2 decimals, or 4 when sub-paisa digits exist."""
    two = amount.quantize(Decimal("0.01"))
    if two == amount:
        return f"{two:.2f}"
    return f"{amount.quantize(MONEY_QUANTUM):.4f}"
