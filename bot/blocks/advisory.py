"""The advisory post (advisories channel), its triage controls, the not-applicable and manual-entry modals."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any

from bot import views
from bot.advisories.model import Severity
from bot.blocks.common import (
    Block,
    clip,
    context,
    escape,
    link,
    mention,
    plain,
    safe_url,
    section,
    slack_date,
)
from bot.blocks.modal import _input, _option, _text
from bot.config import Config
from bot.text import strip_invisible
from bot.views import SNOOZE_CHOICES, AdvisoryView
from storage.models import AdvisoryRecord, AdvisoryStatus


class AdvisoryAction(StrEnum):
    CREATE_CHANGE = "advisory_create_change"
    NOT_APPLICABLE = "advisory_not_applicable"
    SNOOZE = "advisory_snooze"


class AdvisoryCallback(StrEnum):
    NOT_APPLICABLE = "advisory_not_applicable_reason"
    MANUAL = "advisory_manual"


SEVERITY_ICON = {
    "critical": ":red_circle:",
    "high": ":large_orange_circle:",
    "medium": ":large_yellow_circle:",
    "low": ":white_circle:",
}
MAX_MATCH_LINES = 25


def severity_text(v: AdvisoryView) -> str:
    """``:red_circle: *Critical* (CVSS 9.8)`` plus the known-exploited badge."""
    sev = v.record.severity
    score = f" (CVSS {v.advisory.cvss_score:.1f})" if v.advisory.cvss_score is not None else ""
    basis = v.advisory.severity_basis()  # issue 9: say which source the severity came from
    score += f" · from {basis}" if basis else ""
    if v.advisory.severity_flag:
        score += " · :warning: the declared score disagreed with its vector; computed score used"
    text = f"{SEVERITY_ICON.get(sev, ':grey_question:')} *{sev.capitalize()}*{score}"
    if v.record.known_exploited:
        due = f", CISA due {v.advisory.kev_due_date}" if v.advisory.kev_due_date else ""
        text += f" · :rotating_light: *Known exploited* (CISA KEV{due})"
    return text


def status_text(v: AdvisoryView, *, tz: str = "UTC") -> str:
    """The advisory's triage state in words."""
    r = v.record
    if r.status is AdvisoryStatus.WITHDRAWN:
        return ":no_entry_sign: *Withdrawn* upstream: no action needed."
    if r.status is AdvisoryStatus.CHANGE_REQUESTED:
        return f":hammer_and_wrench: *Change requested*: CHG-{r.change_id}"
    if r.status is AdvisoryStatus.REMEDIATED:
        return f":white_check_mark: *Remediated* by CHG-{r.change_id}"
    by = (r.remediation or {}).get("triage", {}).get("by")
    who = f" (by {mention(str(by))})" if by else ""
    if r.status is AdvisoryStatus.NOT_APPLICABLE:
        return f":heavy_minus_sign: *Not applicable*{who}: {escape(clip(r.status_reason, 500))}"
    if r.status is AdvisoryStatus.SNOOZED and r.snoozed_until is not None:
        return f":zzz: *Snoozed* until {slack_date(r.snoozed_until, tz=tz)}{who}"
    loop = loop_status_text(r)
    return loop or ":large_blue_circle: *Open*"


def loop_status_text(r: AdvisoryRecord) -> str:
    """The statuses of the closed loop (issue 10): proof pending, still vulnerable, exceptions; else ""."""
    if r.status is AdvisoryStatus.REMEDIATION_PENDING:
        return f":hourglass: *Remediation pending*: CHG-{r.change_id} completed; waiting for the inventory to prove it"
    if r.status is AdvisoryStatus.STILL_VULNERABLE:
        still = "; ".join(str(s) for s in (r.remediation or {}).get("still", []))
        return f":x: *Still vulnerable* after CHG-{r.change_id}: {escape(clip(still, 300))}"
    if r.status in (AdvisoryStatus.RISK_ACCEPTED, AdvisoryStatus.NOT_AFFECTED):
        exc = (r.remediation or {}).get("exception", {})
        kind = "Risk accepted" if r.status is AdvisoryStatus.RISK_ACCEPTED else "Not affected"
        return (
            f":shield: *{kind}* until {escape(str(exc.get('until', '?')))} (approved by {exc.get('approved_by', [])})"
        )
    return ""


def match_lines(config: Config, v: AdvisoryView) -> list[str]:
    """``• `web-shop` (@owner): PyPI/flask 2.2.2 → 2.2.5`` per affected package."""
    lines = []
    for m in v.matches[:MAX_MATCH_LINES]:
        owner = mention(config.systems[m.system].owner) if m.system in config.systems else "no owner configured"
        pkg = f"`{escape(m.ecosystem)}/{escape(m.package)}`"
        if m.status == "affected":
            fixed = escape(", ".join(m.fixed)) if m.fixed else "no fixed version listed"
            fix_line = f" (fix: {escape(clip(m.remediation, 200))})" if m.remediation else ""
            lines.append(f"• `{escape(m.system)}` ({owner}): {pkg} {escape(m.installed)} → {fixed}{fix_line}")
        else:
            lines.append(
                f"• `{escape(m.system)}` ({owner}): {pkg} {escape(m.installed)}: "
                f"*needs triage* ({escape(clip(m.reason, 200))})"
            )
    if len(v.matches) > MAX_MATCH_LINES:
        lines.append(f"…and {len(v.matches) - MAX_MATCH_LINES} more")
    return lines


