"""/calls: place one call, list and filter calls, read one with its attempts, cancel."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask import request
from flask_smorest import Blueprint

from api.auth import current, require_auth
from api.context import db, services
from api.errors import ApiError
from api.limits import CREATE, route_limit
from api.pagination import PageArgs, envelope_schema, paginate
from api.schemas import CALLER_ID, CallDetailSchema, CallSchema, PhoneNumber
from core.call_states import CallStatus
from core.models import Call
from services.calls import (
    CallFilter,
    NewCall,
    cancel_own,
    day_bound,
    fingerprint,
    known_terms,
    list_query,
    own_call,
    place,
    ready_terms,
)
from webhooks.urls import checked

blp = Blueprint("calls", __name__, url_prefix="/api/v1/calls", description="Single calls")

MAX_IDEMPOTENCY_KEY = 255


class NewCallArgs(ma.Schema):
    phone_number = PhoneNumber(required=True)
    audio_id = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=64))
    caller_id = ma.fields.String(validate=CALLER_ID)
    max_retries = ma.fields.Integer(validate=ma.validate.Range(min=0, max=10))
    retry_delay_seconds = ma.fields.Integer(validate=ma.validate.Range(min=30, max=86_400))
    status_callback = ma.fields.String(metadata={
        "description": "a URL that also receives this call's events, signed with the account's signing secret"})


class CallFilterArgs(PageArgs):
    status = ma.fields.String(metadata={"description": "one status or several, comma-separated"})
    campaign_id = ma.fields.String()
    phone_number = PhoneNumber()
    date_from = ma.fields.String(metadata={"description": "ISO date (Asia/Karachi business day) or datetime"})
    date_to = ma.fields.String(metadata={"description": "ISO date (inclusive, Asia/Karachi) or datetime"})

    @ma.validates("status")
    def _status(self, value: str, **_: Any) -> None:
        valid = {s.value for s in CallStatus}
        bad = [v for v in value.upper().split(",") if v.strip() not in valid]
        if bad:
            raise ma.ValidationError(f"unknown status {', '.join(bad)}; one of {', '.join(sorted(valid))}")


@blp.route("", methods=["POST"])
@require_auth
@route_limit(CREATE)
@blp.arguments(NewCallArgs())
@blp.response(201, CallDetailSchema)
@blp.alt_response(200, schema=CallDetailSchema,
                  description="Replay of an earlier request with the same Idempotency-Key")
@blp.doc(parameters=[{"in": "header", "name": "Idempotency-Key", "required": False, "schema": {"type": "string"},
                      "description": "Retrying with the same key never creates a second call."}])
def place_call(body: dict[str, Any]) -> Any:
    """Call one Pakistani number and play an uploaded message when it answers."""
    settings = services().settings
    key = request.headers.get("Idempotency-Key")
    if key is not None and not (0 < len(key.strip()) <= MAX_IDEMPOTENCY_KEY):
        raise ApiError(400, "INVALID_IDEMPOTENCY_KEY",
                       f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} characters.")
    account_id = current().account_id
    # The terms this process read for this message lately (the reservation checks them), unless
    # something else may answer first: a replay (Idempotency-Key) or a status_callback refused
    # after the message's 404/409/403, as when the terms are read here
    guess = key is None and "status_callback" not in body
    terms = (known_terms(account_id, body["audio_id"]) if guess else None) \
        or ready_terms(db(), account_id, body["audio_id"])
    new = NewCall(
        account_id=account_id,
        terms=terms,
        phone_number=body["phone_number"],  # E.164 (PhoneNumber)
        caller_id=body.get("caller_id", "").lstrip("+") or None,
        max_retries=body.get("max_retries", settings.default_max_retries),
        retry_delay_seconds=body.get("retry_delay_seconds", settings.default_retry_delay_seconds),
        idempotency_key=key.strip() if key else None,
        status_callback=(checked(body["status_callback"], settings, "status_callback")
                         if "status_callback" in body else None),
    )
    call, created = place(db(), services().dial_nudges, new, fingerprint(body) if key else None)
    if created:
        return call, 201
    return call, 200, {"Idempotent-Replayed": "true"}


@blp.route("", methods=["GET"])
@require_auth
@blp.arguments(CallFilterArgs, location="query")
@blp.response(200, envelope_schema(CallSchema, "CallPage"))
def list_calls(args: dict[str, Any]) -> dict[str, Any]:
    """The account's calls, newest first, filtered by status, campaign, number and dates."""
    where = CallFilter(
        statuses=[v.strip() for v in args["status"].upper().split(",")] if "status" in args else None,
        campaign_id=args.get("campaign_id"), phone_number=args.get("phone_number"),
        created_from=day_bound("date_from", args["date_from"], end=False) if "date_from" in args else None,
        created_before=day_bound("date_to", args["date_to"], end=True) if "date_to" in args else None)
    items, meta = paginate(db(), list_query(current().account_id, where), args["page"], args["per_page"])
    return {"data": items, "pagination": meta}


@blp.route("/<string:call_id>", methods=["GET"])
@require_auth
@blp.response(200, CallDetailSchema)
def get_call(call_id: str) -> Call:
    """One call with every attempt (FreeSWITCH uuid, cause, SIP status, times, billsec, cost)."""
    return own_call(db(), current().account_id, call_id)


@blp.route("/<string:call_id>/cancel", methods=["POST"])
@require_auth
@blp.response(200, CallDetailSchema)
def cancel(call_id: str) -> Call:
    """Cancel a call that has not ended. A live call is hung up on FreeSWITCH."""
    return cancel_own(db(), services().dial_queue, current().account_id, call_id)
