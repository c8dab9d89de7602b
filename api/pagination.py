"""``page`` / ``per_page`` query arguments and the list envelope the API answers with."""

from __future__ import annotations

import marshmallow as ma

from services.pages import paginate

__all__ = ["MAX_PER_PAGE", "PageArgs", "PaginationSchema", "envelope_schema", "paginate"]

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
