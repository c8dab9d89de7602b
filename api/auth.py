"""Who is calling: a JWT access token or a ``zc_live_`` API key, both as ``Bearer``.

The credentials are verified at most once per request (``verified_principal``), and
the outcome is kept in ``g``: the rate limiter names its bucket from it before the view
runs, and ``require_auth`` answers from it (401 with the failure, or the ``Principal``
in ``g.principal``). Every query of a tenant's data filters on its account id, so
another account's ids answer 404.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

import jwt
import sqlalchemy as sa
from flask import current_app, g, request
from flask_jwt_extended import create_access_token, create_refresh_token, decode_token

from api.context import db, services
from api.errors import ApiError
from core import refresh_tokens
from core.credentials import LOOKUP_PREFIX_LEN, api_key_hash_matches, hash_api_key, looks_like_api_key
from core.db import utcnow
from core.models import Account, ApiKey, User, new_id

F = TypeVar("F", bound=Callable[..., Any])

# last_used_at is written at most this often per key, not on every request
LAST_USED_GRANULARITY = timedelta(seconds=60)


@dataclass(frozen=True)
class Principal:
    account_id: str
    user_id: str | None
    api_key_id: str | None

    @property
    def rate_key(self) -> str:
        return f"key:{self.api_key_id}" if self.api_key_id else f"user:{self.user_id}"


def unauthorized(message: str, code: str = "UNAUTHORIZED") -> ApiError:
    return ApiError(401, code, message, headers={"WWW-Authenticate": 'Bearer realm="zenscall"'})


def bearer_token() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _tokens(user: User, family_id: str, jti: str) -> dict[str, Any]:
    claims = {"acc": user.account_id, "gen": user.token_generation}
    return {
        "access_token": create_access_token(identity=user.id, additional_claims=claims),
        "refresh_token": create_refresh_token(identity=user.id,
                                              additional_claims={**claims, "fam": family_id, "jti": jti}),
        "token_type": "Bearer",
    }


def _refresh_expiry() -> datetime:
    return utcnow() + current_app.config["JWT_REFRESH_TOKEN_EXPIRES"]


def login_tokens(user: User) -> dict[str, Any]:
    """Tokens for a new login, whose refresh token starts a family of its own. Commits."""
    session = db()
    refresh_tokens.forget_expired(session, user.id)
    jti = new_id()
    family_id = refresh_tokens.start(session, user.id, jti, _refresh_expiry())
    session.commit()
    return _tokens(user, family_id, jti)


def rotated_tokens(token: str) -> dict[str, Any]:
    """New tokens for a refresh token, which is used up by it. Commits.

    A refresh token that was used before revokes every token of its login (its family).
    """
    claims = decode_jwt(token, "refresh")
    user = _token_user(claims)
    session = db()
    family_id, jti = str(claims.get("fam", "")), new_id()
    rotated = refresh_tokens.rotate(session, family_id, user.id, str(claims.get("jti", "")), jti, _refresh_expiry())
    session.commit()
    if not rotated:
        raise unauthorized("This refresh token has already been used or was revoked; every token of its login "
                           "is revoked now. Log in again.", "INVALID_TOKEN")
    return _tokens(user, family_id, jti)


def decode_jwt(token: str, expected_type: str) -> dict[str, Any]:
    try:
        claims = decode_token(token)
    except jwt.ExpiredSignatureError:
        raise unauthorized("The token has expired.", "TOKEN_EXPIRED") from None
    except Exception:  # any malformed, tampered or foreign token
        raise unauthorized("The token is invalid.", "INVALID_TOKEN") from None
    if claims.get("type") != expected_type:
        raise unauthorized(f"A {expected_type} token is required.", "INVALID_TOKEN")
    return claims


def _token_user(claims: dict[str, Any]) -> User:
    """The user of a verified JWT, if it is active and the token is of its current generation."""
    user = db().get(User, str(claims["sub"]))
    if user is None or not user.active:
        raise unauthorized("The token's user no longer exists or is disabled.", "INVALID_TOKEN")
    if claims.get("gen", 0) != user.token_generation:
        raise unauthorized("The token was revoked: the password changed since it was issued. Log in again.",
                           "INVALID_TOKEN")
    return user


def _user_principal(claims: dict[str, Any]) -> Principal:
    user = _token_user(claims)
    return Principal(account_id=user.account_id, user_id=user.id, api_key_id=None)


def _api_key_principal(token: str) -> Principal:
    """The account of a verified, unrevoked API key of an active account (401 / 403 otherwise).

    A key this process verified less than ``API_KEY_CACHE_SECONDS`` ago is taken from its
    cache (``api.key_cache``) without reading SQL; any other key is read with its account.
    """
    if not looks_like_api_key(token):
        raise unauthorized("The API key is invalid.", "INVALID_API_KEY")
    key_hash = hash_api_key(token)
    verified_keys = services().api_keys
    cached = verified_keys.get(key_hash)
    if cached is not None:
        cached.last_used_at = _touch(cached.api_key_id, cached.last_used_at)
        return Principal(account_id=cached.account_id, user_id=None, api_key_id=cached.api_key_id)
    session = db()
    # the key and its account in one round trip: the account is checked right after
    found = session.execute(
        sa.select(ApiKey, Account)
        .join(Account, Account.id == ApiKey.account_id)
        .where(ApiKey.prefix == token[:LOOKUP_PREFIX_LEN])
    ).one_or_none()
    key, account = found if found is not None else (None, None)
    if key is None or not api_key_hash_matches(key_hash, key.key_hash):
        raise unauthorized("The API key is invalid.", "INVALID_API_KEY")
    g.account = account  # only once verified: a forged key names another account's row
    if key.revoked_at is not None:
        raise unauthorized("The API key has been revoked.", "API_KEY_REVOKED")
    _check_active(account)
    last_used_at = _touch(key.id, key.last_used_at)
    verified_keys.put(key_hash, key.id, key.account_id, last_used_at)
    return Principal(account_id=key.account_id, user_id=None, api_key_id=key.id)


def _touch(api_key_id: str, last_used_at: datetime | None) -> datetime | None:
    """Record the key's use, at most once per ``LAST_USED_GRANULARITY``; the time now recorded."""
    now = utcnow()
    if last_used_at is not None and now - last_used_at <= LAST_USED_GRANULARITY:
        return last_used_at
    session = db()
    session.execute(sa.update(ApiKey).where(ApiKey.id == api_key_id).values(last_used_at=now))
    session.commit()
    return now