def _zone(config: Config, v: AdvisoryView) -> str:
    for system in v.systems:
        if system in config.systems:
            return config.systems[system].timezone
    return "UTC"


def fallback_text(v: AdvisoryView) -> str:
    """Notification text."""
    kev = " [known exploited]" if v.record.known_exploited else ""
    return f"{escape(v.record.primary_id)} ({v.record.severity}{kev}): {escape(clip(v.advisory.summary, 150))}"


def _controls(v: AdvisoryView) -> list[Block]:
    if v.record.status not in (AdvisoryStatus.OPEN, AdvisoryStatus.SNOOZED):
        return []
    value = str(v.record.id)
    return [
        {
            "type": "actions",
            "block_id": f"advisory:{value}",
            "elements": [
                {
                    "type": "button",
                    "action_id": AdvisoryAction.CREATE_CHANGE.value,
                    "text": plain("Create change request"),
                    "style": "primary",
                    "value": value,
                },
                {
                    "type": "button",
                    "action_id": AdvisoryAction.NOT_APPLICABLE.value,
                    "text": plain("Not applicable"),
                    "value": value,
                },
                {
                    "type": "button",
                    "action_id": "exception_request",  # bot.blocks.exception.ExceptionActionId.REQUEST
                    "text": plain("Request exception"),
                    "value": value,
                },
                {
                    "type": "static_select",
                    "action_id": AdvisoryAction.SNOOZE.value,
                    "placeholder": plain("Snooze"),
                    "options": [_option(f"{value}:{c}", f"Snooze {c}") for c in SNOOZE_CHOICES],
                },
            ],
        }
    ]


def post(config: Config, v: AdvisoryView) -> list[Block]:
    """The advisory post: severity, badge, affected systems with installed → fixed, owners, due date."""
    tz = _zone(config, v)
    rec, adv = v.record, v.advisory
    blocks: list[Block] = [
        {
            "type": "header",
            "text": plain(clip(strip_invisible(f"{rec.primary_id} · {adv.summary or 'Advisory'}"), 150)),
        },
        section(f"{severity_text(v)}\n{status_text(v, tz=tz)}"),
    ]
    lines = match_lines(config, v)
    if lines:
        blocks.append(section("*Affected systems*\n" + "\n".join(lines)))
    elif rec.status is not AdvisoryStatus.WITHDRAWN:
        blocks.append(section("*Affected systems*\nNone of our systems is known to be affected."))
    if rec.due is not None and rec.status is not AdvisoryStatus.WITHDRAWN:
        band = v.tier or views.effective_severity(rec.severity, known_exploited=rec.known_exploited)
        blocks.append(section(f"*SLA due* {slack_date(rec.due, tz=tz)} ({escape(band)})"))
    if v.tier and rec.status is not AdvisoryStatus.WITHDRAWN:
        why = "; ".join(escape(w) for w in v.why)
        blocks.append(section(f"*Priority* {escape(v.tier)}: {why}"))
    if v.arrival and rec.status is not AdvisoryStatus.WITHDRAWN:
        blocks.append(section(f":hourglass: *Already overdue*: {escape(v.arrival)}."))
    if adv.details and adv.details != adv.summary:
        blocks.append(section(escape(clip(adv.details, 600))))
    blocks.extend(_controls(v))
    aliases = ", ".join(escape(a) for a in adv.aliases[:8]) or "none"
    ref_url = next((u for u in (safe_url(r) for r in adv.references) if u), None)
    refs = f" · {link(ref_url, 'reference')}" if ref_url else ""
    blocks.append(context(f"Sources: {escape(adv.source)} · aliases: {aliases}{refs}"))
    return blocks


def listing_lines(config: Config, views: list[AdvisoryView]) -> list[str]:
    """One line per advisory for ``/patch advisories``."""
    out = []
    for v in views:
        due = f" · due {slack_date(v.record.due, fmt='{date_short}', tz=_zone(config, v))}" if v.record.due else ""
        kev = " :rotating_light:" if v.record.known_exploited else ""
        systems = ", ".join(f"`{escape(s)}`" for s in v.systems) or "no system"
        out.append(
            f"• *{escape(v.record.primary_id)}* {v.record.severity}{kev} — {systems}{due} "
            f"({v.record.status.value.replace('_', ' ')})"
        )
    return out


