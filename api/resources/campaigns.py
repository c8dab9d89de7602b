"""/campaigns: create from a CSV upload, list, status and statistics, pause / resume /
cancel, the campaign's calls, a per-number report and the rejected rows as CSV."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import marshmallow as ma
import sqlalchemy as sa
from flask import Response, stream_with_context
from flask_smorest import Blueprint

from api.auth import current, require_auth
from api.context import db, services
from api.errors import ApiError, not_found, validation_error
from api.limits import CREATE, route_limit
from api.pagination import PageArgs, envelope_schema, paginate
from api.resources.audio import own_ready_audio
from api.resources.webhooks import checked_url
from api.schemas import CALLER_ID, TIME_OF_DAY, CallSchema, DisplayName
from api.uploads import checked_head, display_filename, save_upload, upload_guard
from billing.rating import money_str
from campaigns.importer import enqueue_import, upload_path
from core import campaigns as lifecycle
from core.call_states import CallStatus
from core.campaign_states import CampaignStatus
from core.db import utcnow
from core.models import Call, Campaign, CampaignRejectedRow
from core.phone import InvalidPhoneNumber, normalize_pk
from core.spreadsheet import csv_chunks
from core.window import Window
from services.representations import CampaignSchema, StatsSchema

blp = Blueprint("campaigns", __name__, url_prefix="/api/v1/campaigns", description="Campaigns (CSV broadcasts)")



class NewCampaignForm(ma.Schema):
    name = DisplayName(required=True, max_length=200)
    audio_id = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=64))
    max_retries = ma.fields.Integer(load_default=0, validate=ma.validate.Range(min=0, max=10))
    concurrent_limit = ma.fields.Integer(load_default=10, validate=ma.validate.Range(min=1, max=1000))
    retry_delay_seconds = ma.fields.Integer(load_default=300, validate=ma.validate.Range(min=30, max=86_400))
    caller_id = ma.fields.String(validate=CALLER_ID)
    status_callback = ma.fields.String(metadata={
        "description": "a URL that also receives the campaign's and its calls' events, signed with the account's "
                       "signing secret"})
    start_at = ma.fields.AwareDateTime(metadata={"description": "ISO 8601 with a zone; dialing starts then"})
    window_start = ma.fields.String(load_default="09:00", validate=TIME_OF_DAY,
                                    metadata={"description": "daily calling window start, Asia/Karachi"})
    window_end = ma.fields.String(load_default="21:00", validate=TIME_OF_DAY,
                                  metadata={"description": "daily calling window end, Asia/Karachi"})


class CsvUpload(ma.Schema):
    csv_file = ma.fields.Raw(required=True, metadata={"type": "string", "format": "binary"})


class CampaignDetailSchema(CampaignSchema):
    statistics = ma.fields.Method("_statistics", metadata={"description": "see StatsSchema"})

    def _statistics(self, obj: Campaign) -> dict[str, Any]:
        return StatsSchema().dump(lifecycle.stats(db(), obj).as_dict())  # type: ignore[no-any-return]


class CampaignFilter(PageArgs):
    status = ma.fields.String(validate=ma.validate.OneOf([s.value for s in CampaignStatus]))


class CampaignCallsFilter(PageArgs):
    status = ma.fields.String(validate=ma.validate.OneOf([s.value for s in CallStatus]))
    phone_number = ma.fields.String()


class CancelArgs(ma.Schema):
    hang_up_live = ma.fields.Boolean(load_default=False,
                                     metadata={"description": "also hang up calls that are playing now"})


def own_campaign(campaign_id: str) -> Campaign:
    campaign = db().get(Campaign, campaign_id)
    if campaign is None or campaign.account_id != current().account_id:
        raise not_found("Campaign")
    return campaign


@blp.route("", methods=["POST"])
@require_auth
@route_limit(CREATE)
@upload_guard
@blp.arguments(NewCampaignForm, location="form")
@blp.arguments(CsvUpload, location="files")
@blp.response(201, CampaignDetailSchema)
def create(form: dict[str, Any], files: dict[str, Any]) -> Campaign:
    """Create a campaign from a CSV of phone numbers; the CSV is imported in the background."""
    settings = services().settings
    audio = own_ready_audio(form["audio_id"])
    try:
        window = Window.of(form["window_start"], form["window_end"])
    except ValueError as exc:
        raise validation_error("window_end", str(exc)) from None
    upload = files["csv_file"]
    filename = display_filename(upload, "csv_file", "upload.csv")
    callback = checked_url(form["status_callback"], "status_callback") if "status_callback" in form else None
    head = checked_head(upload, "csv_file")
    now = utcnow()
    start_at = form.get("start_at")
    campaign = Campaign(
        account_id=current().account_id, name=form["name"], audio_id=audio.id, status=CampaignStatus.IMPORTING,
        max_retries=form["max_retries"], retry_delay_seconds=form["retry_delay_seconds"],
        concurrent_limit=form["concurrent_limit"], caller_id=(form.get("caller_id") or "").lstrip("+") or None,
        window_start=window.start.strftime("%H:%M"), window_end=window.end.strftime("%H:%M"),
        start_at=start_at.astimezone(UTC) if start_at else None,
        csv_filename=filename, status_callback=callback,
        created_at=now, updated_at=now,
    )
    session = db()
    session.add(campaign)
    session.flush()
    campaign.csv_bytes = save_upload(session, head, upload, upload_path(settings, campaign.id),
                                     settings.max_csv_bytes, "csv_file")
    session.commit()
    try:
        enqueue_import(services().work_queue, campaign.id)
    except Exception:  # Redis down: the campaign cannot start; say so instead of leaving it stuck
        mark_failed(campaign, "the import queue is unavailable; create the campaign again")
        raise ApiError(503, "SERVICE_UNAVAILABLE", "The import queue is unavailable. Try again shortly.") from None
    return campaign


def mark_failed(campaign: Campaign, reason: str) -> None:
    session = db()
    campaign.status = CampaignStatus.FAILED
    campaign.import_error = reason
    session.commit()


@blp.route("", methods=["GET"])
@require_auth
@blp.arguments(CampaignFilter, location="query")
@blp.response(200, envelope_schema(CampaignSchema, "CampaignPage"))
def list_campaigns(args: dict[str, Any]) -> dict[str, Any]:
    """The account's campaigns, newest first, optionally by status."""
    query = sa.select(Campaign).where(Campaign.account_id == current().account_id)
    if "status" in args:
        query = query.where(Campaign.status == args["status"])
    items, meta = paginate(db(), query.order_by(Campaign.created_at.desc(), Campaign.id), args["page"],
                           args["per_page"])
    return {"data": items, "pagination": meta}


