"""Accounts, their users and API keys: the service the API and the operator commands both call
(creating accounts, users and keys, changing an account's rate and limits, setting passwords)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from billing import ledger
from billing.rating import money_str
from core import refresh_tokens
from core.credentials import generate_api_key, hash_password, password_problem, verify_password
from core.db import utcnow
from core.models import Account, ApiKey, LedgerEntry, RefreshFamily, User, new_id
from core.names import name_problem
from core.settings import Settings
from services.errors import Refused
from services.tenancy import owned


class AccountError(ValueError):
    """Refused input; ``code`` is the error code the API and the CLI answer with."""

    def __init__(self, message: str, code: str = "INVALID_ACCOUNT") -> None:
        super().__init__(message)
        self.code = code


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
    check_password(password)
    if balance < 0:
        raise AccountError("the opening balance cannot be negative")
    if session.execute(sa.select(User.id).where(User.email == email)).first():
        raise AccountError(f"a user with email {email} already exists")
    if (rate_per_minute is not None and rate_per_minute <= 0) or (pulse_seconds is not None and pulse_seconds <= 0):
        raise AccountError("the rate and the pulse must be positive")
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
    session.add(user)
    api_key, key = create_api_key(session, account.id, "default")
    if balance > 0:
        ledger.credit(session, account.id, balance, description="opening balance")
    session.commit()
    return CreatedAccount(account=account, user=user, api_key=key, api_key_id=api_key.id)


def create_api_key(session: Session, account_id: str, name: str) -> tuple[ApiKey, str]:
    """A new key row (flushed, not committed); returns it with the full key, which is never stored.
    Raises AccountError for a name people could not read (``core.names``) or over 100 characters."""
    problem = name_problem(name)
    if problem is not None or len(name) > 100:
        raise AccountError(f"the key name {problem or 'must be at most 100 characters'}")
    key, prefix, key_hash = generate_api_key()
    row = ApiKey(account_id=account_id, name=name, prefix=prefix, key_hash=key_hash)
    session.add(row)
    session.flush()
    return row, key


def create_user(session: Session, account_id: str, email: str, password: str) -> User:
    """Another user (email + password login) of an existing account. Commits."""
    email = email.strip().lower()
    if "@" not in email or len(email) > 254:
        raise AccountError(f"not an email address: {email!r}")
    check_password(password)
    if session.execute(sa.select(User.id).where(User.email == email)).first():
        raise AccountError(f"a user with email {email} already exists")
    user = User(account_id=account_id, email=email, password_hash=hash_password(password))
    session.add(user)
    session.commit()
    return user


def set_terms(session: Session, account: Account, *, rate_per_minute: Decimal | None = None,
              pulse_seconds: int | None = None, max_concurrent_calls: int | None = None) -> Account:
    """Change an account's rate, pulse or concurrent-call limit. Commits. Zero or negative values
    are refused (a call is never free and never pays the customer). Calls already placed keep the
    rate they were reserved at."""
    if rate_per_minute is not None and rate_per_minute <= 0:
        raise AccountError("the rate must be positive", "INVALID_RATE")
    if pulse_seconds is not None and pulse_seconds <= 0:
        raise AccountError("the pulse must be positive", "INVALID_PULSE")
    if max_concurrent_calls is not None and max_concurrent_calls <= 0:
        raise AccountError("the concurrent-call limit must be positive", "INVALID_LIMIT")
    if rate_per_minute is not None:
        account.rate_per_minute = rate_per_minute
    if pulse_seconds is not None:
        account.pulse_seconds = pulse_seconds
    if max_concurrent_calls is not None:
        account.max_concurrent_calls = max_concurrent_calls
    session.commit()
    return account


def check_password(password: str) -> None:
    """Raise AccountError when ``password`` breaks the password rule."""
    problem = password_problem(password)
    if problem is not None:
        raise AccountError(problem)


def set_password(session: Session, user: User, new_password: str) -> None:
    """Set a user's password and revoke every token issued before it. Does not commit.

    Access tokens carry the user's token generation, which goes up by one (checked on each
    request); every refresh-token family of the user is revoked.
    """
    check_password(new_password)
    user.password_hash = hash_password(new_password)
    user.token_generation = User.token_generation + 1  # in SQL: two changes at once both count
    session.flush()
    refresh_tokens.revoke_all(session, user.id)


def own_key(session: Session, account_id: str, key_id: str) -> ApiKey:
    return owned(session, ApiKey, account_id, key_id, "API key")


def keys_query(account_id: str) -> sa.Select[Any]:
    """The account's API keys, newest first (never the keys themselves)."""
    return sa.select(ApiKey).where(ApiKey.account_id == account_id).order_by(ApiKey.created_at.desc(), ApiKey.id)