def listing_text(config: Config, views: list[AdvisoryView], *, scope: str, page: int, total: int, per_page: int) -> str:
    """A ``/patch advisories`` reply: one page of lines, and the command for the next page while there is one."""
    if total == 0:
        return f"No advisories ({escape(scope)})."
    pages = -(-total // per_page)
    if not views:
        return f"*Advisories ({escape(scope)})*: there are {total}, on {pages} page(s); page {page} is past the end."
    first = (page - 1) * per_page + 1
    head = f"*Advisories ({escape(scope)})*: {first}–{first + len(views) - 1} of {total}"
    lines = [head + (f" (page {page} of {pages})" if pages > 1 else ""), *listing_lines(config, views)]
    if page < pages:
        lines.append(f"Next {min(per_page, total - page * per_page)}: `/patch advisories {escape(scope)} {page + 1}`")
    if pages > 1:
        system = f" --system {escape(scope)}" if scope in config.systems else ""
        lines.append(
            f"Every one with installed and fixed versions, as JSON: `patchwarden advisories list{system} --json`"
        )
    return "\n".join(lines)


def not_applicable_modal(v: AdvisoryView, *, metadata: dict[str, Any]) -> dict[str, Any]:
    """Ask for the mandatory reason why an advisory does not apply."""
    return {
        "type": "modal",
        "callback_id": AdvisoryCallback.NOT_APPLICABLE.value,
        "title": plain("Not applicable"),
        "submit": plain("Save"),
        "close": plain("Cancel"),
        "private_metadata": json.dumps(metadata),
        "blocks": [
            section(f"*{escape(v.record.primary_id)}* · {escape(clip(v.advisory.summary, 200))}"),
            _input("reason", "Why does it not apply? (audited)", _text(None, multiline=True, max_length=2000)),
        ],
    }


def manual_modal(*, metadata: dict[str, Any]) -> dict[str, Any]:
    """The manual advisory form."""
    severities = [s for s in Severity if s is not Severity.NONE]
    return {
        "type": "modal",
        "callback_id": AdvisoryCallback.MANUAL.value,
        "title": plain("Add an advisory"),
        "submit": plain("Add"),
        "close": plain("Cancel"),
        "private_metadata": json.dumps(metadata),
        "blocks": [
            _input("advisory_id", "Advisory id", _text(None, max_length=100, placeholder="e.g. CVE-2026-1234")),
            _input("summary", "Summary", _text(None, max_length=500)),
            _input(
                "severity",
                "Severity",
                {
                    "type": "static_select",
                    "options": [_option(s.value, s.value.capitalize()) for s in severities],
                    "initial_option": _option(Severity.UNKNOWN.value, Severity.UNKNOWN.value.capitalize()),
                },
            ),
            _input("ecosystem", "Ecosystem", _text(None, max_length=64, placeholder="e.g. PyPI or Debian:12")),
            _input("package", "Package", _text(None, max_length=200, placeholder="e.g. openssl")),
            _input(
                "fixed",
                "Fixed in version",
                _text(None, max_length=100),
                optional=True,
                hint="Empty: every version is affected.",
            ),
        ],
    }


def digest_text(system: str, total: int) -> str:
    """Notification text of a digest."""
    return f"{total} advisories newly affect {system}"


def digest(
    config: Config,
    *,
    system: str,
    counts: list[tuple[str, int]],
    top: list[AdvisoryView],
    total: int,
    commands: tuple[str, str],
) -> list[Block]:
    """One message for many new matches of a system: counts by tier, the most urgent with buttons, the rest."""
    tz = config.systems[system].timezone if system in config.systems else "UTC"
    owner = mention(config.systems[system].owner) if system in config.systems else "no owner configured"
    by_tier = " · ".join(f"*{n}* {escape(t or 'unranked')}" for t, n in counts)
    out: list[Block] = [
        {"type": "header", "text": plain(clip(f"{total} advisories newly affect {system}", 150))},
        section(f"`{escape(system)}` ({owner}): {by_tier}"),
    ]
    for v in top:
        due = f" · due {slack_date(v.record.due, fmt='{date_short}', tz=tz)}" if v.record.due else ""
        mine = [m for m in v.matches if m.system == system][:3]
        pkgs = ", ".join(f"`{escape(m.package)}` {escape(m.installed)}" for m in mine)
        why = f"\n{'; '.join(escape(w) for w in v.why)}" if v.why else ""
        arrival = f"\n:hourglass: {escape(v.arrival)}" if v.arrival else ""
        line = f"*{escape(v.record.primary_id)}* ({escape(v.tier or v.record.severity)}{due}): {pkgs}"
        out.append(section(clip(f"{line} · {escape(clip(v.advisory.summary, 120))}{why}{arrival}", 2900)))
        out.extend(_controls(v))
    rest = total - len(top)
    more = f"…and {rest} more. " if rest > 0 else ""
    slack, cli = (escape(c) for c in commands)
    out.append(context(f"{more}Every one, page by page: `{slack}`; with installed and fixed versions as JSON: `{cli}`"))
    return out
