"""/dnc: the account's do-not-call list (checked at import and again at dial time)."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
import sqlalchemy as sa
from flask_smorest import Blueprint
from sqlalchemy.dialects import mysql, sqlite

from api.auth import current, require_auth
from api.context import db
from api.errors import ApiError, not_found, validation_error
from api.pagination import PageArgs, envelope_schema, paginate
from campaigns.csv_reader import CsvError, read_phone_numbers
from core.db import utcnow
from core.models import DncNumber
from core.phone import InvalidPhoneNumber, normalize_pk

blp = Blueprint("dnc", __name__, url_prefix="/api/v1/dnc", description="Do-not-call list")

MAX_BULK_ROWS = 1_000_000
MAX_REPORTED_INVALID = 100


class DncSchema(ma.Schema):
    phone_number = ma.fields.String()
    reason = ma.fields.String(allow_none=True)
    created_at = ma.fields.AwareDateTime()


class NewDncArgs(ma.Schema):
    phone_number = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=40))
    reason = ma.fields.String(validate=ma.validate.Length(max=200))


class DncFilter(PageArgs):
    phone_number = ma.fields.String()


class BulkUpload(ma.Schema):
    csv_file = ma.fields.Raw(required=True, metadata={"type": "string", "format": "binary"})


class BulkResultSchema(ma.Schema):
    rows = ma.fields.Integer()
    added = ma.fields.Integer()
    already_listed = ma.fields.Integer()
    invalid = ma.fields.Integer()
    invalid_rows = ma.fields.List(ma.fields.Dict(), metadata={"description": "the first 100 refused rows"})


def _normalize(field: str, raw: str) -> str:
    try:
        return normalize_pk(raw)
    except InvalidPhoneNumber as exc:
        raise validation_error(field, f"Not a valid Pakistani phone number ({exc.reason}).") from None


def insert_ignoring_duplicates(rows: list[dict[str, Any]]) -> int:
    """Add DNC rows; numbers already listed are skipped. Returns how many were added."""
    if not rows:
        return 0
    session = db()
    dialect = session.get_bind().dialect.name
    table = DncNumber.__table__
    stmt: Any
    if dialect == "sqlite":
        stmt = sqlite.insert(table).on_conflict_do_nothing()
    elif dialect in ("mysql", "mariadb"):
        stmt = mysql.insert(table).prefix_with("IGNORE")
    else:
        stmt = sa.insert(table)
    return int(session.execute(stmt, rows).rowcount or 0)


@blp.route("", methods=["POST"])
@require_auth
@blp.arguments(NewDncArgs)
@blp.response(201, DncSchema)
@blp.alt_response(200, schema=DncSchema, description="The number was already listed")
def add(body: dict[str, Any]) -> Any:
    """Add a number (any Pakistani form) to the do-not-call list."""
    phone = _normalize("phone_number", body["phone_number"])
    session = db()
    added = insert_ignoring_duplicates([{"account_id": current().account_id, "phone_number": phone,
                                         "reason": body.get("reason"), "created_at": utcnow()}])
    session.commit()
    row = session.execute(sa.select(DncNumber).where(DncNumber.account_id == current().account_id,
                                                     DncNumber.phone_number == phone)).scalar_one()
    return (row, 201) if added else (row, 200)


@blp.route("", methods=["GET"])
@require_auth
@blp.arguments(DncFilter, location="query")
@blp.response(200, envelope_schema(DncSchema, "DncPage"))
def list_dnc(args: dict[str, Any]) -> dict[str, Any]:
    """The do-not-call list, newest first."""
    query = sa.select(DncNumber).where(DncNumber.account_id == current().account_id)
    if "phone_number" in args:
        query = query.where(DncNumber.phone_number == _normalize("phone_number", args["phone_number"]))
    items, meta = paginate(db(), query.order_by(DncNumber.id.desc()), args["page"], args["per_page"])
    return {"data": items, "pagination": meta}


@blp.route("/<string:phone_number>", methods=["DELETE"])
@require_auth
@blp.response(204)
def remove(phone_number: str) -> None:
    """Remove a number from the list (future calls to it are allowed again)."""
    phone = _normalize("phone_number", phone_number)
    session = db()
    done = session.execute(sa.delete(DncNumber).where(DncNumber.account_id == current().account_id,
                                                      DncNumber.phone_number == phone)).rowcount
    session.commit()
    if not done:
        raise not_found("Do-not-call number")


@blp.route("/bulk", methods=["POST"])
@require_auth
@blp.arguments(BulkUpload, location="files")
@blp.response(200, BulkResultSchema)
def bulk(files: dict[str, Any]) -> dict[str, Any]:
    """Upload a CSV of numbers to add (same CSV rules as campaigns)."""
    now = utcnow()
    account_id = current().account_id
    total = added = invalid = 0
    invalid_rows: list[dict[str, Any]] = []
    batch: list[dict[str, Any]] = []
    try:
        for line_no, raw in read_phone_numbers(files["csv_file"].stream, max_rows=MAX_BULK_ROWS):
            total += 1
            if total > MAX_BULK_ROWS:
                raise ApiError(413, "TOO_MANY_ROWS", f"At most {MAX_BULK_ROWS} rows per upload.")
            try:
                batch.append({"account_id": account_id, "phone_number": normalize_pk(raw), "reason": "bulk upload",
                              "created_at": now})
            except InvalidPhoneNumber as exc:
                invalid += 1
                if len(invalid_rows) < MAX_REPORTED_INVALID:
                    invalid_rows.append({"line": line_no, "value": raw[:100], "reason": exc.reason})
            if len(batch) >= 2000:
                added += insert_ignoring_duplicates(batch)
                batch.clear()
        added += insert_ignoring_duplicates(batch)
    except CsvError as exc:
        db().rollback()
        raise ApiError(422, exc.code, exc.message, {"csv_file": [exc.message]}) from None
    db().commit()
    return {"rows": total, "added": added, "already_listed": total - invalid - added, "invalid": invalid,
            "invalid_rows": invalid_rows}
