"""/campaigns: create from a CSV upload, list, status and statistics, pause / resume /
cancel, the campaign's calls, a per-number report and the rejected rows as CSV."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import marshmallow as ma
from flask import Response, stream_with_context
from flask_smorest import Blueprint

from api.auth import current, require_auth
from api.context import db, services
from api.limits import CREATE, route_limit
from api.pagination import PageArgs, envelope_schema, paginate
from api.schemas import CALLER_ID, TIME_OF_DAY, CallSchema, DisplayName, PhoneNumber
from api.uploads import upload_guard
from core.call_states import CallStatus
from core.campaign_states import CampaignStatus
from core.models import Call, Campaign
from core.spreadsheet import csv_chunks
from services import calls as call_service
from services import campaigns as campaign_service
from services.calls import CallFilter
from services.representations import CampaignSchema, StatsSchema
from services.uploads import checked_head, display_filename
from webhooks.urls import checked

blp = Blueprint("campaigns", __name__, url_prefix="/api/v1/campaigns", description="Campaigns (CSV broadcasts)")


class NewCampaignForm(ma.Schema):
    name = DisplayName(required=True, max_length=200)
    audio_id = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=64))
    max_retries = ma.fields.Integer(load_default=0, validate=ma.validate.Range(*campaign_service.MAX_RETRIES))
    concurrent_limit = ma.fields.Integer(load_default=10,
                                         validate=ma.validate.Range(*campaign_service.CONCURRENT_LIMIT))
    retry_delay_seconds = ma.fields.Integer(load_default=300,
                                            validate=ma.validate.Range(*campaign_service.RETRY_DELAY_SECONDS))
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


class NotDialingSchema(ma.Schema):
    reason = ma.fields.String(metadata={"enum": ["IMPORTING", "SCHEDULED", "OUTSIDE_CALLING_WINDOW",
                                                 "PAUSED_FOR_BALANCE", "PAUSED"]})
    message = ma.fields.String()
    next_dialing_at = ma.fields.AwareDateTime(allow_none=True, metadata={
        "description": "when dialing can start by itself (null: after a resume)"})


class CampaignDetailSchema(CampaignSchema):
    """A campaign with its statistics (read by the view: ``with_statistics``) and, while it does
    not dial, why not and from when it can."""

    statistics = ma.fields.Method("_statistics", metadata={"description": "see StatsSchema"})
    not_dialing = ma.fields.Method("_not_dialing", allow_none=True, metadata={
        "description": "null while dialing or once finished; else reason, message, next_dialing_at"})

    def _statistics(self, obj: Campaign) -> dict[str, Any]:
        return StatsSchema().dump(obj.statistics)  # type: ignore[attr-defined,no-any-return]

    def _not_dialing(self, obj: Campaign) -> dict[str, Any] | None:
        why = campaign_service.not_dialing(obj)
        return None if why is None else NotDialingSchema().dump(why.as_dict())  # type: ignore[no-any-return]


class CampaignFilter(PageArgs):
    status = ma.fields.String(validate=ma.validate.OneOf([s.value for s in CampaignStatus]))


class CampaignCallsFilter(PageArgs):
    status = ma.fields.String(validate=ma.validate.OneOf([s.value for s in CallStatus]))
    phone_number = PhoneNumber()


class CancelArgs(ma.Schema):
    hang_up_live = ma.fields.Boolean(load_default=False,
                                     metadata={"description": "also hang up calls that are playing now"})


def with_statistics(campaign: Campaign) -> Campaign:
    """The campaign with its statistics for ``CampaignDetailSchema`` (one SQL query here, none in
    the schema)."""
    campaign.statistics = campaign_service.statistics(db(), campaign)  # type: ignore[attr-defined]
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
    new = campaign_service.NewCampaign(
        name=form["name"], audio_id=form["audio_id"], max_retries=form["max_retries"],
        retry_delay_seconds=form["retry_delay_seconds"], concurrent_limit=form["concurrent_limit"],
        window_start=form["window_start"], window_end=form["window_end"], caller_id=form.get("caller_id"),
        start_at=form.get("start_at"),
        status_callback=checked(form["status_callback"], services().settings, "status_callback")
        if "status_callback" in form else None)
    # the audio and the window are checked before the file is read
    campaign_service.check_new(db(), current().account_id, new)
    upload = files["csv_file"]
    filename = display_filename(upload.filename, "csv_file", "upload.csv")
    head = checked_head(upload.stream, "csv_file")
    campaign = campaign_service.create(db(), services().settings, services().work_queue, current().account_id, new,
                                       filename, head, upload.stream)
    return with_statistics(campaign)


@blp.route("", methods=["GET"])
@require_auth
@blp.arguments(CampaignFilter, location="query")
@blp.response(200, envelope_schema(CampaignSchema, "CampaignPage"))
def list_campaigns(args: dict[str, Any]) -> dict[str, Any]:
    """The account's campaigns, newest first, optionally by status."""
    query = campaign_service.list_query(current().account_id, args.get("status"))
    items, meta = paginate(db(), query, args["page"], args["per_page"])
    return {"data": items, "pagination": meta}