@blp.route("/<string:campaign_id>", methods=["GET"])
@require_auth
@blp.response(200, CampaignDetailSchema)
def get_campaign(campaign_id: str) -> Campaign:
    """Status, statistics (counts by status, answer rate, cost, progress, time left) and the import summary."""
    return own_campaign(campaign_id)


def _transition(campaign_id: str, wanted: str, fn: Any) -> Campaign:
    campaign = own_campaign(campaign_id)
    if not fn(db(), campaign.id):
        db().refresh(campaign)
        raise ApiError(409, "INVALID_CAMPAIGN_STATE", f"Cannot {wanted} a campaign that is {campaign.status.value}.",
                       {"status": campaign.status.value})
    db().refresh(campaign)
    return campaign


@blp.route("/<string:campaign_id>/pause", methods=["POST"])
@require_auth
@blp.response(200, CampaignDetailSchema)
def pause(campaign_id: str) -> Campaign:
    """Stop starting new calls; calls in progress finish."""
    return _transition(campaign_id, "pause", lifecycle.pause)


@blp.route("/<string:campaign_id>/resume", methods=["POST"])
@require_auth
@blp.response(200, CampaignDetailSchema)
def resume(campaign_id: str) -> Campaign:
    """Resume a paused campaign (also one paused for balance, after a top-up)."""
    return _transition(campaign_id, "resume", lifecycle.resume)


