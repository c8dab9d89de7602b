"""Pakistani phone numbers: normalisation to E.164 and the digits FreeSWITCH dials.

Customers type numbers by hand or upload CSVs that have been through Excel, so the input is messy:
``0300-1234567``, ``+92 300 1234567``, ``00923001234567``, ``(042) 35761234``, a mobile whose leading
zero Excel dropped (``3001234567``), or one Excel turned into ``9.23001E+11`` (digits lost for good).
``normalize_pk`` accepts the honest forms and rejects the rest with a short reason that the campaign
import can show per row. Validity comes from libphonenumber's metadata for region PK.

Everything here is pure and cheap: it runs once per CSV row on campaigns of a million numbers.
"""

from __future__ import annotations

import re
import unicodedata
from enum import Enum
from typing import Literal

import phonenumbers
from phonenumbers import PhoneNumber, PhoneNumberType

__all__ = [
    "InvalidPhoneNumber",
    "Reason",
    "dial_digits",
    "normalize_pk",
    "number_kind",
]

PK_COUNTRY_CODE = 92
MAX_INPUT_CHARS = 64  # longer cells are rejected before any parsing
MAX_DIGITS = 15  # E.164 maximum, country code included
MIN_DIGITS = 5


class Reason(str, Enum):
    """Why a number was rejected (the value is the human text shown to the customer)."""

    NOT_A_STRING = "not a string"
    EMPTY = "empty"
    TOO_LONG = "too long"
    TOO_SHORT = "too short"
    CONTROL_CHARACTERS = "contains control characters"
    SCIENTIFIC_NOTATION = "scientific notation (Excel damage)"
    LETTERS = "contains letters"
    INVALID_CHARACTERS = "contains invalid characters"
    NOT_PAKISTANI = "not a Pakistani number"
    INVALID = "not a valid Pakistani number"


class InvalidPhoneNumber(ValueError):
    """A number that cannot be dialed. ``reason`` is a short human-readable text (a ``Reason`` value)."""

    def __init__(self, reason: Reason | str) -> None:
        self.reason: str = reason.value if isinstance(reason, Reason) else str(reason)
        super().__init__(self.reason)


# The common case: ASCII digits with the usual separators and an optional leading plus.
_PLAIN = re.compile(r"\+?[0-9 ()./-]+", re.ASCII)
_SEPARATORS = re.compile(r"[ ()./-]+", re.ASCII)
# 9.23001E+11, 9,23E11, 9.23001e+011: what Excel or a spreadsheet export does to long numbers.
_SCIENTIFIC = re.compile(r"[+-]?[0-9]+(?:[.,][0-9]*)?[eE][+-]?[0-9]+")
# 923001234567.0 (a float written back out by a spreadsheet or pandas): lossless, so accepted.
_FLOAT_ZERO = re.compile(r"([1-9][0-9]{8,})\.0", re.ASCII)
_E164_PK = re.compile(r"\+92([1-9][0-9]{7,10})", re.ASCII)

# Separators that arrive from word processors and copy-paste (dashes, no-break and thin spaces).
_UNICODE_SEPARATORS = str.maketrans(
    {
        c: " "
        for c in "\u00a0\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u202f"
    }
    | {c: "-" for c in "\u2010\u2011\u2012\u2013\u2014\u2015\u2212"}
    | {c: "" for c in "\u200b\u200c\u200d\u2060\ufeff"}
)
_STRIP = " \t\r\n\u00a0\ufeff"

_KINDS: dict[int, str] = {
    PhoneNumberType.MOBILE: "mobile",
    PhoneNumberType.FIXED_LINE: "landline",
    PhoneNumberType.FIXED_LINE_OR_MOBILE: "landline_or_mobile",
    PhoneNumberType.TOLL_FREE: "toll_free",
    PhoneNumberType.PREMIUM_RATE: "premium_rate",
    PhoneNumberType.SHARED_COST: "shared_cost",
    PhoneNumberType.VOIP: "voip",
    PhoneNumberType.PERSONAL_NUMBER: "personal",
    PhoneNumberType.PAGER: "pager",
    PhoneNumberType.UAN: "uan",
    PhoneNumberType.VOICEMAIL: "voicemail",
}


def normalize_pk(raw: str) -> str:
    """Return the E.164 form (``+923001234567``) of a Pakistani number or raise ``InvalidPhoneNumber``."""
    if not isinstance(raw, str):
        raise InvalidPhoneNumber(Reason.NOT_A_STRING)
    if len(raw) > MAX_INPUT_CHARS:
        raise InvalidPhoneNumber(Reason.TOO_LONG)
    text = raw.strip(_STRIP)
    if not text:
        raise InvalidPhoneNumber(Reason.EMPTY)
    if _PLAIN.fullmatch(text) is None:
        text = _clean_unusual(text)
    plus = text[0] == "+"
    float_zero = _FLOAT_ZERO.fullmatch(text)
    if float_zero is not None:
        text = float_zero.group(1)
    digits = _SEPARATORS.sub("", text[1:] if plus else text)
    if len(digits) > MAX_DIGITS + 2:  # "00" + 15 digits is the longest honest form
        raise InvalidPhoneNumber(Reason.TOO_LONG)
    if len(digits) < MIN_DIGITS:
        raise InvalidPhoneNumber(Reason.TOO_SHORT)

    nsn = _national_significant_number(digits, plus)
    if nsn is not None:
        if not nsn:
            raise InvalidPhoneNumber(Reason.TOO_SHORT)
        if nsn[0] == "0":
            raise InvalidPhoneNumber(Reason.INVALID)
        # Unambiguous shape: build the number directly (the same result parse() gives, several
        # times faster; a test checks both agree).
        number = PhoneNumber(country_code=PK_COUNTRY_CODE, national_number=int(nsn))
    else:
        number = _parse(("+" + digits) if plus else digits)
    if number.country_code != PK_COUNTRY_CODE:
        raise InvalidPhoneNumber(Reason.NOT_PAKISTANI)
    if not phonenumbers.is_valid_number(number):
        raise InvalidPhoneNumber(_invalid_reason(number))
    return f"+{PK_COUNTRY_CODE}{number.national_number}"


