"""Response schemas shared by the resources (and documented in the OpenAPI file)."""

from __future__ import annotations

from typing import Any

import marshmallow as ma

from core.names import name_problem
from services import phones
from services.errors import Refused
from services.representations import (  # noqa: F401 - the API's schemas, re-exported
    AttemptSchema,
    CallDetailSchema,
    CallSchema,
    EnumValue,
    MoneyField,
)


class DisplayName(ma.fields.String):
    """A name people read (audio, campaign, API key): 1 to ``max_length`` characters, visible text
    only. Control, format, surrogate and line/paragraph separator characters answer 422
    ``VALIDATION_ERROR`` (the rule is ``core.names``)."""

    def __init__(self, *, max_length: int = 200, **kwargs: Any) -> None:
        validators = [ma.validate.Length(min=1, max=max_length), _visible_text, *kwargs.pop("validate", [])]
        super().__init__(validate=validators, **kwargs)


def _visible_text(value: str) -> None:
    problem = name_problem(value)
    if problem is not None:
        raise ma.ValidationError(f"The name {problem}.")


class PhoneNumber(ma.fields.String):
    """A Pakistani phone number in any form people write it (``0300 1234567``, ``+92 300 ...``),
    loaded as E.164; anything else is 422 ``VALIDATION_ERROR`` naming the field."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(validate=ma.validate.Length(min=1, max=phones.MAX_LENGTH), **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        return e164(super()._deserialize(value, attr, data, **kwargs))


def e164(raw: str) -> str:
    """``raw`` as E.164, or the phone field's ``ValidationError`` (``services.phones``)."""
    try:
        return phones.e164(raw)
    except Refused as exc:
        raise ma.ValidationError(exc.details["phone_number"][0]) from None


class FullMatch(ma.validate.Regexp):
    """A pattern the whole value must match.

    marshmallow's ``Regexp`` uses ``re.match``, where ``$`` also matches before a trailing
    newline: ``^[0-9]+$`` accepted "0300\\n". The pattern itself stays the one the OpenAPI
    document shows (``^...$`` means the whole string there).
    """

    def __call__(self, value: Any) -> Any:
        if not isinstance(value, str) or self.regex.fullmatch(value) is None:
            raise ma.ValidationError(self._format_error(value))
        return value


# ASCII digits only ("٣" is a digit to Python's \d), optionally after one leading +
CALLER_ID = FullMatch(r"^\+?[0-9]{3,15}$", error="must be 3 to 15 digits, optionally after a +")
TIME_OF_DAY = FullMatch(r"^([01][0-9]|2[0-3]):[0-5][0-9]$", error="must be a time of day as HH:MM")


class ErrorBodySchema(ma.Schema):
    code = ma.fields.String(required=True, metadata={"example": "INSUFFICIENT_BALANCE"})
    message = ma.fields.String(required=True)
    details = ma.fields.Dict(required=True)


class ErrorSchema(ma.Schema):
    error = ma.fields.Nested(ErrorBodySchema, required=True)


class AudioSchema(ma.Schema):
    id = ma.fields.String()
    name = ma.fields.String()
    status = EnumValue()
    original_filename = ma.fields.String(allow_none=True)
    source_format = ma.fields.String()
    duration_ms = ma.fields.Integer()
    duration_seconds = ma.fields.Method("_seconds")
    size_bytes = ma.fields.Integer()
    sample_rate = ma.fields.Constant(8000)
    channels = ma.fields.Constant(1)
    sha256 = ma.fields.String()
    created_at = ma.fields.AwareDateTime()

    def _seconds(self, obj: Any) -> float:
        return round(obj.duration_ms / 1000, 3)


class ApiKeySchema(ma.Schema):
    id = ma.fields.String()
    name = ma.fields.String()
    prefix = ma.fields.String(metadata={"description": "the visible start of the key"})
    created_at = ma.fields.AwareDateTime()
    last_used_at = ma.fields.AwareDateTime(allow_none=True)
    revoked_at = ma.fields.AwareDateTime(allow_none=True)
    active = ma.fields.Method("_active")

    def _active(self, obj: Any) -> bool:
        return obj.revoked_at is None


class NewApiKeySchema(ApiKeySchema):
    key = ma.fields.String(metadata={"description": "the full key; shown only in this response"})


class LedgerEntrySchema(ma.Schema):
    id = ma.fields.Integer()
    kind = EnumValue(metadata={"enum": ["TOPUP", "RESERVE", "RELEASE", "CHARGE", "REFUND", "ADJUSTMENT"]})
    amount = MoneyField(metadata={"description": "change of the balance"})
    hold = MoneyField(metadata={"description": "change of the reserved amount"})
    balance_after = MoneyField()
    reserved_after = MoneyField()
    call_id = ma.fields.String(allow_none=True)
    attempt_id = ma.fields.String(allow_none=True)
    description = ma.fields.String()
    created_at = ma.fields.AwareDateTime()


class RateSchema(ma.Schema):
    per_minute = MoneyField()
    pulse_seconds = ma.fields.Integer()
    description = ma.fields.String()


class BalanceSchema(ma.Schema):
    account_id = ma.fields.String()
    balance = MoneyField()
    reserved = MoneyField()
    available = MoneyField()
    currency = ma.fields.String()
    rate = ma.fields.Nested(RateSchema)
    max_concurrent_calls = ma.fields.Integer()
