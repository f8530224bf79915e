"""Test scenarios and log review (issue 12, item 3; BSI M 2.421).

"A representative selection of typical application scenarios should be defined and tested ... results
documented and compared with the expected results ... all log files created during the test must be
examined for evidence of malfunction."

Per system, ``test_scenarios`` become a checklist on the test result form (each as expected or deviates,
with a note), and ``log_review`` scans the test deployment's output and the named log files for the
configured patterns. The scan runs once, when the form is first opened, and is kept as a ``log_review``
report (and control-log entry), so what the owner saw is what is recorded. A deviation or a finding makes
the result "problems": a criticality is required, as for any problem, and risk decisions follow.

Bounds (each one said, never silent): of each file only the last ``max_bytes`` are read (``truncated``
says so); lines are matched on their first ``LINE_CHARS`` characters; the report lists the first
``FINDINGS_SHOWN`` findings and counts all of them. Only paths from the configuration are read.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot.config import Config, LogReview, TestScenario
from bot.errors import InputError
from bot.workflows import acceptance, lifecycle
from bot.workflows.acceptance import StageStep
from storage import deployments, reports
from storage.models import Change

LINE_CHARS = 8192
FINDINGS_SHOWN = 100
RESULTS = ("as_expected", "deviates")


@dataclass(frozen=True)
class Scenario:
    """One checklist row: the system it belongs to and what is expected."""

    index: int
    system: str
    name: str
    expected: str


def scenarios(config: Config, change: Change) -> list[Scenario]:
    """The checklist of the change's systems, numbered in order."""
    out: list[Scenario] = []
    for system in change.systems:
        items: list[TestScenario] = config.systems[system].test_scenarios
        for s in items:
            out.append(Scenario(len(out), system, s.name, s.expected))
    return out


def has_form(config: Config, change: Change) -> bool:
    """True when a system of the change defines test scenarios or a log review."""
    return any(config.systems[s].test_scenarios or config.systems[s].log_review for s in change.systems)


