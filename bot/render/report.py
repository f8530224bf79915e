"""The compliance report: per system, open and overdue advisories, mean time to remediate, change outcomes.

Definitions (the report's contract; the CSV/JSON columns carry these names):

* **open** — advisories affecting the system whose status is open, change requested or snoozed;
* **overdue** — open ones whose SLA due date (``policy.sla_days`` / KEV due date) has passed;
* **mean time to remediate** — over remediated advisories, from when patchwarden first saw the advisory
  to when it was remediated: the completion of the linked change when there is one, else the moment the
  advisory was marked remediated; in days;
* **changes by outcome** — every change touching the system, counted by its final state, or ``open``.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from sqlalchemy.ext.asyncio import AsyncSession

from bot.config import Config
from storage import overview
from storage.models import TERMINAL, AdvisoryStatus, ChangeState

OUTCOMES: tuple[str, ...] = ("open", *sorted(s.value for s in TERMINAL))


@dataclass(frozen=True)
class SystemReport:
    """One system's line of the report."""

    system: str
    open_advisories: int
    overdue_advisories: int
    remediated_advisories: int
    mean_days_to_remediate: float | None
    changes: dict[str, int] = field(default_factory=dict)


async def build(
    session: AsyncSession, *, config: Config, now: datetime, systems: list[str] | None = None
) -> list[SystemReport]:
    """The report for ``systems`` (default: every configured system), in name order."""
    names = sorted(systems or config.systems)
    rows = await overview.system_advisories(session, systems=names)
    linked = await overview.changes_by_id(session, {r.advisory.change_id for r in rows if r.advisory.change_id})
    all_changes = await overview.all_changes(session)
    out = []
    for name in names:
        mine = [r.advisory for r in rows if r.system == name]
        open_ = [a for a in mine if a.status in overview.OPEN_ADVISORIES]
        overdue = [a for a in open_ if a.due is not None and a.due < now]
        days = []
        for a in mine:
            if a.status is not AdvisoryStatus.REMEDIATED:
                continue
            change = linked.get(a.change_id) if a.change_id else None
            done = change.updated_at if change and change.state is ChangeState.COMPLETED else a.updated_at
            days.append(max(0.0, (done - a.first_seen).total_seconds() / 86400))
        outcomes: Counter[str] = Counter(
            c.state.value if c.state in TERMINAL else "open" for c in all_changes if name in c.systems
        )
        out.append(
            SystemReport(
                system=name,
                open_advisories=len(open_),
                overdue_advisories=len(overdue),
                remediated_advisories=len(days),
                mean_days_to_remediate=round(sum(days) / len(days), 1) if days else None,
                changes={k: outcomes.get(k, 0) for k in OUTCOMES},
            )
        )
    return out


def to_json(reports: list[SystemReport], *, now: datetime) -> str:
    """The report as JSON: ``{"generated_at": ..., "systems": [...]}``."""
    body: dict[str, Any] = {"generated_at": now.isoformat(), "systems": [asdict(r) for r in reports]}
    return json.dumps(body, indent=2)


def to_csv(reports: list[SystemReport]) -> str:
    """The report as CSV, one row per system, one column per outcome (``changes_<outcome>``)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(
        [
            "system",
            "open_advisories",
            "overdue_advisories",
            "remediated_advisories",
            "mean_days_to_remediate",
            *(f"changes_{o}" for o in OUTCOMES),
        ]
    )
    for r in reports:
        mttr = "" if r.mean_days_to_remediate is None else r.mean_days_to_remediate
        writer.writerow(
            [
                r.system,
                r.open_advisories,
                r.overdue_advisories,
                r.remediated_advisories,
                mttr,
                *(r.changes.get(o, 0) for o in OUTCOMES),
            ]
        )
    return buf.getvalue()


def to_text(reports: list[SystemReport]) -> str:
    """A short mrkdwn summary for Slack (system names come from the configuration, not from users)."""
    lines = ["*Compliance report*"]
    for r in reports:
        mttr = "—" if r.mean_days_to_remediate is None else f"{r.mean_days_to_remediate} d"
        done = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in r.changes.items() if v) or "none"
        flag = " :rotating_light:" if r.overdue_advisories else ""
        lines.append(
            f"• *{r.system}*: {r.open_advisories} open advisories, {r.overdue_advisories} overdue{flag}; "
            f"mean time to remediate {mttr}; changes: {done}"
        )
    return "\n".join(lines)


# Each outcome's colour says what it means: completed green, failures red, cancelled/expired grey.
OUTCOME_COLOURS: dict[str, str] = {
    "open": "#5bc0de",
    "completed": "#5cb85c",
    "cancelled": "#999999",
    "expired": "#c8c8c8",
    "rejected": "#f0ad4e",
    "failed": "#d9534f",
    "rolled_back": "#8e44ad",
}


def chart_png(reports: list[SystemReport]) -> bytes:
    """Two bar charts side by side: advisories (open / overdue) and changes by outcome, per system."""
    fig = chart_figure(reports)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def chart_figure(reports: list[SystemReport]) -> Figure:
    """The report's figure (counts on whole-number axes)."""
    fig = Figure(figsize=(12, 1.8 + 0.5 * max(1, len(reports))), dpi=100)
    adv, chg = fig.subplots(1, 2)
    names = [r.system for r in reports]
    ys = list(range(len(reports)))
    overdue = [r.overdue_advisories for r in reports]
    on_time = [r.open_advisories - r.overdue_advisories for r in reports]
    adv.barh(ys, on_time, color="#f0ad4e", label="open, within SLA")
    adv.barh(ys, overdue, left=on_time, color="#d9534f", label="overdue")
    adv.set_yticks(ys, names)
    adv.set_title("Open advisories", fontsize=10)
    adv.legend(fontsize=8)
    left = [0] * len(reports)
    for outcome in OUTCOMES:
        colour = OUTCOME_COLOURS.get(outcome, "#777777")
        values = [r.changes.get(outcome, 0) for r in reports]
        if any(values):
            chg.barh(ys, values, left=left, color=colour, label=outcome.replace("_", " "))
            left = [a + b for a, b in zip(left, values, strict=True)]
    chg.set_yticks(ys, names)
    chg.set_title("Changes by outcome", fontsize=10)
    if any(left):
        chg.legend(fontsize=8)
    for axis in (adv, chg):  # counts: never a 0.5 step
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    return fig
