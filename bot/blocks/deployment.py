"""Thread messages of a deployment: results per target, and the Roll back / Keep decision."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from enum import StrEnum
from typing import Any

from bot.blocks.common import Block, clip, escape, mention, mentions, plain, section
from bot.executors.base import StepResult, TargetStatus
from storage.models import Deployment, Stage

STATUS_ICON = {
    TargetStatus.OK: ":white_check_mark:",
    TargetStatus.CHANGED: ":large_green_circle:",
    TargetStatus.FAILED: ":x:",
    TargetStatus.UNREACHABLE: ":electric_plug:",
    TargetStatus.SKIPPED: ":white_circle:",
}
MAX_TARGET_LINES = 25


class DeployActionId(StrEnum):
    ROLLBACK = "deploy_rollback"
    KEEP = "deploy_keep"
    RETRY = "deploy_retry"  # a rollout stopped at a ring gate: run the rings that did not hold again
    MISSED_RUN = "window_missed_run"
    MISSED_NEXT = "window_missed_next"
    PRESENCE_CHECK_IN = "presence_check_in"
    INTERRUPTED_COMPLETED = "interrupted_completed"
    INTERRUPTED_FAILED = "interrupted_failed"
    INTERRUPTED_RETRY = "interrupted_retry"


def presence_blocks(*, window_id: int, text: str) -> list[Block]:
    """``prod_presence: required``: the owner's Check in button for a waiting prod window."""
    return [
        section(text),
        {
            "type": "actions",
            "block_id": f"presence:{window_id}",
            "elements": [
                {
                    "type": "button",
                    "action_id": DeployActionId.PRESENCE_CHECK_IN.value,
                    "style": "primary",
                    "value": str(window_id),
                    "text": plain("I'm here: check in"),
                }
            ],
        },
    ]


def step_lines(system: str, result: StepResult) -> list[str]:
    """One summary line for a system's step, then one line per target (clipped for large fleets)."""
    icon = ":white_check_mark:" if result.ok else (":hourglass:" if result.timed_out else ":x:")
    lines = [f"{icon} `{escape(system)}` {result.step}: {escape(result.summary)}"]
    targets = list(result.targets)
    for t in targets[:MAX_TARGET_LINES]:
        detail = f" — {escape(clip(t.detail, 120))}" if t.detail else ""
        lines.append(f"    {STATUS_ICON.get(t.status, '')} {escape(t.target)}: {t.status}{detail}")
    if len(targets) > MAX_TARGET_LINES:
        failed = sum(1 for t in targets if t.status in (TargetStatus.FAILED, TargetStatus.UNREACHABLE))
        lines.append(f"    …and {len(targets) - MAX_TARGET_LINES} more targets ({failed} failed or unreachable in all)")
    return lines


def results_text(title: str, results: Iterable[tuple[str, StepResult]]) -> str:
    """A titled block of step results, one system after another."""
    lines = [title]
    for system, result in results:
        lines.extend(step_lines(system, result))
    return clip("\n".join(lines), 3900)


def decision_blocks(
    *, change_id: int, change_key: str, stage: Stage, owners: Sequence[str], summary: str, retry: bool = False
) -> list[Block]:
    """Verification failed and the policy asks: Roll back / Keep (and, for a ring rollout, Retry) buttons."""
    value = f"{change_id}:{stage}"
    retry_button = {"type": "button", "action_id": DeployActionId.RETRY.value, "value": value, "text": plain("Retry")}
    return [
        section(
            f":warning: *Verification of {change_key} ({stage}) failed.* {escape(summary)}\n"
            f"{mentions(sorted(owners))}: roll back"
            + (
                " the rings that ran, keep them as they are, or retry the rings that did not hold?"
                if retry
                else ", or keep the deployment as it is?"
            )
        ),
        {
            "type": "actions",
            "block_id": f"verify_decision:{change_id}",
            "elements": [
                {
                    "type": "button",
                    "action_id": DeployActionId.ROLLBACK.value,
                    "style": "danger",
                    "value": value,
                    "text": plain("Roll back"),
                    "confirm": {
                        "title": plain("Roll back?"),
                        "confirm": plain("Roll back"),
                        "deny": plain("Cancel"),
                        "text": {"type": "mrkdwn", "text": f"Run the rollback of {change_key} ({stage}) now?"},
                    },
                },
                {"type": "button", "action_id": DeployActionId.KEEP.value, "value": value, "text": plain("Keep")},
                *([retry_button] if retry else []),
            ],
        },
    ]