@blp.route("/<string:campaign_id>", methods=["GET"])
@require_auth
@blp.response(200, CampaignDetailSchema)
def get_campaign(campaign_id: str) -> Campaign:
    """Status, statistics (counts by status, answer rate, cost, progress, time left) and the import summary."""
    return with_statistics(campaign_service.own_campaign(db(), current().account_id, campaign_id))


def _transition(campaign_id: str, action: str, *, hang_up_live: bool = False) -> Campaign:
    return with_statistics(campaign_service.change(db(), current().account_id, campaign_id, action,
                                                   hang_up_live=hang_up_live))


@blp.route("/<string:campaign_id>/pause", methods=["POST"])
@require_auth
@blp.response(200, CampaignDetailSchema)
def pause(campaign_id: str) -> Campaign:
    """Stop starting new calls; calls in progress finish."""
    return _transition(campaign_id, "pause")


@blp.route("/<string:campaign_id>/resume", methods=["POST"])
@require_auth
@blp.response(200, CampaignDetailSchema)
def resume(campaign_id: str) -> Campaign:
    """Resume a paused campaign (also one paused for balance, after a top-up)."""
    return _transition(campaign_id, "resume")


@blp.route("/<string:campaign_id>/cancel", methods=["POST"])
@require_auth
@blp.arguments(CancelArgs, location="json", required=False)
@blp.response(200, CampaignDetailSchema)
def cancel(args: dict[str, Any] | None, campaign_id: str) -> Campaign:
    """Cancel: pending calls are cancelled; calls playing now finish unless `hang_up_live`."""
    return _transition(campaign_id, "cancel", hang_up_live=bool((args or {}).get("hang_up_live")))


@blp.route("/<string:campaign_id>/calls", methods=["GET"])
@require_auth
@blp.arguments(CampaignCallsFilter, location="query")
@blp.response(200, envelope_schema(CallSchema, "CampaignCallPage"))
def campaign_calls(args: dict[str, Any], campaign_id: str) -> dict[str, Any]:
    """The campaign's calls, filtered by status or number."""
    campaign = campaign_service.own_campaign(db(), current().account_id, campaign_id)
    where = CallFilter(statuses=[args["status"]] if "status" in args else None, campaign_id=campaign.id,
                       phone_number=args.get("phone_number"))
    query = call_service.list_query(current().account_id, where).order_by(None).order_by(Call.created_at, Call.id)
    items, meta = paginate(db(), query, args["page"], args["per_page"])
    return {"data": items, "pagination": meta}


def _csv_response(rows: Iterator[list[Any]], filename: str) -> Response:
    """A streamed CSV download; every cell is quoted and made safe for spreadsheets."""
    return Response(stream_with_context(csv_chunks(rows)), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


@blp.route("/<string:campaign_id>/report.csv", methods=["GET"])
@require_auth
@blp.response(200, content_type="text/csv", description="One line per number")
def report(campaign_id: str) -> Response:
    """Per-number results: final status, attempts, last cause, SIP status, billsec, cost."""
    campaign = campaign_service.own_campaign(db(), current().account_id, campaign_id)
    return _csv_response(campaign_service.report_rows(services().sessions, campaign.id),
                         f"campaign-{campaign.id}-report.csv")


@blp.route("/<string:campaign_id>/rejected.csv", methods=["GET"])
@require_auth
@blp.response(200, content_type="text/csv", description="Rows the import refused")
def rejected(campaign_id: str) -> Response:
    """The CSV rows the import refused, with line numbers and reasons."""
    campaign = campaign_service.own_campaign(db(), current().account_id, campaign_id)
    return _csv_response(campaign_service.rejected_rows(services().sessions, campaign.id),
                         f"campaign-{campaign.id}-rejected.csv")
