"""One page of a list query and the figures of the whole (what the API's envelope and the
console's pagers show)."""

from __future__ import annotations

import math
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session


def paginate(session: Session, query: sa.Select[Any], page: int, per_page: int) -> tuple[list[Any], dict[str, Any]]:
    """Run one page of ``query`` (already ordered) and count the whole."""
    total = session.execute(sa.select(sa.func.count()).select_from(query.order_by(None).subquery())).scalar_one()
    items = list(session.execute(query.limit(per_page).offset((page - 1) * per_page)).scalars())
    pages = math.ceil(total / per_page) if total else 0
    meta = {
        "page": page,
        "per_page": per_page,
        "total": total,
        "total_pages": pages,
        "has_next": page < pages,
        "has_prev": page > 1,
    }
    return items, meta
