"""Daily calling windows (pure; standard library only).

A campaign dials only between ``start`` and ``end`` local time (default 09:00-21:00
Asia/Karachi, the business day). A window whose end is before its start runs past
midnight (e.g. 20:00-02:00). Times in and out are timezone-aware.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

_HHMM = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")
DEFAULT_TZ = "Asia/Karachi"


def parse_hhmm(value: str) -> time:
    match = _HHMM.fullmatch(value or "")  # not match: "$" also matches before a trailing newline
    if not match:
        raise ValueError(f"{value!r} is not a time of day as HH:MM (00:00-23:59)")
    return time(int(match.group(1)), int(match.group(2)))


@dataclass(frozen=True)
class Window:
    start: time
    end: time
    tz: ZoneInfo

    @classmethod
    def of(cls, start: str, end: str, tz: str = DEFAULT_TZ) -> Window:
        window = cls(parse_hhmm(start), parse_hhmm(end), ZoneInfo(tz))
        if window.start == window.end:
            raise ValueError("the calling window must not be empty (start equals end)")
        return window

    def contains(self, moment: datetime) -> bool:
        local = moment.astimezone(self.tz).time()
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end  # past midnight

    def next_open(self, moment: datetime) -> datetime:
        """``moment`` itself when inside the window, else the next opening."""
        if self.contains(moment):
            return moment
        local = moment.astimezone(self.tz)
        opening = datetime.combine(local.date(), self.start, tzinfo=self.tz)
        if opening <= local:
            opening = datetime.combine(local.date() + timedelta(days=1), self.start, tzinfo=self.tz)
        return opening.astimezone(moment.tzinfo)

    def seconds_left(self, moment: datetime) -> float:
        """How long the window stays open from ``moment`` (0 when closed)."""
        if not self.contains(moment):
            return 0.0
        local = moment.astimezone(self.tz)
        closing = datetime.combine(local.date(), self.end, tzinfo=self.tz)
        if closing <= local:
            closing += timedelta(days=1)
        return (closing - local).total_seconds()
