"""Creating accounts and their first user (operators do this from the command line)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.orm import Session

from billing import ledger
from core.credentials import generate_api_key, hash_password
from core.models import Account, ApiKey, User
from core.names import name_problem
from core.settings import Settings


class AccountError(ValueError):
    pass


@dataclass(frozen=True)
class CreatedAccount:
    account: Account
    user: User
    api_key: str
    api_key_id: str


def create_account(
    session: Session,
    settings: Settings,
    *,
    name: str,
    email: str,
    password: str,
    balance: Decimal = Decimal("0"),
    rate_per_minute: Decimal | None = None,
    pulse_seconds: int | None = None,
    max_concurrent_calls: int | None = None,
) -> CreatedAccount:
    """An account, its owner user and a first API key; the opening balance is a TOPUP. Commits."""
    problem = name_problem(name)
    if problem is not None or len(name) > 200:
        raise AccountError(f"the account name {problem or 'must be at most 200 characters'}")
    email = email.strip().lower()
    if "@" not in email or len(email) > 254:
        raise AccountError(f"not an email address: {email!r}")
    if len(password) < 8:
        raise AccountError("the password must have at least 8 characters")
    if balance < 0:
        raise AccountError("the opening balance cannot be negative")
    if session.execute(sa.select(User.id).where(User.email == email)).first():
        raise AccountError(f"a user with email {email} already exists")
    account = Account(
        name=name,
        balance=Decimal("0"),
        reserved=Decimal("0"),
        rate_per_minute=rate_per_minute if rate_per_minute is not None else settings.default_rate_per_minute,
        pulse_seconds=pulse_seconds or settings.default_pulse_seconds,
        max_concurrent_calls=max_concurrent_calls or settings.default_max_concurrent_calls,
    )
    session.add(account)
    session.flush()
    user = User(account_id=account.id, email=email, password_hash=hash_password(password))
    key, prefix, key_hash = generate_api_key()
    api_key = ApiKey(account_id=account.id, name="default", prefix=prefix, key_hash=key_hash)
    session.add_all([user, api_key])
    session.flush()
    if balance > 0:
        ledger.credit(session, account.id, balance, description="opening balance")
    session.commit()
    return CreatedAccount(account=account, user=user, api_key=key, api_key_id=api_key.id)
