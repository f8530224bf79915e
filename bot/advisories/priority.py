"""Priority tiers of matches: KEV, EPSS, severity and the system's exposure, by the policy's rules.

``policy.priority`` is a list of ``{tier, when}`` rules; the first whose conditions all hold names the
tier (see :class:`bot.config.PriorityWhen`). Without rules the tier is the severity band, a known-exploited
advisory counting as critical (the behaviour before tiers existed), so ``sla_days`` by severity still works.

KEV and EPSS are different kinds of evidence and the words say so: a KEV entry is CISA's statement that
the vulnerability *is exploited*; an EPSS score is FIRST's *estimate* of the probability of exploitation
in the next 30 days.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from bot.config import SEVERITY_RANK, Exposure, Policy, PriorityWhen


@dataclass(frozen=True)
class Signals:
    """What the priority of one match is decided from."""

    severity: str
    kev: bool = False
    kev_added: date | None = None
    epss: float | None = None
    percentile: float | None = None
    exposure: Exposure = Exposure.INTERNAL


def band(severity: str, *, kev: bool) -> str:
    """The severity band, known-exploited counting as critical."""
    return "critical" if kev else severity


def _holds(when: PriorityWhen, s: Signals) -> bool:
    if when.kev is not None and when.kev != s.kev:
        return False
    if when.epss_at_least is not None and (s.epss is None or s.epss < when.epss_at_least):
        return False
    if when.percentile_at_least is not None and (s.percentile is None or s.percentile < when.percentile_at_least):
        return False
    if when.exposure is not None:
        allowed = when.exposure if isinstance(when.exposure, list) else [when.exposure]
        if s.exposure not in allowed:
            return False
    if when.severity_at_least is not None:
        have = SEVERITY_RANK.get(band(s.severity, kev=False), 0)
        if have < SEVERITY_RANK[when.severity_at_least]:
            return False
    return True


def tier(policy: Policy, s: Signals) -> str:
    """The first rule that holds names the tier; no rule holds (or none configured): the severity band."""
    for rule in policy.priority:
        if _holds(rule.when, s):
            return rule.tier
    return band(s.severity, kev=s.kev)


def sla_days(policy: Policy, name: str) -> int:
    """Days allowed for a tier or band; names the policy does not list (unknown, none) get its longest period."""
    return policy.sla_days.get(name, max(policy.sla_days.values(), default=90))


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def reasons(s: Signals) -> list[str]:
    """Why, in words: ``in KEV since 2024-07-09 (exploited)``, ``EPSS 0.97 (99th percentile)``, ``internet-facing``."""
    out: list[str] = []
    if s.kev:
        since = f" since {s.kev_added.isoformat()}" if s.kev_added else ""
        out.append(f"in CISA KEV{since}: exploitation confirmed")
    if s.epss is not None:
        pct = f" ({_ordinal(int(s.percentile * 100))} percentile)" if s.percentile is not None else ""
        out.append(f"EPSS {s.epss:.2f}{pct}: estimated chance of exploitation within 30 days")
    out.append(f"severity {s.severity}")
    if s.exposure is Exposure.INTERNET:
        out.append("internet-facing")
    elif s.exposure is Exposure.ISOLATED:
        out.append("isolated system")
    return out
