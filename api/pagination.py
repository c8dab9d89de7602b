"""``page`` / ``per_page`` query arguments and the list envelope the API answers with."""

from __future__ import annotations

import math
from typing import Any

import marshmallow as ma
import sqlalchemy as sa
from sqlalchemy.orm import Session

MAX_PER_PAGE = 100


class PageArgs(ma.Schema):
    page = ma.fields.Integer(load_default=1, validate=ma.validate.Range(min=1, max=1_000_000))
    per_page = ma.fields.Integer(load_default=20, validate=ma.validate.Range(min=1, max=MAX_PER_PAGE))


class PaginationSchema(ma.Schema):
    page = ma.fields.Integer()
    per_page = ma.fields.Integer()
    total = ma.fields.Integer()
    total_pages = ma.fields.Integer()
    has_next = ma.fields.Boolean()
    has_prev = ma.fields.Boolean()


def envelope_schema(item_schema: type[ma.Schema], name: str) -> type[ma.Schema]:
    """A ``{"data": [...], "pagination": {...}}`` schema for the OpenAPI document."""
    return ma.Schema.from_dict(
        {"data": ma.fields.List(ma.fields.Nested(item_schema)), "pagination": ma.fields.Nested(PaginationSchema)},
        name=name,
    )


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
