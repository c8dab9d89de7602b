"""Charts drawn on the server as SVG (no script, no inline style: colours are SVG attributes)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from html import escape
from zoneinfo import ZoneInfo

from markupsafe import Markup

KARACHI = ZoneInfo("Asia/Karachi")
# outcome colours, each with at least 3:1 contrast on white (WCAG 1.4.11, graphics)
COLOURS = {
    "COMPLETED": "#1a7f37",
    "BUSY": "#9a6700",
    "NO_ANSWER": "#6e40c9",
    "FAILED": "#cf222e",
    "CANCELLED": "#57606a",
    "IN_PROGRESS": "#0969da",
}
OUTCOMES = ("COMPLETED", "BUSY", "NO_ANSWER", "FAILED", "CANCELLED", "IN_PROGRESS")
LABELS = {"COMPLETED": "Answered", "BUSY": "Busy", "NO_ANSWER": "No answer", "FAILED": "Failed",
          "CANCELLED": "Cancelled", "IN_PROGRESS": "Queued or live"}


def outcome_of(status: str) -> str:
    return status if status in COLOURS else "IN_PROGRESS"


@dataclass(frozen=True)
class Bar:
    label: str
    counts: dict[str, int]  # outcome -> count


def _legend(y: int) -> list[str]:
    parts = []
    for i, outcome in enumerate(OUTCOMES):
        x = 10 + i * 120
        parts.append(f'<rect x="{x}" y="{y}" width="12" height="12" fill="{COLOURS[outcome]}"/>'
                     f'<text x="{x + 16}" y="{y + 11}" font-size="12" fill="#1f2328">{LABELS[outcome]}</text>')
    return parts


def stacked_bars(bars: list[Bar], title: str) -> Markup:
    """Vertical bars, one per label, stacked by outcome, with a text alternative."""
    width, height, top, bottom, left = 740, 260, 20, 200, 40
    peak = max([sum(b.counts.values()) for b in bars] + [1])
    step = (width - left - 10) / max(len(bars), 1)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img" '
             f'aria-labelledby="chart-title" class="chart"><title id="chart-title">{escape(title)}</title>',
             f'<line x1="{left}" y1="{bottom}" x2="{width - 10}" y2="{bottom}" stroke="#57606a"/>',
             f'<text x="{left - 6}" y="{top + 4}" font-size="11" text-anchor="end" fill="#1f2328">{peak}</text>',
             f'<text x="{left - 6}" y="{bottom}" font-size="11" text-anchor="end" fill="#1f2328">0</text>']
    for i, bar in enumerate(bars):
        x = left + i * step + 1
        y = float(bottom)
        for outcome in OUTCOMES:
            n = bar.counts.get(outcome, 0)
            if not n:
                continue
            h = (bottom - top) * n / peak
            y -= h
            parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(step - 2, 1):.1f}" height="{h:.1f}" '
                         f'fill="{COLOURS[outcome]}"><title>{escape(bar.label)}: {n} {LABELS[outcome]}</title></rect>')
        if len(bars) <= 12 or i % 3 == 0:
            parts.append(f'<text x="{x + step / 2:.1f}" y="{bottom + 14}" font-size="11" text-anchor="middle" '
                         f'fill="#1f2328">{escape(bar.label)}</text>')
    parts += _legend(bottom + 34)
    parts.append("</svg>")
    return Markup("".join(parts))


def hourly(rows: list[tuple[datetime, dict[str, int]]]) -> Markup:
    """The last hours' calls per hour by outcome (hours in Asia/Karachi)."""
    bars = []
    for hour, by_status in rows:
        counts: dict[str, int] = {}
        for status, n in by_status.items():
            counts[outcome_of(status)] = counts.get(outcome_of(status), 0) + n
        bars.append(Bar(hour.astimezone(KARACHI).strftime("%H:00"), counts))
    return stacked_bars(bars, "Calls per hour, last 24 hours, by outcome (Asia/Karachi)")


def outcomes(stats: dict[str, int]) -> Markup:
    """A campaign's numbers by outcome, one bar each."""
    values = {"COMPLETED": stats.get("completed", 0), "BUSY": stats.get("busy", 0),
              "NO_ANSWER": stats.get("no_answer", 0), "FAILED": stats.get("failed", 0),
              "CANCELLED": stats.get("cancelled", 0),
              "IN_PROGRESS": stats.get("pending", 0) + stats.get("in_progress", 0)}
    bars = [Bar(LABELS[o], {o: values[o]}) for o in OUTCOMES]
    return stacked_bars(bars, "The campaign's numbers by outcome")
