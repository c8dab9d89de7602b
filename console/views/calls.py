"""Calls: the filtered list, CSV export, one call's attempts as a timeline, place one, cancel."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from flask import Response, flash, redirect, render_template, request, stream_with_context, url_for
from flask.typing import ResponseReturnValue

from billing.rating import money_str
from console import web
from console.views import blp
from core.call_states import CallStatus
from core.rate_limits import CREATE
from core.spreadsheet import csv_chunks
from services import audio as audio_service
from services import calls as call_service
from services import phones
from services.errors import Refused, invalid
from services.pages import paginate

FILTERS = ("status", "campaign_id", "phone_number", "date_from", "date_to")


def _filter() -> call_service.CallFilter:
    """The API's filters from the query string; 422 refusals as the API's."""
    args = {k: request.args.get(k, "").strip() for k in FILTERS}
    statuses = None
    if args["status"]:
        statuses = [s.strip() for s in args["status"].upper().split(",")]
        valid = {s.value for s in CallStatus}
        if any(s not in valid for s in statuses):
            raise invalid("status", f"unknown status; one of {', '.join(sorted(valid))}")
    phone = None
    if args["phone_number"]:
        phone = phones.e164(args["phone_number"])
    return call_service.CallFilter(
        statuses=statuses, campaign_id=args["campaign_id"] or None, phone_number=phone,
        created_from=call_service.day_bound("date_from", args["date_from"], end=False) if args["date_from"] else None,
        created_before=call_service.day_bound("date_to", args["date_to"], end=True) if args["date_to"] else None)


@blp.route("/calls")
@web.signed_in
def calls() -> ResponseReturnValue:
    page = max(1, request.args.get("page", 1, type=int) or 1)
    values = {k: request.args.get(k, "") for k in FILTERS}
    try:
        where = _filter()
    except Refused as exc:
        web.show_refusal(exc)
        items: list[Any] = []
        meta = {"page": 1, "total": 0, "total_pages": 0, "has_next": False, "has_prev": False}
    else:
        items, meta = paginate(web.db(), call_service.list_query(web.account_id(), where), page, 25)
    return render_template("calls.html", calls=items, pagination=meta, values=values,
                           statuses=[s.value for s in CallStatus],
                           audio_files=audio_service.ready_files(web.db(), web.account_id()))


@blp.route("/calls.csv")
@web.signed_in
def export_calls() -> ResponseReturnValue:
    where = _filter()
    query = call_service.list_query(web.account_id(), where).execution_options(yield_per=2000)
    sessions = web.wiring().sessions

    def rows() -> Iterator[list[Any]]:
        yield ["call_id", "created_at", "phone_number", "status", "attempts", "last_cause", "sip_status", "billsec",
               "cost_pkr", "campaign_id", "answered_at", "ended_at"]
        with sessions() as session:
            for call in session.execute(query).scalars():
                yield [call.id, call.created_at.isoformat(), call.phone_number, call.status.value, call.attempts_count,
                       call.last_cause or "", call.last_sip_status or "", call.billsec, money_str(call.cost),
                       call.campaign_id or "", call.answered_at.isoformat() if call.answered_at else "",
                       call.ended_at.isoformat() if call.ended_at else ""]

    return Response(stream_with_context(csv_chunks(rows())), mimetype="text/csv",
                    headers={"Content-Disposition": 'attachment; filename="calls.csv"'})


@blp.route("/calls/<call_id>")
@web.signed_in
def call(call_id: str) -> ResponseReturnValue:
    row = call_service.own_call(web.db(), web.account_id(), call_id)
    return render_template("call.html", call=row)


@blp.route("/calls", methods=["POST"])
@web.signed_in
def place_call() -> ResponseReturnValue:
    web.limit(web.settings().ratelimit_create, CREATE, f"user:{web.user().id}")
    settings, account_id = web.settings(), web.account_id()
    try:
        phone = phones.e164(request.form.get("phone_number", ""))
        new = call_service.NewCall(
            account_id=account_id,
            terms=call_service.ready_terms(web.db(), account_id, request.form.get("audio_id", "")),
            phone_number=phone, caller_id=None, max_retries=settings.default_max_retries,
            retry_delay_seconds=settings.default_retry_delay_seconds)
        row, _ = call_service.place(web.db(), web.wiring().dial_nudges, new, None)
    except Refused as exc:
        web.show_refusal(exc)
        return redirect(url_for("console.calls"), 303)
    flash(f"Calling {row.phone_number}.", "info")
    return redirect(url_for("console.call", call_id=row.id), 303)


@blp.route("/calls/<call_id>/cancel", methods=["POST"])
@web.signed_in
def cancel_call(call_id: str) -> ResponseReturnValue:
    return web.act(lambda: call_service.cancel_own(web.db(), web.wiring().dial_queue, web.account_id(), call_id),
                   "The call is cancelled.", url_for("console.call", call_id=call_id))
