"""The change card posted in the approvals channel, updated in place after every decision."""

from __future__ import annotations

from bot.blocks import auto_approval as auto_blocks
from bot.blocks import deployment as deployment_blocks
from bot.blocks import schedule as schedule_blocks
from bot.blocks.common import (
    ActionId,
    Block,
    clip,
    context,
    escape,
    mention,
    mentions,
    plain,
    section,
    slack_date,
)
from bot.text import strip_invisible
from bot.views import ChangeSnapshot, state_label
from storage.models import Change, ChangeState, Decision, Stage

STATE_ICON = {
    ChangeState.PENDING_TEST_APPROVAL: ":hourglass_flowing_sand:",
    ChangeState.PENDING_PROD_APPROVAL: ":hourglass_flowing_sand:",
    ChangeState.APPROVED_FOR_TEST: ":white_check_mark:",
    ChangeState.APPROVED_FOR_PROD: ":white_check_mark:",
    ChangeState.COMPLETED: ":tada:",
    ChangeState.REJECTED: ":no_entry:",
    ChangeState.CANCELLED: ":heavy_multiplication_x:",
    ChangeState.EXPIRED: ":alarm_clock:",
    ChangeState.FAILED: ":x:",
    ChangeState.ROLLED_BACK: ":rewind:",
    ChangeState.TEST_FAILED: ":warning:",
}


def status_text(change: Change, *, test_result: str | None = None) -> str:
    """Icon and words for the change's state.

    ``test_passed`` is entered when the test deployment verified; the owner's result comes after, so the
    card says "waiting for the owner's result" until ``test_result`` is recorded."""
    if change.state is ChangeState.TEST_PASSED and test_result is None:
        return ":test_tube: *Deployed to test and verified* · waiting for the owner's test result"
    icon = STATE_ICON.get(change.state, ":large_blue_circle:")
    return f"{icon} *{state_label(change.state).capitalize()}*"


def _decided_stages(snap: ChangeSnapshot) -> list[Block]:
    """Who approved the stages already behind the change, and when (the status of a finished change too)."""
    change = snap.change
    lines = []
    for stage in Stage:
        if stage == snap.stage:
            continue  # the open stage has its own progress section
        rows = [
            a
            for a in snap.approvals
            if a.stage == stage and a.revision == change.revision and not a.stale and a.decision is Decision.APPROVE
        ]
        if rows:
            who = ", ".join(f"{mention(a.user_id)} {slack_date(a.decided_at)}" for a in rows)
            lines.append(f":white_check_mark: {stage.capitalize()} approved by {who}")
    return [context("\n".join(lines))] if lines else []


def fallback_text(change: Change) -> str:
    """Notification text (shown where blocks are not)."""
    return f"{change.key}: {escape(change.title)} ({state_label(change.state)})"


def _fields(change: Change, *, advisory_link: str | None = None) -> Block:
    def field(label: str, value: str) -> dict[str, str]:
        return {"type": "mrkdwn", "text": f"*{label}*\n{value or '—'}"}

    return {
        "type": "section",
        "fields": [
            field("Systems", ", ".join(f"`{escape(s)}`" for s in change.systems)),
            field(
                "Class",
                change.change_class.value.capitalize()
                + (" :rotating_light:" if change.change_class.value == "emergency" else ""),
            ),
            field("Requested by", mention(change.requester)),
            field("Update officer", mention(change.officer)),
            field("Update operator", mention(change.operator)),
            field("Expected downtime", escape(change.expected_downtime)),
            field("Planned test", change.planned_test or ""),
            field("Planned production", change.planned_prod or ""),
            field(
                "Linked advisory",
                f"<{advisory_link}|{escape(change.advisory_ref) or 'its post'}>"
                if advisory_link
                else escape(change.advisory_ref),
            ),
        ],
    }


def _for(delegator: str | None) -> str:
    return f" (for {mention(delegator)})" if delegator else ""


