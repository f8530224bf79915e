"""A PNG of the coming weeks, one row per system: maintenance windows, booked changes, blackouts.

Drawn with matplotlib's object API (``Figure``, Agg canvas): no pyplot, no global state, safe to call
from several requests at once. One system is drawn in its own time zone; several in UTC (one axis can
only have one zone), and the title says which.
"""

from __future__ import annotations

import io
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from matplotlib import dates as _mdates
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from bot.config import Config
from bot.windows import blackouts, occurrences
from storage.models import Change, Window

WINDOW_COLOUR = "#9ad29a"
BOOKED_COLOUR = "#2f6fb3"
BLACKOUT_COLOUR = "#d9534f"
DEFAULT_WEEKS = 4
# matplotlib.dates ships without annotations; reach it through Any so mypy --strict stays quiet here only
mdates: Any = _mdates


def _span(start: datetime, end: datetime) -> tuple[float, float]:
    lo = float(mdates.date2num(start))
    return lo, float(mdates.date2num(end)) - lo


def render(
    config: Config,
    *,
    systems: list[str],
    windows: list[tuple[Window, Change]],
    start: datetime,
    weeks: int = DEFAULT_WEEKS,
) -> bytes:
    """The calendar as PNG bytes for ``systems`` from ``start`` over ``weeks`` weeks."""
    end = start + timedelta(weeks=weeks)
    zone = ZoneInfo(config.systems[systems[0]].timezone if len(systems) == 1 else "UTC")
    fig = Figure(figsize=(12, 1.6 + 0.9 * len(systems)), dpi=100)
    ax = fig.add_subplot()
    height = 0.6
    for row, name in enumerate(reversed(systems)):
        y = row - height / 2
        maint = [_span(s.start, s.end) for s in occurrences(config, name, start=start, end=end)]
        if maint:
            ax.broken_barh(maint, (y, height), facecolors=WINDOW_COLOUR, edgecolor="none")
        freeze = [
            _span(max(p.start, start), min(p.end, end))
            for p in blackouts(config, name)
            if p.end > start and p.start < end
        ]
        if freeze:
            ax.broken_barh(freeze, (y, height), facecolors="none", edgecolor=BLACKOUT_COLOUR, hatch="///", linewidth=1)
        for window, change in windows:
            if name not in window.systems:
                continue
            x, width = _span(max(window.start, start), min(window.end, end))
            ax.broken_barh([(x, width)], (y + 0.1, height - 0.2), facecolors=BOOKED_COLOUR)
            ax.text(x, y + height + 0.05, f"{change.key} {window.stage}", fontsize=7, color=BOOKED_COLOUR)
    ax.set_yticks(range(len(systems)), list(reversed(systems)))
    ax.set_ylim(-0.8, len(systems) - 0.2)
    ax.set_xlim(float(mdates.date2num(start)), float(mdates.date2num(end)))
    ax.xaxis.set_major_locator(mdates.DayLocator(interval=max(1, weeks // 2), tz=zone))
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%a %d %b", tz=zone))
    ax.xaxis.set_minor_locator(mdates.DayLocator(tz=zone))
    ax.tick_params(axis="x", labelsize=8, labelrotation=45)
    ax.grid(axis="x", which="major", alpha=0.3)
    ax.axvline(float(mdates.date2num(start)), color="black", linewidth=0.8)
    ax.set_title(f"Maintenance calendar, {start.astimezone(zone):%d %b %Y} + {weeks} weeks ({zone.key})", fontsize=10)
    ax.legend(
        handles=[
            Patch(facecolor=WINDOW_COLOUR, label="maintenance window"),
            Patch(facecolor=BOOKED_COLOUR, label="booked change"),
            Patch(facecolor="none", edgecolor=BLACKOUT_COLOUR, hatch="///", label="blackout"),
        ],
        loc="upper center",
        bbox_to_anchor=(0.5, -0.35),
        ncol=3,
        fontsize=8,
        frameon=False,
    )
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
