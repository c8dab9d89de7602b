"""Webhook secrets and the ``ZensCall-Signature`` header.

``ZensCall-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">``, keyed with the
whole secret string (``whsec_...``) as UTF-8. While a rotated secret is still valid (24 h) a
second ``v1=`` signed with it follows, so receivers may switch over at their own pace.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta

PREFIX = "whsec_"
ROTATION_OVERLAP = timedelta(hours=24)  # the previous secret still signs this long


def new_secret() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def header(keys: Iterable[str], timestamp: int, body: bytes) -> str:
    return ",".join([f"t={timestamp}", *(f"v1={signature(k, timestamp, body)}" for k in keys)])


def signing_keys(secret: str, previous: str | None, previous_expires_at: datetime | None,
                 now: datetime) -> list[str]:
    """The secrets that sign now: the current one, and the previous one during its overlap."""
    keys = [secret]
    if previous and previous_expires_at is not None and previous_expires_at > now:
        keys.append(previous)
    return keys