def _approval_section(snap: ChangeSnapshot) -> list[Block]:
    progress, change = snap.progress, snap.change
    if progress is None or snap.stage is None:
        return []
    when = {
        a.user_id: a.decided_at
        for a in snap.approvals
        if a.revision == change.revision and a.stage == snap.stage and a.decision is Decision.APPROVE
    }
    lines = []
    for r in progress.requirements:
        done = ", ".join(
            f"{mention(u)}{_for(progress.acting_for.get(u))} {slack_date(when[u], fmt='{date_short} {time}')}"
            for u in r.approvers
            if u in when
        )
        if r.met:
            lines.append(f":white_check_mark: {escape(r.requirement.label)}: approved by {done}")
        else:
            got = f" (approved by {done})" if done else ""
            extra = f" — the {escape(progress.fallback_group)} group can unblock it" if r.uses_fallback else ""
            lines.append(
                f":hourglass: {escape(r.requirement.label)}: {len(r.approvers)} of {r.requirement.count}"
                f"{got}; waiting for {mentions(sorted(r.candidates))}{extra}"
            )
    title = f"*{snap.stage.capitalize()} stage approval*"
    if change.approval_deadline and change.state.value.startswith("pending"):
        title += f" · expires {slack_date(change.approval_deadline)}"
    blocks = [section(title + "\n" + "\n".join(lines))]
    blocked = [r for r in progress.requirements if r.blocked]
    if blocked:
        blocks.append(
            section(
                ":warning: *Nobody eligible is left* for "
                + ", ".join(escape(r.requirement.label) for r in blocked)
                + f". Ask the {escape(progress.fallback_group)} group or change the policy."
            )
        )
    return blocks


def _buttons(snap: ChangeSnapshot) -> list[Block]:
    change = snap.change
    if snap.stage is None or not change.state.value.startswith("pending_"):
        return []
    value = f"{change.id}:{snap.stage}:{change.revision}"
    return [
        {
            "type": "actions",
            "block_id": f"decide:{change.id}",
            "elements": [
                {
                    "type": "button",
                    "action_id": ActionId.APPROVE.value,
                    "style": "primary",
                    "value": value,
                    "text": plain(f"Approve {snap.stage}"),
                    "confirm": {
                        "title": plain("Approve?"),
                        "confirm": plain("Approve"),
                        "deny": plain("Cancel"),
                        "text": {
                            "type": "mrkdwn",
                            "text": f"Approve the *{snap.stage}* stage of {change.key} (revision {change.revision})?",
                        },
                    },
                },
                {
                    "type": "button",
                    "action_id": ActionId.REJECT.value,
                    "style": "danger",
                    "value": value,
                    "text": plain("Reject"),
                },
                {"type": "button", "action_id": ActionId.NUDGE.value, "value": value, "text": plain("Nudge approvers")},
            ],
        }
    ]


def card(snap: ChangeSnapshot) -> list[Block]:
    """The full card: what, who, when, status, per-stage progress and the decision buttons."""
    change = snap.change
    blocks: list[Block] = [
        {"type": "header", "text": plain(clip(f"{change.key} · {strip_invisible(change.title)}", 150))},
        section(status_text(change, test_result=snap.test_result)),
        _fields(change, advisory_link=snap.advisory_link),
    ]
    for label, text in (
        ("Details and purpose", change.details),
        ("Technical description", change.technical),
        ("Rollback plan", change.rollback_plan),
    ):
        if text:
            blocks.append(section(f"*{label}*\n{escape(clip(text, 1200))}"))
    blocks.append({"type": "divider"})
    # readers see their own local time (<!date>); the fallback text is UTC since the card knows no system zone
    blocks.extend(schedule_blocks.card_windows(snap.windows, timezone="UTC"))
    if snap.plans and snap.stage is not None:
        lines = []
        for row in snap.plans:
            p = row.payload
            icon = ":mag:" if p.get("ok") else ":warning:"
            lines.append(
                f"{icon} `{escape(str(p.get('system')))}` ({escape(str(p.get('executor')))}): "
                f"{escape(clip(str(p.get('summary', '')), 300))}"
            )
        blocks.append(section(f"*What the {snap.stage} deployment will do* (executor preview)\n" + "\n".join(lines)))
    if snap.deployments:
        blocks.append(section("*Deployments*\n" + "\n".join(deployment_blocks.card_lines(snap.deployments))))
    blocks.extend(_decided_stages(snap))
    blocks.extend(_approval_section(snap))
    blocks.extend(auto_blocks.card_blocks(snap.auto, change_id=change.id, revision=change.revision))
    blocks.extend(_buttons(snap))
    blocks.append(
        context(
            f"Revision {change.revision} · content {change.content_hash[:12]} · "
            f"policy v{change.policy_version} · `/patch status {change.key}`"
        )
    )
    return blocks
