"""Phone numbers people type (any Pakistani form), as E.164: the one check and message every
surface uses (the API's ``PhoneNumber`` field, the console's forms)."""

from __future__ import annotations

from core.phone import InvalidPhoneNumber, normalize_pk
from services.errors import invalid

MAX_LENGTH = 40


def e164(raw: str, field: str = "phone_number") -> str:
    """``raw`` as E.164; 422 ``VALIDATION_ERROR`` naming ``field`` otherwise."""
    if len(raw) > MAX_LENGTH:
        raise invalid(field, f"Longer than maximum length {MAX_LENGTH}.")
    try:
        return normalize_pk(raw)
    except InvalidPhoneNumber as exc:
        raise invalid(field, f"Not a valid Pakistani phone number ({exc.reason}).") from None
