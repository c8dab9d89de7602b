"""Campaigns: create from a CSV, list, a campaign's page with live progress, its outcome chart,
pause / resume / cancel, why it is not dialing, report.csv."""

from __future__ import annotations

from datetime import datetime

from flask import Response, flash, redirect, render_template, request, stream_with_context, url_for
from flask.typing import ResponseReturnValue

from console import charts, web
from console.views import KARACHI, blp
from core.campaign_states import FINAL, CampaignStatus
from core.spreadsheet import csv_chunks
from services import audio as audio_service
from services import campaigns as campaign_service
from services.errors import Refused, invalid
from services.pages import paginate
from services.uploads import checked_head, display_filename

REJECTED_SHOWN = 50


@blp.route("/campaigns")
@web.signed_in
def campaigns() -> ResponseReturnValue:
    page = max(1, request.args.get("page", 1, type=int) or 1)
    items, meta = paginate(web.db(), campaign_service.list_query(web.account_id()), page, 20)
    return render_template("campaigns.html", campaigns=items, pagination=meta)


@blp.route("/campaigns/new")
@web.signed_in
def new_campaign() -> ResponseReturnValue:
    return render_template("campaign_new.html", audio_files=audio_service.ready_files(web.db(), web.account_id()),
                           values=request.args)


def _int(field: str, default: int) -> int:
    raw = request.form.get(field, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise invalid(field, "Not a valid integer.") from None


def _start_at() -> datetime | None:
    raw = request.form.get("start_at", "").strip()
    if not raw:
        return None
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise invalid("start_at", "Not a valid date and time.") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=KARACHI)


@blp.route("/campaigns", methods=["POST"])
@web.signed_in
def create_campaign() -> ResponseReturnValue:
    settings, account_id, session = web.settings(), web.account_id(), web.db()
    try:
        web.csv_upload_limits()
        new = campaign_service.NewCampaign(
            name=request.form.get("name", "").strip(), audio_id=request.form.get("audio_id", ""),
            max_retries=_int("max_retries", 0), retry_delay_seconds=_int("retry_delay_seconds", 300),
            concurrent_limit=_int("concurrent_limit", 10),
            window_start=request.form.get("window_start", "09:00")[:5] or "09:00",
            window_end=request.form.get("window_end", "21:00")[:5] or "21:00",
            start_at=_start_at())
        campaign_service.check_new(session, account_id, new)
        upload = request.files.get("csv_file")
        if upload is None or not upload.filename:
            raise invalid("csv_file", "Choose a CSV file of phone numbers.")
        filename = display_filename(upload.filename, "csv_file", "upload.csv")
        head = checked_head(upload.stream, "csv_file")
        campaign = campaign_service.create(session, settings, web.wiring().work_queue, account_id, new, filename,
                                           head, upload.stream)
    except Refused as exc:
        web.show_refusal(exc)
        return render_template("campaign_new.html", values=request.form,
                               audio_files=audio_service.ready_files(session, account_id)), exc.status
    flash("The campaign is created; its list is being imported.", "info")
    return redirect(url_for("console.campaign", campaign_id=campaign.id), 303)


def _view(campaign_id: str) -> dict[str, object]:
    session = web.db()
    campaign = campaign_service.own_campaign(session, web.account_id(), campaign_id)
    stats = campaign_service.statistics(session, campaign)
    rejected = list(campaign_service.rejected_rows(web.wiring().sessions, campaign.id, REJECTED_SHOWN))[1:]
    return {"campaign": campaign, "stats": stats, "why": campaign_service.not_dialing(campaign),
            "chart": charts.outcomes(stats), "live": CampaignStatus(campaign.status) not in FINAL,
            "rejected": rejected}


@blp.route("/campaigns/<campaign_id>")
@web.signed_in
def campaign(campaign_id: str) -> ResponseReturnValue:
    return render_template("campaign.html", **_view(campaign_id))


@blp.route("/campaigns/<campaign_id>/progress")
@web.signed_in
def campaign_progress(campaign_id: str) -> ResponseReturnValue:
    """The live part of a campaign's page (htmx swaps it in every few seconds while it runs)."""
    return render_template("campaign_progress.html", **_view(campaign_id))


@blp.route("/campaigns/<campaign_id>/<any(pause, resume, cancel):action>", methods=["POST"])
@web.signed_in
def change_campaign(campaign_id: str, action: str) -> ResponseReturnValue:
    hang_up = request.form.get("hang_up_live") == "1"
    return web.act(lambda: campaign_service.change(web.db(), web.account_id(), campaign_id, action,
                                                   hang_up_live=hang_up),
                   {"pause": "Paused.", "resume": "Resumed.", "cancel": "Cancelled."}[action],
                   url_for("console.campaign", campaign_id=campaign_id))


@blp.route("/campaigns/<campaign_id>/report.csv")
@web.signed_in
def campaign_report(campaign_id: str) -> ResponseReturnValue:
    row = campaign_service.own_campaign(web.db(), web.account_id(), campaign_id)
    return Response(stream_with_context(csv_chunks(campaign_service.report_rows(web.wiring().sessions, row.id))),
                    mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="campaign-{row.id}-report.csv"'})
