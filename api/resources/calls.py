"""/calls: place one call, list and filter calls, read one with its attempts, cancel."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import marshmallow as ma
import sqlalchemy as sa
from flask import request
from flask_smorest import Blueprint
from sqlalchemy.orm import lazyload

from api.auth import current, require_auth
from api.context import db, services
from api.errors import ApiError, not_found, validation_error
from api.limits import CREATE, route_limit
from api.pagination import PageArgs, envelope_schema, paginate
from api.resources.audio import own_ready_audio
from api.resources.webhooks import checked_url
from api.schemas import CALLER_ID, CallDetailSchema, CallSchema
from billing.ledger import InsufficientBalance
from billing.rating import format_pkr
from core.call_states import CallStatus
from core.models import Call
from core.phone import InvalidPhoneNumber, normalize_pk
from core.queues import enqueue_cancel
from core.states import AudioStatus
from services.calls import CallTerms, IdempotencyMismatch, NewCall, call_terms, create_call, fingerprint
from services.calls import cancel as cancel_call

blp = Blueprint("calls", __name__, url_prefix="/api/v1/calls", description="Single calls")

KARACHI = ZoneInfo("Asia/Karachi")
MAX_IDEMPOTENCY_KEY = 255


class NewCallArgs(ma.Schema):
    phone_number = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=40))
    audio_id = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=64))
    caller_id = ma.fields.String(validate=CALLER_ID)
    max_retries = ma.fields.Integer(validate=ma.validate.Range(min=0, max=10))
    retry_delay_seconds = ma.fields.Integer(validate=ma.validate.Range(min=30, max=86_400))
    status_callback = ma.fields.String(metadata={
        "description": "a URL that also receives this call's events, signed with the account's signing secret"})


class CallFilterArgs(PageArgs):
    status = ma.fields.String(metadata={"description": "one status or several, comma-separated"})
    campaign_id = ma.fields.String()
    phone_number = ma.fields.String()
    date_from = ma.fields.String(metadata={"description": "ISO date (Asia/Karachi business day) or datetime"})
    date_to = ma.fields.String(metadata={"description": "ISO date (inclusive, Asia/Karachi) or datetime"})

    @ma.validates("status")
    def _status(self, value: str, **_: Any) -> None:
        valid = {s.value for s in CallStatus}
        bad = [v for v in value.upper().split(",") if v.strip() not in valid]
        if bad:
            raise ma.ValidationError(f"unknown status {', '.join(bad)}; one of {', '.join(sorted(valid))}")


def _bound(field: str, raw: str, *, end: bool) -> datetime:
    """A filter bound: a date means the Asia/Karachi business day; a datetime needs a zone."""
    try:
        if len(raw) == 10:
            day = date.fromisoformat(raw)
            start = datetime.combine(day, time.min, tzinfo=KARACHI)
            return start + timedelta(days=1) if end else start
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise validation_error(field, "must be an ISO date (2026-11-26) or datetime with zone") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=KARACHI)
    return moment


def own_call(call_id: str) -> Call:
    call = db().get(Call, call_id)
    if call is None or call.account_id != current().account_id:
        raise not_found("Call")
    return call


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
    try:
        phone = normalize_pk(body["phone_number"])
    except InvalidPhoneNumber as exc:
        raise validation_error("phone_number", f"Not a valid Pakistani phone number ({exc.reason}).") from None
    key = request.headers.get("Idempotency-Key")
    if key is not None and not (0 < len(key.strip()) <= MAX_IDEMPOTENCY_KEY):
        raise ApiError(400, "INVALID_IDEMPOTENCY_KEY",
                       f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} characters.")
    account_id = current().account_id
    terms = _ready_terms(account_id, body["audio_id"])
    new = NewCall(
        account_id=account_id,
        terms=terms,
        phone_number=phone,
        caller_id=body.get("caller_id", "").lstrip("+") or None,
        max_retries=body.get("max_retries", settings.default_max_retries),
        retry_delay_seconds=body.get("retry_delay_seconds", settings.default_retry_delay_seconds),
        idempotency_key=key.strip() if key else None,
        status_callback=checked_url(body["status_callback"], "status_callback") if "status_callback" in body else None,
    )
    print_ = {**body, "phone_number": phone}
    try:
        call, created = create_call(db(), new, fingerprint(print_) if key else None)
    except InsufficientBalance as exc:
        raise ApiError(
            402, "INSUFFICIENT_BALANCE",
            f"Your balance is too low to make this call. Current balance: {format_pkr(exc.available)}",
            {"available": str(exc.available), "required": str(exc.required), "currency": "PKR"},
        ) from None
    except IdempotencyMismatch:
        raise ApiError(422, "IDEMPOTENCY_KEY_REUSED",
                       "This Idempotency-Key was already used with a different request.",
                       {"Idempotency-Key": ["used with a different request body"]}) from None
    if created:
        services().dial_nudges.call_written(call.id)  # the dialer's job, sent off the request
        return call, 201
    return call, 200, {"Idempotent-Replayed": "true"}


def _ready_terms(account_id: str, audio_id: str) -> CallTerms:
    """The caller's READY audio with the account's terms (one SELECT); 404 / 409 as
    ``own_ready_audio``, 403 when the account was disabled."""
    terms = call_terms(db(), account_id, audio_id)
    if terms is None or terms.audio_status != AudioStatus.READY:
        own_ready_audio(audio_id)  # raises the 404, or the 409 with the conversion's state and error
        terms = call_terms(db(), account_id, audio_id)  # it became READY in between
        if terms is None or terms.audio_status != AudioStatus.READY:
            raise not_found("Audio file")  # and changed again since
    if not terms.account_active:
        raise ApiError(403, "ACCOUNT_DISABLED", "This account is disabled.")
    return terms


@blp.route("", methods=["GET"])
@require_auth
@blp.arguments(CallFilterArgs, location="query")
@blp.response(200, envelope_schema(CallSchema, "CallPage"))
def list_calls(args: dict[str, Any]) -> dict[str, Any]:
    """The account's calls, newest first, filtered by status, campaign, number and dates."""
    # the list shows no attempts: skip the relationship's eager "selectin" load
    query = sa.select(Call).options(lazyload(Call.attempts)).where(Call.account_id == current().account_id)
    if "status" in args:
        query = query.where(Call.status.in_([s.strip() for s in args["status"].upper().split(",")]))
    if "campaign_id" in args:
        query = query.where(Call.campaign_id == args["campaign_id"])
    if "phone_number" in args:
        try:
            query = query.where(Call.phone_number == normalize_pk(args["phone_number"]))
        except InvalidPhoneNumber as exc:
            raise validation_error("phone_number", f"Not a valid Pakistani phone number ({exc.reason}).") from None
    if "date_from" in args:
        query = query.where(Call.created_at >= _bound("date_from", args["date_from"], end=False))
    if "date_to" in args:
        query = query.where(Call.created_at < _bound("date_to", args["date_to"], end=True))
    query = query.order_by(Call.created_at.desc(), Call.id.desc())
    items, meta = paginate(db(), query, args["page"], args["per_page"])
    return {"data": items, "pagination": meta}


@blp.route("/<string:call_id>", methods=["GET"])
@require_auth
@blp.response(200, CallDetailSchema)
def get_call(call_id: str) -> Call:
    """One call with every attempt (FreeSWITCH uuid, cause, SIP status, times, billsec, cost)."""
    return own_call(call_id)


@blp.route("/<string:call_id>/cancel", methods=["POST"])
@require_auth
@blp.response(200, CallDetailSchema)
def cancel(call_id: str) -> Call:
    """Cancel a call that has not ended. A live call is hung up on FreeSWITCH."""
    call = own_call(call_id)
    session = db()
    if call.status.is_final or not cancel_call(session, call.id):
        session.refresh(call)
        raise ApiError(409, "CALL_ALREADY_FINAL", f"The call has already ended ({call.status.value}).",
                       {"status": call.status.value})
    session.refresh(call)
    if call.status.is_live:  # the dialer hangs it up (and keeps trying until the hangup comes)
        enqueue_cancel(services().dial_queue, call.id)
    return call
