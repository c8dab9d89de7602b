"""Refresh-token families: single-use refresh tokens with reuse detection, kept in SQL.

A login starts a family; each of its refresh tokens names the family (``fam``) and has an
id of its own (``jti``). A refresh swaps the family's ``current_jti`` for the new token's in
one conditional UPDATE, so of two refreshes with one token exactly one wins. A token of the
family that is no longer the current one was used before: somebody holds a copy, so the
whole family is revoked and its holder has to log in again (refresh-token reuse detection).
A password change revokes every family of the user.

Functions flush or execute; the caller commits.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from core.db import utcnow
from core.models import RefreshFamily

REUSE = "reuse"
PASSWORD_CHANGE = "password_change"
SIGN_OUT = "sign_out"


def start(session: Session, user_id: str, jti: str, expires_at: datetime) -> str:
    """A new family whose current token is ``jti``; returns the family's id."""
    family = RefreshFamily(user_id=user_id, current_jti=jti, expires_at=expires_at)
    session.add(family)
    session.flush()
    return family.id


def rotate(session: Session, family_id: str, user_id: str, used_jti: str, new_jti: str,
           expires_at: datetime) -> bool:
    """Replace the family's current token ``used_jti`` by ``new_jti``.

    False when ``used_jti`` is not the current token of a live family of this user: then
    the family (if it exists) is revoked, since its tokens have been copied.
    """
    rotated = session.execute(
        sa.update(RefreshFamily)
        .where(RefreshFamily.id == family_id, RefreshFamily.user_id == user_id,
               RefreshFamily.current_jti == used_jti, RefreshFamily.revoked_at.is_(None))
        .values(current_jti=new_jti, rotated_at=utcnow(), expires_at=expires_at)
    ).rowcount
    if rotated == 1:
        return True
    _revoke(session, RefreshFamily.id == family_id, REUSE)
    return False


def revoke(session: Session, family_id: str, reason: str) -> int:
    """Revoke one family (a sign-out); returns 1 when it was live."""
    return _revoke(session, RefreshFamily.id == family_id, reason)


def revoke_all(session: Session, user_id: str, reason: str = PASSWORD_CHANGE) -> int:
    """Revoke every live family of a user; returns how many."""
    return _revoke(session, RefreshFamily.user_id == user_id, reason)


def forget_expired(session: Session, user_id: str) -> int:
    """Delete a user's families whose newest token has expired (nothing can use them any more)."""
    return session.execute(
        sa.delete(RefreshFamily).where(RefreshFamily.user_id == user_id, RefreshFamily.expires_at < utcnow())
    ).rowcount


def _revoke(session: Session, which: sa.ColumnElement[bool], reason: str) -> int:
    return session.execute(
        sa.update(RefreshFamily).where(which, RefreshFamily.revoked_at.is_(None))
        .values(revoked_at=utcnow(), revoked_reason=reason)
    ).rowcount
