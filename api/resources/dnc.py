"""/dnc: the account's do-not-call list (checked at import and again at dial time), and its bulk
uploads, which the worker imports (``campaigns.dnc_importer``): a request never parses a whole file."""

from __future__ import annotations

import json
from typing import Any

import marshmallow as ma
from flask import url_for
from flask_smorest import Blueprint

from api.auth import current, require_auth
from api.context import db, services
from api.errors import validation_error
from api.limits import CREATE, route_limit
from api.pagination import PageArgs, envelope_schema, paginate
from api.schemas import EnumValue, PhoneNumber, e164
from api.uploads import upload_guard
from core.models import DncImport
from core.states import ImportStatus
from services import dnc as dnc_service
from services.uploads import checked_head, display_filename

blp = Blueprint("dnc", __name__, url_prefix="/api/v1/dnc", description="Do-not-call list")


class DncSchema(ma.Schema):
    phone_number = ma.fields.String()
    reason = ma.fields.String(allow_none=True)
    created_at = ma.fields.AwareDateTime()


class NewDncArgs(ma.Schema):
    phone_number = PhoneNumber(required=True)
    reason = ma.fields.String(validate=ma.validate.Length(max=200))


class DncFilter(PageArgs):
    phone_number = PhoneNumber()


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


@blp.route("", methods=["POST"])
@require_auth
@blp.arguments(NewDncArgs)
@blp.response(201, DncSchema)
@blp.alt_response(200, schema=DncSchema, description="The number was already listed")
def add(body: dict[str, Any]) -> Any:
    """Add a number (any Pakistani form) to the do-not-call list."""
    row, added = dnc_service.add(db(), current().account_id, body["phone_number"], body.get("reason"))
    return (row, 201) if added else (row, 200)


@blp.route("", methods=["GET"])
@require_auth
@blp.arguments(DncFilter, location="query")
@blp.response(200, envelope_schema(DncSchema, "DncPage"))
def list_dnc(args: dict[str, Any]) -> dict[str, Any]:
    """The do-not-call list, newest first."""
    query = dnc_service.list_query(current().account_id, args.get("phone_number"))
    items, meta = paginate(db(), query, args["page"], args["per_page"])
    return {"data": items, "pagination": meta}


@blp.route("/<string:phone_number>", methods=["DELETE"])
@require_auth
@blp.response(204)
def remove(phone_number: str) -> None:
    """Remove a number from the list (future calls to it are allowed again)."""
    try:
        phone = e164(phone_number)
    except ma.ValidationError as exc:
        raise validation_error("phone_number", str(exc.messages[0])) from None
    dnc_service.remove(db(), current().account_id, phone)


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
    upload = files["csv_file"]
    filename = display_filename(upload.filename, "csv_file", "upload.csv")
    head = checked_head(upload.stream, "csv_file")
    row = dnc_service.start_import(db(), services().settings, services().work_queue, current().account_id,
                                   filename, head, upload.stream)
    return row, 202, {"Location": url_for("dnc.get_import", import_id=row.id)}


@blp.route("/imports", methods=["GET"])
@require_auth
@blp.arguments(PageArgs, location="query")
@blp.response(200, envelope_schema(DncImportSchema, "DncImportPage"))
def list_imports(args: dict[str, Any]) -> dict[str, Any]:
    """The account's do-not-call uploads, newest first."""
    items, meta = paginate(db(), dnc_service.imports_query(current().account_id), args["page"], args["per_page"])
    return {"data": items, "pagination": meta}


@blp.route("/imports/<string:import_id>", methods=["GET"])
@require_auth
@blp.response(200, DncImportSchema)
def get_import(import_id: str) -> DncImport:
    """One upload: `status` (QUEUED, RUNNING, COMPLETED, FAILED), `progress_percent`, the counts, and
    `error` when the file was refused."""
    return dnc_service.own_import(db(), current().account_id, import_id)
