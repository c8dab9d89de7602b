"""The account's balance-alert threshold: a charge taking the balance below it sends
``balance.low`` (None: never)."""

from __future__ import annotations

from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.orm import Session

from core.models import Account
from services.errors import invalid

MAX_THRESHOLD = 10_000_000
FIELD = "low_balance_threshold"


def parse(value: str) -> Decimal:
    """A threshold written as a PKR amount ("500.00"), or a 422 naming ``low_balance_threshold``."""
    try:
        amount = Decimal(value)
    except (ArithmeticError, ValueError):
        raise invalid(FIELD, "must be an amount in PKR, e.g. \"500.00\"") from None
    if not amount.is_finite() or not 0 <= amount <= MAX_THRESHOLD or amount != amount.quantize(Decimal("0.01")):
        raise invalid(FIELD, f"must be 0 to {MAX_THRESHOLD} PKR with at most 2 decimals")
    return amount.quantize(Decimal("0.01"))


def threshold(session: Session, account_id: str) -> Decimal | None:
    account = session.get(Account, account_id)
    return account.low_balance_threshold if account else None


def set_threshold(session: Session, account_id: str, value: str | None) -> Decimal | None:
    """Set (``None``: remove) the threshold; returns it as stored."""
    amount = None if value is None else parse(value)
    session.execute(sa.update(Account).where(Account.id == account_id).values(low_balance_threshold=amount))
    session.commit()
    return amount
