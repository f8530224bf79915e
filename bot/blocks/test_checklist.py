"""The test result form with a scenario checklist and the log review's findings (issue 12, item 3)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from bot.blocks.common import Block, clip, context, escape, plain, section

CALLBACK = "test_checklist_form"
CRITICALITIES = ("low", "medium", "high", "critical")
RESULT_LABELS = {"as_expected": "As expected", "deviates": "Deviates"}
MAX_SCENARIOS = 40  # Slack allows 100 blocks in a modal: 2 per scenario plus the rest (config caps it at 50)


def _option(value: str, label: str) -> dict[str, Any]:
    return {"text": plain(label), "value": value}


def findings_text(review: dict[str, Any]) -> str:
    """The log review as mrkdwn: each finding's source, line and text; the count beyond those shown."""
    findings: list[dict[str, Any]] = review.get("findings", [])
    total = int(review.get("total", len(findings)))
    if not review.get("sources"):
        return ""
    if not total:
        read = ", ".join(escape(str(s["source"])) for s in review["sources"])
        return f":mag: Log review: no error pattern found in {read}."
    lines = [f":warning: Log review: *{total} finding(s)*:"]
    for f in findings[:10]:
        where = f"{escape(str(f['source']))}" + (f":{f['line']}" if f.get("line") else "")
        lines.append(f"• `{where}` {escape(clip(str(f['text']), 200))}")
    if total > 10:
        lines.append(f"… and {total - 10} more (all in the test report)")
    for s in review["sources"]:
        if s.get("truncated"):
            lines.append(f"_{escape(str(s['source']))} is {s['bytes']} bytes: only its end was read._")
    return "\n".join(lines)


def checklist_modal(
    *, change_key: str, scenarios: Sequence[Any], review: dict[str, Any], metadata: dict[str, Any]
) -> dict[str, Any]:
    """Each scenario as expected / deviates with a note, the findings, and criticality and description."""
    blocks: list[Block] = [
        section(f"Test result of *{escape(change_key)}*: compare each scenario with what is expected.")
    ]
    for s in list(scenarios)[:MAX_SCENARIOS]:
        blocks.append(
            {
                "type": "input",
                "block_id": f"scenario:{s.index}",
                "label": plain(clip(f"{s.system}: {s.name}", 150)),
                "hint": plain(clip(f"Expected: {s.expected}", 150)),
                "element": {
                    "type": "static_select",
                    "action_id": "value",
                    "options": [_option(k, v) for k, v in RESULT_LABELS.items()],
                },
            }
        )
        blocks.append(
            {
                "type": "input",
                "block_id": f"note:{s.index}",
                "optional": True,
                "label": plain(clip(f"Note on {s.name}", 150)),
                "element": {"type": "plain_text_input", "action_id": "value", "max_length": 1000},
            }
        )
    found = findings_text(review)
    if found:
        blocks.append(section(clip(found, 2900)))
    blocks.append(context("A deviation or a log finding is a problem: pick its criticality."))
    blocks.append(
        {
            "type": "input",
            "block_id": "criticality",
            "optional": True,
            "label": plain("Criticality (for problems)"),
            "element": {
                "type": "static_select",
                "action_id": "value",
                "options": [_option(c, c.capitalize()) for c in CRITICALITIES],
            },
        }
    )
    blocks.append(
        {
            "type": "input",
            "block_id": "description",
            "optional": True,
            "label": plain("What went wrong (optional)"),
            "element": {"type": "plain_text_input", "action_id": "value", "multiline": True, "max_length": 3000},
        }
    )
    return {
        "type": "modal",
        "callback_id": CALLBACK,
        "title": plain("Test result"),
        "submit": plain("Record"),
        "close": plain("Cancel"),
        "private_metadata": json.dumps(metadata),
        "blocks": blocks,
    }


def read_answers(values: dict[str, str]) -> dict[int, tuple[str, str]]:
    """``{index: (result, note)}`` from the submitted values of ``checklist_modal``."""
    out: dict[int, tuple[str, str]] = {}
    for key, value in values.items():
        kind, _, index = key.partition(":")
        if kind in ("scenario", "note") and index.isdigit():
            result, note = out.get(int(index), ("", ""))
            out[int(index)] = (value, note) if kind == "scenario" else (result, value)
    return out


def report_text(change_key: str, report: dict[str, Any]) -> str:
    """The recorded checklist and findings as a thread note (the test report in the thread)."""
    lines = [f":clipboard: Test report of {escape(change_key)}:"]
    for r in report.get("scenarios", []):
        mark = ":white_check_mark:" if r["result"] == "as_expected" else ":x:"
        note = f": {escape(clip(r['note'], 300))}" if r.get("note") else ""
        lines.append(f"{mark} {escape(r['name'])} ({RESULT_LABELS.get(r['result'], r['result'])}){note}")
    total = int(report.get("log_findings_total", 0))
    lines.append(f":mag: {total} log finding(s)" if total else ":mag: no log finding")
    for f in report.get("log_findings", [])[:10]:
        lines.append(f"• `{escape(str(f['source']))}:{f['line']}` {escape(clip(str(f['text']), 200))}")
    return clip("\n".join(lines), 3900)
