"""/dnc: the account's do-not-call list (checked at import and again at dial time), and its bulk
uploads, which the worker imports (``campaigns.dnc_importer``): a request never parses a whole file."""

from __future__ import annotations

import json
from typing import Any

import marshmallow as ma
import sqlalchemy as sa
from flask import url_for
from flask_smorest import Blueprint

from api.auth import current, require_auth
from api.context import db, services
from api.errors import ApiError, not_found, validation_error
from api.limits import CREATE, route_limit
from api.pagination import PageArgs, envelope_schema, paginate
from api.schemas import EnumValue
from api.uploads import checked_head, display_filename, save_upload, upload_guard
from campaigns.dnc_importer import dnc_upload_path, enqueue_dnc_import, insert_dnc_numbers
from core.db import utcnow
from core.models import DncImport, DncNumber
from core.phone import InvalidPhoneNumber, normalize_pk
from core.states import ImportStatus

blp = Blueprint("dnc", __name__, url_prefix="/api/v1/dnc", description="Do-not-call list")


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


class ImportErrorSchema(ma.Schema):
    code = ma.fields.String()
    message = ma.fields.String()
    line = ma.fields.Integer(allow_none=True)


class DncImportSchema(ma.Schema):
    id = ma.fields.String()
    status = EnumValue(metadata={"enum": [s.value for s in ImportStatus]})
    filename = ma.fields.String(allow_none=True)
    size_bytes = ma.fields.Integer()
    progress_percent = ma.fields.Integer()
    rows = ma.fields.Integer(attribute="rows_total", metadata={"description": "data rows read so far"})
    added = ma.fields.Integer(attribute="rows_added")
    already_listed = ma.fields.Method("_already_listed", metadata={"type": "integer"})
    invalid = ma.fields.Integer(attribute="rows_invalid")
    invalid_rows = ma.fields.Method("_invalid_rows", metadata={
        "type": "array", "items": {"type": "object"},
        "description": "the first 100 refused rows: line, value, reason (once COMPLETED)"})
    error = ma.fields.Method("_error", allow_none=True, metadata={"type": "object", "nullable": True,
                                                                   "description": "code, message, line (FAILED)"})
    created_at = ma.fields.AwareDateTime()
    started_at = ma.fields.AwareDateTime(allow_none=True)
    finished_at = ma.fields.AwareDateTime(allow_none=True)

    def _already_listed(self, obj: DncImport) -> int:
        return max(0, obj.rows_total - obj.rows_invalid - obj.rows_added)

    def _invalid_rows(self, obj: DncImport) -> list[dict[str, Any]]:
        return json.loads(obj.invalid_rows) if obj.invalid_rows else []

    def _error(self, obj: DncImport) -> dict[str, Any] | None:
        if obj.error_code is None:
            return None
        return ImportErrorSchema().dump(  # type: ignore[no-any-return]
            {"code": obj.error_code, "message": obj.error_message, "line": obj.error_line})


def _normalize(field: str, raw: str) -> str:
    try:
        return normalize_pk(raw)
    except InvalidPhoneNumber as exc:
        raise validation_error(field, f"Not a valid Pakistani phone number ({exc.reason}).") from None


def _own_import(import_id: str) -> DncImport:
    row = db().get(DncImport, import_id)
    if row is None or row.account_id != current().account_id:
        raise not_found("Do-not-call import")
    return row


@blp.route("", methods=["POST"])
@require_auth
@blp.arguments(NewDncArgs)
@blp.response(201, DncSchema)
@blp.alt_response(200, schema=DncSchema, description="The number was already listed")
def add(body: dict[str, Any]) -> Any:
    """Add a number (any Pakistani form) to the do-not-call list."""
    phone = _normalize("phone_number", body["phone_number"])
    session = db()
    added = insert_dnc_numbers(session, session.get_bind().dialect.name,
                               [{"account_id": current().account_id, "phone_number": phone,
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
@route_limit(CREATE)
@upload_guard
@blp.arguments(BulkUpload, location="files")
@blp.response(202, DncImportSchema, description="Accepted: the worker imports the file; follow `Location`")
def bulk(files: dict[str, Any]) -> Any:
    """Upload a CSV of numbers to add (same CSV rules as campaigns). The file is checked at once
    (encoding, binary content, a phone column: 422) and stored; the worker adds the numbers.
    `GET /dnc/imports/{id}` (the `Location`) shows the progress, then `rows`, `added`,
    `already_listed`, `invalid` and the first 100 `invalid_rows`."""
    settings = services().settings
    upload = files["csv_file"]
    filename = display_filename(upload, "csv_file", "upload.csv")
    head = checked_head(upload, "csv_file")
    session = db()
    row = DncImport(account_id=current().account_id, status=ImportStatus.QUEUED, filename=filename)
    session.add(row)
    session.flush()
    row.size_bytes = save_upload(session, head, upload, dnc_upload_path(settings, row.id), settings.max_csv_bytes,
                                 "csv_file")
    session.commit()
    try:
        enqueue_dnc_import(services().work_queue, row.id)
    except Exception:  # Redis down: nothing would import it; say so instead of leaving it queued
        row.status = ImportStatus.FAILED
        row.error_code, row.error_message = "QUEUE_UNAVAILABLE", "the import queue is unavailable; upload again"
        session.commit()
        dnc_upload_path(settings, row.id).unlink(missing_ok=True)
        raise ApiError(503, "SERVICE_UNAVAILABLE", "The import queue is unavailable. Try again shortly.") from None
    return row, 202, {"Location": url_for("dnc.get_import", import_id=row.id)}


@blp.route("/imports", methods=["GET"])
@require_auth
@blp.arguments(PageArgs, location="query")
@blp.response(200, envelope_schema(DncImportSchema, "DncImportPage"))
def list_imports(args: dict[str, Any]) -> dict[str, Any]:
    """The account's do-not-call uploads, newest first."""
    query = sa.select(DncImport).where(DncImport.account_id == current().account_id)
    items, meta = paginate(db(), query.order_by(DncImport.created_at.desc(), DncImport.id), args["page"],
                           args["per_page"])
    return {"data": items, "pagination": meta}


@blp.route("/imports/<string:import_id>", methods=["GET"])
@require_auth
@blp.response(200, DncImportSchema)
def get_import(import_id: str) -> DncImport:
    """One upload: `status` (QUEUED, RUNNING, COMPLETED, FAILED), `progress_percent`, the counts, and
    `error` when the file was refused."""
    return _own_import(import_id)
