"""Pakistani number normalisation: every accepted form and every rejection reason."""

from __future__ import annotations

import random

import phonenumbers
import pytest

from core.phone import (
    InvalidPhoneNumber,
    Reason,
    dial_digits,
    normalize_pk,
    number_kind,
)

ACCEPTED = [
    # mobiles
    ("03001234567", "+923001234567"),
    ("0300-1234567", "+923001234567"),
    ("0300 1234567", "+923001234567"),
    ("(0300) 1234567", "+923001234567"),
    ("+923001234567", "+923001234567"),
    ("923001234567", "+923001234567"),
    ("00923001234567", "+923001234567"),
    ("+92 300 1234567", "+923001234567"),
    ("+92-300-1234567", "+923001234567"),
    ("0092 300 1234567", "+923001234567"),
    ("+92 0300 1234567", "+923001234567"),  # trunk zero kept after the country code
    ("  03211234567\r\n", "+923211234567"),  # CSV whitespace and line ending
    ("0300.1234567", "+923001234567"),
    ("3001234567", "+923001234567"),  # Excel dropped the leading zero
    ("3451234567", "+923451234567"),
    ("923001234567.0", "+923001234567"),  # number written back as a float
    (
        "\u06f0\u06f3\u06f0\u06f0\u06f1\u06f2\u06f3\u06f4\u06f5\u06f6\u06f7",
        "+923001234567",
    ),  # Urdu digits
    ("0300\u20131234567", "+923001234567"),  # en dash from a word processor
    ("0300\u00a01234567", "+923001234567"),  # no-break space
    ("\ufeff03001234567", "+923001234567"),  # BOM on the first CSV cell
    # landlines
    ("042-35761234", "+924235761234"),  # Lahore
    ("021-34567890", "+922134567890"),  # Karachi
    ("051-2345678", "+92512345678"),  # Islamabad
    ("+92 42 35761234", "+924235761234"),
    ("(042) 35761234", "+924235761234"),
    ("0092-21-34567890", "+922134567890"),
    ("4235761234", "+924235761234"),  # landline without its trunk zero
]

REJECTED = [
    ("", Reason.EMPTY),
    ("   ", Reason.EMPTY),
    ("9.23001E+11", Reason.SCIENTIFIC_NOTATION),
    ("9.23001e+11", Reason.SCIENTIFIC_NOTATION),
    ("3.00123E+09", Reason.SCIENTIFIC_NOTATION),
    ("9,23001E+11", Reason.SCIENTIFIC_NOTATION),
    ("0300-CALL-NOW", Reason.LETTERS),
    ("abc", Reason.LETTERS),
    ("0300 1234567 ext 12", Reason.LETTERS),
    ("O3001234567", Reason.LETTERS),  # letter O for zero
    ("+14155550100", Reason.NOT_PAKISTANI),
    ("0014155550100", Reason.NOT_PAKISTANI),
    ("+44 20 7946 0958", Reason.NOT_PAKISTANI),
    ("0300123456", Reason.TOO_SHORT),
    ("030012345", Reason.TOO_SHORT),
    ("0300", Reason.TOO_SHORT),
    ("12", Reason.TOO_SHORT),
    ("+92", Reason.TOO_SHORT),
    ("---", Reason.TOO_SHORT),
    ("030012345678", Reason.TOO_LONG),
    ("0" * 18, Reason.TOO_LONG),
    ("1" * 65, Reason.TOO_LONG),  # capped before any parsing
    ("0" + "3" * 10_000, Reason.TOO_LONG),
    ("0300\x001234567", Reason.CONTROL_CHARACTERS),
    ("0300\x1b[31m1234567", Reason.CONTROL_CHARACTERS),
    ("0300\t1234567", Reason.CONTROL_CHARACTERS),
    ("0300#1234567", Reason.INVALID_CHARACTERS),
    ("+923001234567+", Reason.INVALID_CHARACTERS),
    ("03001234567;DROP", Reason.LETTERS),
    ("0300*1234567", Reason.INVALID_CHARACTERS),
    ("0123456789", Reason.INVALID),  # no such area code
    ("+92003001234567", Reason.INVALID),
    ("0511234567", Reason.INVALID),
]