def scan_text(text: str, *, source: str, patterns: list[re.Pattern[str]]) -> list[dict[str, Any]]:
    """Every line of ``text`` matching a pattern: ``{source, line, text, pattern}`` (line numbers from 1)."""
    found: list[dict[str, Any]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        head = line[:LINE_CHARS]
        for p in patterns:
            if p.search(head):
                found.append({"source": source, "line": number, "text": head[:300], "pattern": p.pattern})
                break
    return found


def _read_tail(path: Path, limit: int) -> tuple[str, int, bool]:
    size = path.stat().st_size
    with path.open("rb") as f:
        if size > limit:
            f.seek(size - limit)
        data = f.read(limit)
    return data.decode("utf-8", errors="replace"), size, size > limit


async def _scan_system(session: AsyncSession, change: Change, system: str, review: LogReview) -> dict[str, Any]:
    patterns = [re.compile(p) for p in review.patterns]
    findings: list[dict[str, Any]] = []
    sources: list[dict[str, Any]] = []
    if review.executor_output:
        runs = [d for d in await deployments.for_change(session, change.id, stage="test") if d.system == system]
        if runs:
            source = f"{system}: test deployment output"
            findings += await asyncio.to_thread(scan_text, runs[-1].output, source=source, patterns=patterns)
            sources.append({"source": f"{system}: test deployment output", "bytes": len(runs[-1].output)})
    for path in review.paths:
        try:
            text, size, truncated = await asyncio.to_thread(_read_tail, path, review.max_bytes)
        except OSError as exc:
            # a log that cannot be examined is evidence we lack: it counts as a finding (fail closed)
            why = exc.strerror or type(exc).__name__
            findings.append({"source": str(path), "line": 0, "text": f"could not be read: {why}", "pattern": ""})
            sources.append({"source": str(path), "error": why})
            continue
        findings += await asyncio.to_thread(scan_text, text, source=str(path), patterns=patterns)
        sources.append({"source": str(path), "bytes": size, "truncated": truncated})
    return {"findings": findings, "sources": sources}


async def review_logs(session: AsyncSession, *, config: Config, change: Change, now: datetime) -> dict[str, Any]:
    """The change's log review: scanned once (kept as a report and logged), then read back."""
    earlier = await reports.for_change(session, change.id, kind="log_review")
    if earlier:
        return dict(earlier[0].payload)
    findings: list[dict[str, Any]] = []
    sources: list[dict[str, Any]] = []
    for system in change.systems:
        review = config.systems[system].log_review
        if review is not None:
            part = await _scan_system(session, change, system, review)
            findings += part["findings"]
            sources += part["sources"]
    if not sources and not findings:
        return {"findings": [], "total": 0, "sources": []}
    payload = {"findings": findings[:FINDINGS_SHOWN], "total": len(findings), "sources": sources}
    await reports.add(session, change_id=change.id, kind="log_review", user_id="patchwarden", now=now, payload=payload)
    await lifecycle.log(
        session,
        config=config,
        now=now,
        actor="patchwarden",
        action="log_review",
        change=change,
        findings=len(findings),
        sources=[s["source"] for s in sources],
    )
    return payload


@dataclass(frozen=True)
class Form:
    """What the test result form shows: the change, its checklist and its log review."""

    change: Change
    scenarios: list[Scenario]
    review: dict[str, Any]


async def form_for(session: AsyncSession, *, config: Config, change_id: int, now: datetime) -> Form | None:
    """The checklist form of the change, or None when its systems define no scenarios and no log review."""
    change = await lifecycle.load(session, change_id, lock=True)
    if not has_form(config, change):
        return None
    return Form(change, scenarios(config, change), await review_logs(session, config=config, change=change, now=now))


async def record(
    session: AsyncSession,
    *,
    config: Config,
    change_id: int,
    user: str,
    answers: dict[int, tuple[str, str]],
    criticality: str,
    description: str,
    now: datetime,
) -> StageStep:
    """Record the checklist: all as expected and no finding → passed; else problems (criticality required).

    ``answers`` maps a scenario index to (``as_expected`` | ``deviates``, note); a deviation needs a note."""
    change = await lifecycle.load(session, change_id)
    checklist = scenarios(config, change)
    errors: dict[str, str] = {}
    rows: list[dict[str, Any]] = []
    for s in checklist:
        result, note = answers.get(s.index, ("", ""))
        note = note.strip()
        if result not in RESULTS:
            errors[f"scenario:{s.index}"] = "Say whether this went as expected."
        elif result == "deviates" and not note:
            errors[f"note:{s.index}"] = "Describe the deviation."
        rows.append({"system": s.system, "name": s.name, "expected": s.expected, "result": result, "note": note})
    review = await review_logs(session, config=config, change=change, now=now)
    deviations = [r for r in rows if r["result"] == "deviates"]
    problems = bool(deviations) or review["total"] > 0
    if problems and criticality not in acceptance.CRITICALITIES:
        errors["criticality"] = "A deviation or a log finding needs a criticality, like any problem."
    if errors:
        raise InputError("invalid test checklist", field_errors=errors)
    extra = {"scenarios": rows, "log_findings": review["findings"], "log_findings_total": review["total"]}
    if not problems:
        step = await acceptance.record_passed(
            session, config=config, change_id=change_id, user=user, now=now, extra=extra
        )
        return replace(step, report=extra)
    summary = "; ".join(
        [
            *(f"{r['name']} deviates: {r['note']}" for r in deviations),
            *([f"{review['total']} log finding(s)"] if review["total"] else []),
        ]
    )
    step = await acceptance.record_problems(
        session,
        config=config,
        change_id=change_id,
        user=user,
        criticality=criticality,
        description=description.strip() or summary,
        now=now,
        extra=extra,
    )
    return replace(step, report=extra)


async def json_fields(session: AsyncSession, change: Change) -> dict[str, Any]:
    """``test_scenarios`` (``[{name, result, note}]``) and ``log_findings`` for ``changes show --json``."""
    results = await reports.for_change(session, change.id, kind="test_result")
    payload = results[-1].payload if results else {}
    rows = payload.get("scenarios", [])
    findings = payload.get("log_findings")
    if findings is None:
        review = await reports.for_change(session, change.id, kind="log_review")
        findings = review[0].payload.get("findings", []) if review else []
    return {
        "test_scenarios": [{"name": r["name"], "result": r["result"], "note": r["note"]} for r in rows],
        "log_findings": findings,
    }