@blp.route("/<string:campaign_id>/cancel", methods=["POST"])
@require_auth
@blp.arguments(CancelArgs, location="json", required=False)
@blp.response(200, CampaignDetailSchema)
def cancel(args: dict[str, Any] | None, campaign_id: str) -> Campaign:
    """Cancel: pending calls are cancelled; calls playing now finish unless `hang_up_live`."""
    hang_up = bool((args or {}).get("hang_up_live"))
    return _transition(campaign_id, "cancel",
                       lambda s, cid: lifecycle.cancel(s, cid, hang_up_live=hang_up)["changed"] == 1)


@blp.route("/<string:campaign_id>/calls", methods=["GET"])
@require_auth
@blp.arguments(CampaignCallsFilter, location="query")
@blp.response(200, envelope_schema(CallSchema, "CampaignCallPage"))
def campaign_calls(args: dict[str, Any], campaign_id: str) -> dict[str, Any]:
    """The campaign's calls, filtered by status or number."""
    campaign = own_campaign(campaign_id)
    query = sa.select(Call).where(Call.campaign_id == campaign.id)
    if "status" in args:
        query = query.where(Call.status == args["status"])
    if "phone_number" in args:
        try:
            query = query.where(Call.phone_number == normalize_pk(args["phone_number"]))
        except InvalidPhoneNumber as exc:
            raise validation_error("phone_number", f"Not a valid Pakistani phone number ({exc.reason}).") from None
    items, meta = paginate(db(), query.order_by(Call.created_at, Call.id), args["page"], args["per_page"])
    return {"data": items, "pagination": meta}


def _csv_response(rows: Iterator[list[Any]], filename: str) -> Response:
    """A streamed CSV download; every cell is quoted and made safe for spreadsheets."""
    return Response(stream_with_context(csv_chunks(rows)), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


def _iso(value: datetime | None) -> str:
    return value.isoformat() if value else ""


@blp.route("/<string:campaign_id>/report.csv", methods=["GET"])
@require_auth
@blp.response(200, content_type="text/csv", description="One line per number")
def report(campaign_id: str) -> Response:
    """Per-number results: final status, attempts, last cause, SIP status, billsec, cost."""
    campaign = own_campaign(campaign_id)
    sessions = services().sessions

    def rows() -> Iterator[list[Any]]:
        yield ["phone_number", "status", "attempts", "last_cause", "sip_status", "billsec", "cost_pkr",
               "answered_at", "ended_at", "call_id"]
        with sessions() as session:
            result = session.execute(
                sa.select(Call.phone_number, Call.status, Call.attempts_count, Call.last_cause, Call.last_sip_status,
                          Call.billsec, Call.cost, Call.answered_at, Call.ended_at, Call.id)
                .where(Call.campaign_id == campaign.id).order_by(Call.created_at, Call.id)
                .execution_options(yield_per=2000)
            )
            for phone, status, attempts, cause, sip, billsec, cost, answered, ended, cid in result:
                yield [phone, getattr(status, "value", status), attempts, cause or "", sip or "", billsec,
                       money_str(cost), _iso(answered), _iso(ended), cid]

    return _csv_response(rows(), f"campaign-{campaign.id}-report.csv")


@blp.route("/<string:campaign_id>/rejected.csv", methods=["GET"])
@require_auth
@blp.response(200, content_type="text/csv", description="Rows the import refused")
def rejected(campaign_id: str) -> Response:
    """The CSV rows the import refused, with line numbers and reasons."""
    campaign = own_campaign(campaign_id)
    sessions = services().sessions

    def rows() -> Iterator[list[Any]]:
        yield ["line", "value", "reason"]
        with sessions() as session:
            result = session.execute(
                sa.select(CampaignRejectedRow.line_no, CampaignRejectedRow.raw_value, CampaignRejectedRow.reason)
                .where(CampaignRejectedRow.campaign_id == campaign.id).order_by(CampaignRejectedRow.line_no)
                .execution_options(yield_per=2000)
            )
            yield from ([line, value, reason] for line, value, reason in result)

    return _csv_response(rows(), f"campaign-{campaign.id}-rejected.csv")