@pytest.mark.parametrize(("raw", "expected"), ACCEPTED)
def test_accepted_forms(raw: str, expected: str) -> None:
    assert normalize_pk(raw) == expected


@pytest.mark.parametrize(("raw", "reason"), REJECTED)
def test_rejected_forms(raw: str, reason: Reason) -> None:
    with pytest.raises(InvalidPhoneNumber) as info:
        normalize_pk(raw)
    assert info.value.reason == reason.value
    assert str(info.value) == reason.value
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("raw", [None, 3001234567, b"03001234567"])
def test_non_strings_are_rejected(raw: object) -> None:
    with pytest.raises(InvalidPhoneNumber) as info:
        normalize_pk(raw)  # type: ignore[arg-type]
    assert info.value.reason == Reason.NOT_A_STRING.value


@pytest.mark.parametrize(
    ("e164", "kind"),
    [
        ("+923001234567", "mobile"),
        ("+923451234567", "mobile"),
        ("+924235761234", "landline"),
        ("+922134567890", "landline"),
        ("+92512345678", "landline"),
        ("+9280012345", "toll_free"),
        ("+9290012345", "premium_rate"),
        ("+9242111123456", "uan"),
    ],
)
def test_number_kind(e164: str, kind: str) -> None:
    assert number_kind(e164) == kind


@pytest.mark.parametrize(
    ("e164", "national", "international"),
    [
        ("+923001234567", "03001234567", "923001234567"),
        ("+924235761234", "04235761234", "924235761234"),
        ("+92512345678", "0512345678", "92512345678"),
    ],
)
def test_dial_digits(e164: str, national: str, international: str) -> None:
    assert dial_digits(e164) == national
    assert dial_digits(e164, style="national") == national
    assert dial_digits(e164, style="international") == international
    assert national.isdigit()
    assert international.isdigit()


@pytest.mark.parametrize(
    "bad",
    [
        "03001234567",
        "+14155550100",
        "+923001234567\n",
        "+92300123456;hangup",
        "+92\u0663\u0660\u06601234567",
        "+92300 1234567",
        "",
    ],
)
def test_dial_digits_only_takes_normalised_numbers(bad: str) -> None:
    with pytest.raises(InvalidPhoneNumber):
        dial_digits(bad)
    with pytest.raises(InvalidPhoneNumber):
        number_kind(bad)


def test_dial_digits_unknown_style() -> None:
    with pytest.raises(ValueError, match="style"):
        dial_digits("+923001234567", style="sip")  # type: ignore[arg-type]


def test_fast_path_agrees_with_phonenumbers_parse() -> None:
    """normalize_pk skips parse() for unambiguous shapes; the outcome must be parse()'s."""
    rng = random.Random(7)
    forms = [
        "0{n}",
        "0{a}-{b}",
        "+92{n}",
        "+92 {a} {b}",
        "0092{n}",
        "92{n}",
        "{n}",
    ]
    for _ in range(3000):
        nsn = rng.choice(["3", "4", "2", "5", "9", "8"]) + "".join(
            rng.choice("0123456789") for _ in range(rng.randint(7, 10))
        )
        raw = rng.choice(forms).format(n=nsn, a=nsn[:3], b=nsn[3:])
        try:
            ours: str | None = normalize_pk(raw)
        except InvalidPhoneNumber:
            ours = None
        parsed = phonenumbers.parse(raw, "PK")
        theirs = (
            phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
            if parsed.country_code == 92 and phonenumbers.is_valid_number(parsed)
            else None
        )
        assert ours == theirs, raw


def test_round_trip_is_stable() -> None:
    for raw, expected in ACCEPTED:
        assert normalize_pk(normalize_pk(raw)) == expected
        assert normalize_pk(dial_digits(expected)) == expected
        assert normalize_pk(dial_digits(expected, "international")) == expected