def _check_active(account: Account | None) -> None:
    if account is None or not account.active:
        raise ApiError(403, "ACCOUNT_DISABLED", "This account is disabled.")


def _verify() -> Principal:
    token = bearer_token()
    if token is None:
        raise unauthorized("Send 'Authorization: Bearer <JWT or API key>'.")
    if token.startswith("zc_"):
        principal = _api_key_principal(token)
    else:
        principal = _user_principal(decode_jwt(token, "access"))
        # Kept in ``g`` for the whole request: the session's identity map holds objects weakly,
        # so a later ``get`` of the same account is answered without another SELECT.
        g.account = db().get(Account, principal.account_id)
        _check_active(g.account)
    g.principal = principal
    return principal


_OUTCOME = "auth_outcome"  # g: the request's Principal, or the exception its credentials raised


def verified_principal() -> Principal | None:
    """The caller, once its credentials verified; None when there are none or they failed.

    Never raises (the rate limiter calls it to name its bucket, and a failing key function
    would be taken for a dead limiter storage); the failure is kept for ``authenticate``.
    """
    outcome = g.get(_OUTCOME)
    if outcome is None:
        try:
            outcome = _verify()
        except Exception as exc:  # noqa: BLE001 - raised again by authenticate()
            outcome = exc
        setattr(g, _OUTCOME, outcome)
    return outcome if isinstance(outcome, Principal) else None


def authenticate() -> Principal:
    """The caller, or the 401/403 (or unexpected error) its credentials gave."""
    principal = verified_principal()
    if principal is None:
        raise g.get(_OUTCOME)
    return principal


def require_auth(view: F) -> F:
    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        authenticate()
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def current() -> Principal:
    return g.principal  # type: ignore[no-any-return]
