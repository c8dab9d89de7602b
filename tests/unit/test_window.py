"""Calling windows in Asia/Karachi (UTC+5), with fixed clocks."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from core.window import Window, parse_hhmm

PKT = Window.of("09:00", "21:00")


def utc(h: int, m: int = 0, day: int = 26) -> datetime:
    return datetime(2026, 11, day, h, m, tzinfo=UTC)


@pytest.mark.parametrize(
    ("moment", "inside"),
    [
        (utc(3, 59), False),  # 08:59 PKT
        (utc(4, 0), True),  # 09:00 PKT opens
        (utc(15, 59), True),  # 20:59 PKT
        (utc(16, 0), False),  # 21:00 PKT closes
        (utc(23, 0), False),  # 04:00 PKT next day
    ],
)
def test_contains_uses_karachi_time(moment: datetime, inside: bool) -> None:
    assert PKT.contains(moment) is inside


def test_next_open_same_day_before_opening() -> None:
    assert PKT.next_open(utc(2, 30)) == utc(4, 0)


def test_next_open_after_closing_is_tomorrow_morning() -> None:
    assert PKT.next_open(utc(17, 0)) == utc(4, 0, day=27)


def test_next_open_inside_is_now() -> None:
    assert PKT.next_open(utc(10, 15)) == utc(10, 15)


def test_window_past_midnight() -> None:
    night = Window.of("20:00", "02:00")
    assert night.contains(utc(15, 0))  # 20:00 PKT
    assert night.contains(utc(20, 30))  # 01:30 PKT
    assert not night.contains(utc(21, 0))  # 02:00 PKT
    assert night.next_open(utc(21, 0)) == utc(15, 0, day=27)


def test_seconds_left() -> None:
    assert PKT.seconds_left(utc(15, 0)) == 3600
    assert PKT.seconds_left(utc(17, 0)) == 0


@pytest.mark.parametrize("bad", ["24:00", "9:00", "09:60", "", "0900", "09:00:00", "ab:cd"])
def test_parse_rejects(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_hhmm(bad)


def test_empty_window_is_refused() -> None:
    with pytest.raises(ValueError):
        Window.of("10:00", "10:00")
