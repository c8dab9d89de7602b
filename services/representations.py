"""How a call and a campaign read in JSON: what ``GET /calls/{id}`` and ``GET /campaigns/{id}``
answer, and the ``data`` of their webhook events (one definition for both)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import marshmallow as ma
from sqlalchemy.orm import Session

from billing.rating import money_str
from core import campaigns as lifecycle
from core.campaign_states import CampaignStatus
from core.models import Call, Campaign


class MoneyField(ma.fields.Field):
    """Money as a decimal string ("12.50"), never a float."""

    def _serialize(self, value: Decimal | None, attr: str | None, obj: Any, **kwargs: Any) -> str | None:
        return None if value is None else money_str(value)


class EnumValue(ma.fields.Field):
    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> str | None:
        return None if value is None else str(getattr(value, "value", value))


class AttemptSchema(ma.Schema):
    id = ma.fields.String(metadata={"description": "FreeSWITCH channel uuid of this attempt"})
    attempt_no = ma.fields.Integer()
    status = EnumValue()
    started_at = ma.fields.AwareDateTime()
    ringing_at = ma.fields.AwareDateTime(allow_none=True)
    answered_at = ma.fields.AwareDateTime(allow_none=True)
    ended_at = ma.fields.AwareDateTime(allow_none=True)
    hangup_cause = ma.fields.String(allow_none=True)
    q850_cause = ma.fields.Integer(allow_none=True)
    sip_status = ma.fields.Integer(allow_none=True)
    billsec = ma.fields.Integer()
    duration = ma.fields.Integer()
    played_ms = ma.fields.Integer(allow_none=True)
    cost = MoneyField()


class CallSchema(ma.Schema):
    id = ma.fields.String()
    phone_number = ma.fields.String(metadata={"description": "E.164"})
    status = EnumValue(metadata={"enum": ["QUEUED", "DIALING", "RINGING", "ANSWERED", "COMPLETED", "BUSY",
                                          "NO_ANSWER", "FAILED", "CANCELLED"]})
    audio_id = ma.fields.String()
    campaign_id = ma.fields.String(allow_none=True)
    caller_id = ma.fields.String(allow_none=True)
    status_callback = ma.fields.String(allow_none=True)
    max_retries = ma.fields.Integer()
    retry_delay_seconds = ma.fields.Integer()
    attempt_count = ma.fields.Integer(attribute="attempts_count")
    next_attempt_at = ma.fields.AwareDateTime(allow_none=True)
    hangup_cause = ma.fields.String(attribute="last_cause", allow_none=True)
    sip_status = ma.fields.Integer(attribute="last_sip_status", allow_none=True)
    billsec = ma.fields.Integer()
    cost = MoneyField()
    currency = ma.fields.Constant("PKR")
    answered_at = ma.fields.AwareDateTime(allow_none=True)
    ended_at = ma.fields.AwareDateTime(allow_none=True)
    cancel_requested_at = ma.fields.AwareDateTime(allow_none=True)
    created_at = ma.fields.AwareDateTime()
    updated_at = ma.fields.AwareDateTime()


class CallDetailSchema(CallSchema):
    attempts = ma.fields.List(ma.fields.Nested(AttemptSchema))


class ImportSummarySchema(ma.Schema):
    filename = ma.fields.String(attribute="csv_filename", allow_none=True)
    size_bytes = ma.fields.Integer(attribute="csv_bytes")
    rows = ma.fields.Integer(attribute="rows_total")
    accepted = ma.fields.Integer(attribute="rows_accepted")
    duplicates = ma.fields.Integer(attribute="rows_duplicate")
    do_not_call = ma.fields.Integer(attribute="rows_dnc")
    invalid = ma.fields.Integer(attribute="rows_invalid")
    error = ma.fields.String(attribute="import_error", allow_none=True)
    imported_at = ma.fields.AwareDateTime(allow_none=True)


class StatsSchema(ma.Schema):
    total = ma.fields.Integer()
    pending = ma.fields.Integer()
    in_progress = ma.fields.Integer()
    completed = ma.fields.Integer()
    busy = ma.fields.Integer()
    no_answer = ma.fields.Integer()
    failed = ma.fields.Integer()
    cancelled = ma.fields.Integer()
    attempts = ma.fields.Integer()
    answer_rate = ma.fields.Float(allow_none=True)
    average_billsec = ma.fields.Float(allow_none=True)
    cost = MoneyField()
    progress_percent = ma.fields.Float()
    estimated_seconds_left = ma.fields.Float(allow_none=True)


class CampaignSchema(ma.Schema):
    id = ma.fields.String()
    name = ma.fields.String()
    status = EnumValue(metadata={"enum": [s.value for s in CampaignStatus]})
    pause_reason = ma.fields.String(allow_none=True)
    audio_id = ma.fields.String()
    max_retries = ma.fields.Integer()
    retry_delay_seconds = ma.fields.Integer()
    concurrent_limit = ma.fields.Integer()
    caller_id = ma.fields.String(allow_none=True)
    status_callback = ma.fields.String(allow_none=True)
    calling_window = ma.fields.Method("_window")
    start_at = ma.fields.AwareDateTime(allow_none=True)
    started_at = ma.fields.AwareDateTime(allow_none=True)
    completed_at = ma.fields.AwareDateTime(allow_none=True)
    created_at = ma.fields.AwareDateTime()
    updated_at = ma.fields.AwareDateTime()
    import_summary = ma.fields.Method("_import")

    def _window(self, obj: Campaign) -> dict[str, str]:
        return {"start": obj.window_start, "end": obj.window_end, "timezone": obj.timezone}

    def _import(self, obj: Campaign) -> dict[str, Any]:
        return ImportSummarySchema().dump(obj)  # type: ignore[no-any-return]


def call_object(call: Call) -> dict[str, Any]:
    """The call with its attempts, as ``GET /calls/{id}`` answers it."""
    return CallDetailSchema().dump(call)  # type: ignore[no-any-return]


def campaign_object(session: Session, campaign: Campaign) -> dict[str, Any]:
    """The campaign with its statistics, as ``GET /campaigns/{id}`` answers it."""
    return {**CampaignSchema().dump(campaign),
            "statistics": StatsSchema().dump(lifecycle.stats(session, campaign).as_dict())}
