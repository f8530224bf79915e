"""The compliance report: per system, open and overdue advisories, mean time to remediate, change outcomes.

Definitions (the report's contract; the CSV/JSON columns carry these names):

* **open** — advisories affecting the system whose status is open, change requested or snoozed;
* **overdue** — open ones whose SLA due date (``policy.sla_days`` / KEV due date) has passed;
* **time to remediate** — only over *verified* remediations (the inventory after the change proved the fix,
  ``workflows.remediation``): from when patchwarden first saw the advisory to that verification, in days;
  mean and p90 (nearest rank), overall and per severity (``ttr_by_severity``);
* **open exceptions** — approved exceptions on the system with their kind and expiry;
* **still vulnerable** — advisories whose change completed but whose inventory still shows an affected
  version, with the change;
* **changes by outcome** — every change touching the system, counted by its final state, or ``open``;
* **documentation pending** — completed changes touching the system whose owner or update officer has not
  yet confirmed that the technical documentation was revised (``docs_pending``).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from sqlalchemy.ext.asyncio import AsyncSession

from bot.config import Config
from storage import docs as docs_store
from storage import exceptions as exception_store
from storage import overview
from storage.models import TERMINAL, AdvisoryStatus, ExceptionState

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
    p90_days_to_remediate: float | None = None
    ttr_by_severity: dict[str, dict[str, float | int | None]] = field(default_factory=dict)
    open_exceptions: list[dict[str, str]] = field(default_factory=list)
    still_vulnerable: list[dict[str, str | int | None]] = field(default_factory=list)
    docs_pending: int = 0


def p90(values: list[float]) -> float | None:
    """The 90th percentile by nearest rank (None for no values)."""
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)], 1)


def _stats(days: list[float]) -> dict[str, float | int | None]:
    return {"count": len(days), "mean": round(sum(days) / len(days), 1) if days else None, "p90": p90(days)}


async def build(
    session: AsyncSession, *, config: Config, now: datetime, systems: list[str] | None = None
) -> list[SystemReport]:
    """The report for ``systems`` (default: every configured system), in name order."""
    names = sorted(systems or config.systems)
    rows = await overview.system_advisories(session, systems=names)
    all_changes = await overview.all_changes(session)
    exceptions = await exception_store.in_states(session, [ExceptionState.APPROVED])
    undocumented = await docs_store.pending_change_ids(session)
    out = []
    for name in names:
        mine = [r.advisory for r in rows if r.system == name]
        open_ = [a for a in mine if a.status in overview.OPEN_ADVISORIES]
        overdue = [a for a in open_ if a.due is not None and a.due < now]
        days: list[float] = []
        by_severity: dict[str, list[float]] = {}
        for a in mine:
            if a.status is not AdvisoryStatus.REMEDIATED or a.remediated_at is None:
                continue
            if "verified_at" not in a.remediation:
                continue  # a completed change is not proof; only verified remediations count
            value = max(0.0, (a.remediated_at - a.first_seen).total_seconds() / 86400)
            days.append(value)
            by_severity.setdefault(a.severity, []).append(value)
        ids = {a.id: a.primary_id for a in mine}
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
                p90_days_to_remediate=p90(days),
                ttr_by_severity={k: _stats(v) for k, v in sorted(by_severity.items())},
                open_exceptions=[
                    {"advisory": ids[e.advisory_id], "kind": e.kind.value, "until": e.until.isoformat()}
                    for e in exceptions
                    if e.system == name and e.advisory_id in ids
                ],
                still_vulnerable=[
                    {
                        "advisory": a.primary_id,
                        "change": a.change_id,
                        "still": "; ".join(a.remediation.get("still", [])),
                    }
                    for a in mine
                    if a.status is AdvisoryStatus.STILL_VULNERABLE and "still" in a.remediation
                ],
                docs_pending=sum(1 for c in all_changes if name in c.systems and c.id in undocumented),
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
            "p90_days_to_remediate",
            "open_exceptions",
            "still_vulnerable",
            "docs_pending",
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
                "" if r.p90_days_to_remediate is None else r.p90_days_to_remediate,
                len(r.open_exceptions),
                len(r.still_vulnerable),
                r.docs_pending,
            ]
        )
    return buf.getvalue()


def to_text(reports: list[SystemReport]) -> str:
    """A short mrkdwn summary for Slack (system names come from the configuration, not from users)."""
    lines = ["*Compliance report*"]
    for r in reports:
        mttr = "—" if r.mean_days_to_remediate is None else f"{r.mean_days_to_remediate} d"
        if r.p90_days_to_remediate is not None:
            mttr += f" (p90 {r.p90_days_to_remediate} d, verified only)"
        done = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in r.changes.items() if v) or "none"
        flag = " :rotating_light:" if r.overdue_advisories else ""
        lines.append(
            f"• *{r.system}*: {r.open_advisories} open advisories, {r.overdue_advisories} overdue{flag}; "
            f"mean time to remediate {mttr}; changes: {done}"
            + (f"; {len(r.open_exceptions)} open exception(s)" if r.open_exceptions else "")
            + (f"; {len(r.still_vulnerable)} still vulnerable after a change" if r.still_vulnerable else "")
            + (f"; {r.docs_pending} with documentation pending" if r.docs_pending else "")
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
