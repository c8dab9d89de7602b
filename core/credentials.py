"""Passwords (argon2id, and the one rule every way of setting one applies) and API keys
(``zc_live_`` + 40 random base62 characters).

An API key is shown once; only its SHA-256 and a visible prefix are stored. The key
carries 238 bits of randomness, so a fast hash is the right tool (a slow password
hash would only make every API request slower).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

API_KEY_PREFIX = "zc_live_"
API_KEY_RANDOM_LEN = 40
LOOKUP_PREFIX_LEN = len(API_KEY_PREFIX) + 8  # "zc_live_" + 8 characters shown in listings
_ALPHABET = string.ascii_letters + string.digits
_hasher = PasswordHasher()
# verified against when the email is unknown, so both paths cost the same
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024  # argon2 hashes whatever it is given: a bound keeps one request cheap


def password_problem(password: str) -> str | None:
    """Why ``password`` cannot be set (the API, account creation and the CLI share this), or None."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"the password must have at least {MIN_PASSWORD_LENGTH} characters"
    if len(password) > MAX_PASSWORD_LENGTH:
        return f"the password must have at most {MAX_PASSWORD_LENGTH} characters"
    return None


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def generate_api_key() -> tuple[str, str, str]:
    """A new key: (the full key to show once, its lookup prefix, its hash)."""
    key = API_KEY_PREFIX + "".join(secrets.choice(_ALPHABET) for _ in range(API_KEY_RANDOM_LEN))
    return key, key[:LOOKUP_PREFIX_LEN], hash_api_key(key)


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def api_key_hash_matches(key_hash: str, stored_hash: str) -> bool:
    """``key_hash`` (``hash_api_key`` of the key sent) is the stored one (constant time)."""
    return hmac.compare_digest(key_hash, stored_hash)


def looks_like_api_key(token: str) -> bool:
    return (
        token.startswith(API_KEY_PREFIX)
        and len(token) == len(API_KEY_PREFIX) + API_KEY_RANDOM_LEN
        and all(c in _ALPHABET for c in token[len(API_KEY_PREFIX):])
    )