def number_kind(e164: str) -> str:
    """``"mobile"``, ``"landline"``, ``"toll_free"``, ``"premium_rate"``, ``"uan"``, ... or ``"unknown"``."""
    number = PhoneNumber(
        country_code=PK_COUNTRY_CODE, national_number=int(_nsn_of(e164))
    )
    return _KINDS.get(phonenumbers.number_type(number), "unknown")


def dial_digits(
    e164: str, style: Literal["national", "international"] = "national"
) -> str:
    """The digits to dial for a normalised number: ``03001234567`` (national) or ``923001234567``."""
    nsn = _nsn_of(e164)
    if style == "national":
        return "0" + nsn
    if style == "international":
        return f"{PK_COUNTRY_CODE}{nsn}"
    raise ValueError(f"unknown dial style {style!r}")


def _nsn_of(e164: str) -> str:
    match = _E164_PK.fullmatch(e164) if isinstance(e164, str) else None
    if match is None:
        raise InvalidPhoneNumber("not a normalised Pakistani E.164 number")
    return match.group(1)


def _national_significant_number(digits: str, plus: bool) -> str | None:
    """The national significant number when the shape leaves no doubt, else None (let parse decide)."""
    if plus:
        rest = digits
    elif digits.startswith("00"):
        rest = digits[2:]
    elif digits[0] == "0":
        return digits[1:]  # national form with trunk prefix: 0300..., 042...
    elif len(digits) == 10 and digits[0] == "3":
        return digits  # mobile whose leading zero a spreadsheet dropped
    elif len(digits) == 12 and digits.startswith("923"):
        # 92 300 1234567 without the plus: twelve digits cannot be a national number
        return digits[2:]
    else:
        return None
    if not rest.startswith("92"):
        return None  # foreign or garbage: parse() finds the country (or fails)
    rest = rest[2:]
    # "+92 0300 1234567": the trunk zero is often kept after the country code.
    return rest.removeprefix("0")


def _parse(text: str) -> PhoneNumber:
    try:
        return phonenumbers.parse(text, "PK")
    except phonenumbers.NumberParseException as exc:
        if exc.error_type in (
            phonenumbers.NumberParseException.TOO_SHORT_NSN,
            phonenumbers.NumberParseException.TOO_SHORT_AFTER_IDD,
        ):
            raise InvalidPhoneNumber(Reason.TOO_SHORT) from None
        if exc.error_type == phonenumbers.NumberParseException.TOO_LONG:
            raise InvalidPhoneNumber(Reason.TOO_LONG) from None
        if exc.error_type == phonenumbers.NumberParseException.INVALID_COUNTRY_CODE:
            raise InvalidPhoneNumber(Reason.NOT_PAKISTANI) from None
        raise InvalidPhoneNumber(Reason.INVALID) from None


def _invalid_reason(number: PhoneNumber) -> Reason:
    """Only on the rejection path: say "too short"/"too long" when the length is the problem."""
    nsn = str(number.national_number)
    if nsn[0] == "3":  # 03xx is always mobile in Pakistan: ten significant digits
        if len(nsn) < 10:
            return Reason.TOO_SHORT
        if len(nsn) > 10:
            return Reason.TOO_LONG
        return Reason.INVALID
    possible = phonenumbers.is_possible_number_with_reason(number)
    if possible == phonenumbers.ValidationResult.TOO_SHORT:
        return Reason.TOO_SHORT
    if possible == phonenumbers.ValidationResult.TOO_LONG:
        return Reason.TOO_LONG
    return Reason.INVALID


def _clean_unusual(text: str) -> str:
    """Slow path for input outside plain ASCII digits and separators: classify it or clean it."""
    if any(unicodedata.category(c) in ("Cc", "Cs") for c in text):
        raise InvalidPhoneNumber(Reason.CONTROL_CHARACTERS)
    if _SCIENTIFIC.fullmatch(text.replace(" ", "")) is not None:
        raise InvalidPhoneNumber(Reason.SCIENTIFIC_NOTATION)
    # Urdu/Arabic-Indic and full-width digits become ASCII; odd spaces and dashes become separators.
    text = "".join(str(unicodedata.decimal(c)) if c.isdecimal() else c for c in text)
    text = text.translate(_UNICODE_SEPARATORS).strip(_STRIP)
    if _PLAIN.fullmatch(text) is not None:
        return text
    if any(c.isalpha() for c in text):
        raise InvalidPhoneNumber(Reason.LETTERS)
    if not text:
        raise InvalidPhoneNumber(Reason.EMPTY)
    raise InvalidPhoneNumber(Reason.INVALID_CHARACTERS)
