"""Tenants are isolated: a row of another account answers exactly as a missing one (404)."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy.orm import Session

from services.errors import not_found

T = TypeVar("T")


def owned(session: Session, model: type[T], account_id: str, row_id: str, what: str) -> T:
    """The account's ``model`` row ``row_id``; 404 ``what`` not found for any other."""
    row: Any = session.get(model, row_id)
    if row is None or row.account_id != account_id:
        raise not_found(what)
    return row  # type: ignore[no-any-return]