def revoke_key(session: Session, account_id: str, key_id: str) -> ApiKey:
    """Revoke the account's key (again: no change). Commits. The web processes' key caches
    forget it (``api.key_cache``): the caller tells its own."""
    row = own_key(session, account_id, key_id)
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        session.commit()
    return row


def balance(session: Session, account_id: str) -> dict[str, Any]:
    """Balance, the amount reserved for calls in progress, what is available, and the rate."""
    account = session.get(Account, account_id)
    assert account is not None
    return {
        "account_id": account.id,
        "balance": account.balance,
        "reserved": account.reserved,
        "available": account.available,
        "currency": account.currency,
        "rate": {
            "per_minute": account.rate_per_minute,
            "pulse_seconds": account.pulse_seconds,
            "description": f"PKR {money_str(account.rate_per_minute)} per minute, billed per "
                           f"{account.pulse_seconds}-second pulse of answered time",
        },
        "max_concurrent_calls": account.max_concurrent_calls,
    }


def ledger_query(account_id: str, kind: str | None = None, call_id: str | None = None) -> sa.Select[Any]:
    """The append-only ledger, newest first. The balance is the sum of ``amount``."""
    query = sa.select(LedgerEntry).where(LedgerEntry.account_id == account_id)
    if kind is not None:
        query = query.where(LedgerEntry.kind == kind)
    if call_id is not None:
        query = query.where(LedgerEntry.call_id == call_id)
    return query.order_by(LedgerEntry.id.desc())


def authenticate(session: Session, email: str, password: str) -> User:
    """The active user with this email and password, its login time noted (not committed); 401
    ``INVALID_CREDENTIALS`` (the same answer for an unknown email, which costs the same hash
    check) or ``ACCOUNT_DISABLED``."""
    user = session.execute(sa.select(User).where(User.email == email.strip().lower())).scalar_one_or_none()
    ok = verify_password(user.password_hash if user else None, password)
    if not ok or user is None or not user.active:
        raise Refused(401, "INVALID_CREDENTIALS", "Email or password is incorrect.")
    account = session.get(Account, user.account_id)
    if account is None or not account.active:
        raise Refused(401, "ACCOUNT_DISABLED", "This account is disabled.")
    user.last_login_at = utcnow()
    return user


def change_password(session: Session, user_id: str, current_password: str, new_password: str) -> User:
    """A user changes their password: 401 ``INVALID_CREDENTIALS`` when ``current_password`` is
    wrong; then ``set_password`` (every token issued before is revoked). Commits."""
    user = session.get(User, user_id)
    if user is None or not verify_password(user.password_hash, current_password):
        raise Refused(401, "INVALID_CREDENTIALS", "The current password is incorrect.")
    set_password(session, user, new_password)
    session.commit()
    return user


def start_sign_in(session: Session, user: User, hours: int) -> str:
    """A console sign-in of ``user`` for ``hours``: a login family of its own (``core.refresh_tokens``),
    so a password change ends it with the user's tokens. Returns its id. Commits."""
    refresh_tokens.forget_expired(session, user.id)
    family_id = refresh_tokens.start(session, user.id, new_id(), utcnow() + timedelta(hours=hours))
    session.commit()
    return family_id


def signed_in_user(session: Session, user_id: str, sign_in_id: str, generation: int) -> User | None:
    """The user of a live console sign-in: None once it was ended (sign-out, password change),
    expired, or the user or the account was disabled."""
    family = session.get(RefreshFamily, sign_in_id)
    if family is None or family.user_id != user_id or family.revoked_at is not None or family.expires_at <= utcnow():
        return None
    user = session.get(User, user_id)
    if user is None or not user.active or user.token_generation != generation:
        return None
    account = session.get(Account, user.account_id)
    return user if account is not None and account.active else None


def end_sign_in(session: Session, sign_in_id: str) -> None:
    """Sign out: the sign-in ends at once, on every copy of its cookie. Commits."""
    refresh_tokens.revoke(session, sign_in_id, refresh_tokens.SIGN_OUT)
    session.commit()
