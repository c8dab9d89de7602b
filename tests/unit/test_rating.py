"""Pure rating: pulses, rounding up to 1/10000 PKR, Decimal only."""

from __future__ import annotations

from decimal import Decimal

import pytest

from billing.rating import call_cost, format_pkr, money_str, pulses, reservation_for, worst_case_billsec


@pytest.mark.parametrize("billsec, pulse, expected", [
    (0, 30, 0), (-3, 30, 0), (1, 30, 1), (30, 30, 1), (31, 30, 2), (60, 60, 1), (61, 60, 2), (59, 1, 59),
])
def test_pulses(billsec, pulse, expected):
    assert pulses(billsec, pulse) == expected


@pytest.mark.parametrize("pulse", [0, -30])
def test_pulse_must_be_positive(pulse):
    with pytest.raises(ValueError):
        pulses(10, pulse)


@pytest.mark.parametrize("billsec, rate, pulse, expected", [
    (0, "2.50", 30, "0.0000"),
    (1, "2.50", 30, "1.25"),
    (30, "2.50", 30, "1.25"),
    (31, "2.50", 30, "2.50"),
    (45, "3.00", 60, "3.00"),
    (61, "3.00", 60, "6.00"),
    (1, "1.00", 1, "0.0167"),   # 1/60 = 0.016666... rounds up
    (7, "0.10", 1, "0.0117"),   # 0.011666... rounds up
    (10, "0.0001", 60, "0.0001"),
])
def test_call_cost(billsec, rate, pulse, expected):
    cost = call_cost(billsec, Decimal(rate), pulse)
    assert isinstance(cost, Decimal)
    assert cost == Decimal(expected)
    assert cost.as_tuple().exponent == -4


def test_cost_is_never_below_the_exact_price():
    for billsec in range(1, 200):
        exact = Decimal(pulses(billsec, 6) * 6) * Decimal("1.37") / Decimal(60)
        cost = call_cost(billsec, Decimal("1.37"), 6)
        assert exact <= cost < exact + Decimal("0.0001")


def test_reservation_covers_the_message_and_slack():
    assert worst_case_billsec(2000) == 4
    assert worst_case_billsec(2001) == 5
    assert reservation_for(3000, Decimal("2.50"), 30) == Decimal("1.25")
    assert reservation_for(29_000, Decimal("2.50"), 30) == Decimal("2.50")  # 31 s: two pulses
    assert reservation_for(29_000, Decimal("2.50"), 30) >= call_cost(30, Decimal("2.50"), 30)


def test_money_formatting():
    assert format_pkr(Decimal("0")) == "PKR 0.00"
    assert format_pkr(Decimal("1234.5")) == "PKR 1,234.50"
    assert format_pkr(Decimal("0.0049")) == "PKR 0.00"
    assert format_pkr(Decimal("0.0051")) == "PKR 0.01"
    assert money_str(Decimal("12.5")) == "12.50"
    assert money_str(Decimal("0.0167")) == "0.0167"
    assert money_str(Decimal("-1.25")) == "-1.25"