def missed_blocks(*, window_id: int, change_key: str, text: str) -> list[Block]:
    """A missed window with ``missed_window: ask``: Run now / Next window buttons."""
    value = str(window_id)
    return [
        section(text),
        {
            "type": "actions",
            "block_id": f"missed:{window_id}",
            "elements": [
                {
                    "type": "button",
                    "action_id": DeployActionId.MISSED_RUN.value,
                    "style": "primary",
                    "value": value,
                    "text": plain("Run now"),
                    "confirm": {
                        "title": plain("Deploy now?"),
                        "confirm": plain("Deploy"),
                        "deny": plain("Cancel"),
                        "text": {"type": "mrkdwn", "text": f"Deploy {change_key} now, outside its missed window?"},
                    },
                },
                {
                    "type": "button",
                    "action_id": DeployActionId.MISSED_NEXT.value,
                    "value": value,
                    "text": plain("Next window"),
                },
            ],
        },
    ]


def card_lines(rows: Sequence[Deployment]) -> list[str]:
    """Short lines for the change card: the latest deployment per stage and system."""
    latest: dict[tuple[str, str], Deployment] = {}
    for d in rows:
        latest[(d.stage, d.system)] = d
    lines = []
    for (stage, system), d in sorted(latest.items()):
        counts: dict[str, int] = {}
        for step in d.steps[-1:]:
            for t in step.get("targets", []):
                counts[t["status"]] = counts.get(t["status"], 0) + 1
        per = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        bypass = (
            f" · :rotating_light: ran outside a window (`--now` by {mention(d.started_by)}): "
            f"{escape(clip(d.bypass_reason, 300))}"
            if d.window_id is None and d.bypass_reason
            else ""
        )
        lines.append(
            f"• {stage} · `{escape(system)}` · {escape(d.executor)}: *{d.status.value.replace('_', ' ')}*"
            + (f" ({per})" if per else "")
            + bypass
        )
        lines.extend(ring_lines(d.rings or []))
        if d.reboot and d.reboot.get("required") and not d.reboot.get("done"):
            when = d.reboot.get("scheduled")
            lines.append("    :repeat: reboot required" + (f", scheduled {escape(str(when))}" if when else ""))
    return lines


RING_ICONS = {
    "succeeded": ":white_check_mark:", "failed": ":x:", "refused": ":no_entry_sign:",
    "running": ":arrows_counterclockwise:", "pending": ":white_circle:",
}  # fmt: skip


def ring_lines(rings: Sequence[dict[str, Any]]) -> list[str]:
    """One card line per ring: its icon, name, status and size."""
    return [
        f"    {RING_ICONS.get(str(r.get('status')), ':white_circle:')} ring *{escape(str(r.get('name')))}* "
        f"{escape(str(r.get('status')))} ({len(r.get('targets') or [])} target(s))"
        for r in rings
    ]


def interrupted_blocks(*, change_id: int, change_key: str, stage: Stage, text: str) -> list[Block]:
    """A run lost its owner process: Completed / Failed - roll back / Retry, for the owner to say what happened."""
    value = f"{change_id}:{stage}"
    A = DeployActionId
    return [
        section(text),
        {
            "type": "actions",
            "block_id": f"interrupted:{change_id}:{stage}",
            "elements": [
                {
                    "type": "button",
                    "action_id": A.INTERRUPTED_COMPLETED.value,
                    "value": value,
                    "style": "primary",
                    "text": plain("Completed"),
                },
                {
                    "type": "button",
                    "action_id": A.INTERRUPTED_FAILED.value,
                    "value": value,
                    "style": "danger",
                    "text": plain("Failed - roll back"),
                    "confirm": {
                        "title": plain("Roll back?"),
                        "confirm": plain("Roll back"),
                        "deny": plain("Cancel"),
                        "text": {"type": "mrkdwn", "text": f"Run the rollback of {change_key} ({stage}) now?"},
                    },
                },
                {"type": "button", "action_id": A.INTERRUPTED_RETRY.value, "value": value, "text": plain("Retry")},
            ],
        },
    ]
