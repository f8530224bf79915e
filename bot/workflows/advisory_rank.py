"""Priority tier, due date and severity of each match: the signals a record carries, ranked by the policy."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from bot.advisories import priority
from bot.advisories.model import Advisory, MatchStatus
from bot.config import Config, Exposure
from bot.workflows import sla
from storage.models import AdvisoryRecord

NOT_AFFECTED = MatchStatus.NOT_AFFECTED.value


def _kev_added(record: AdvisoryRecord) -> date | None:
    """When CISA added the record's CVE to KEV (the KEV document's ``dateAdded``, kept as ``published``)."""
    for key, doc in record.data.get("docs", {}).items():
        if key.startswith("kev:") and doc.get("published"):
            return datetime.fromisoformat(str(doc["published"])).date()
    return None


def signals(
    config: Config, record: AdvisoryRecord, adv: Advisory, system: str, epss: Mapping[str, tuple[float, float]]
) -> priority.Signals:
    """What the priority of the record's match on ``system`` is decided from."""
    scores = [epss[i] for i in (adv.id, *adv.aliases) if i in epss]
    best = max(scores) if scores else None
    exposure = config.systems[system].exposure if system in config.systems else Exposure.INTERNAL
    return priority.Signals(
        severity=severity_of(record, adv)["label"] or "unknown",
        kev=adv.known_exploited,
        kev_added=_kev_added(record) if adv.known_exploited else None,
        epss=best[0] if best else None,
        percentile=best[1] if best else None,
        exposure=exposure,
    )


def severity_of(record: AdvisoryRecord, adv: Advisory) -> dict[str, Any]:
    """``{"label", "score", "source"}`` of a record: ``source`` is where the label came from, as
    :mod:`bot.advisories.severity` names it (``cvss_v3.1``, ``ghsa``, ``csaf_aggregate``, ``debian_urgency``,
    ...; ``none`` when no source rates it). Records stored before sources were kept say ``cvss`` or ``vendor``."""
    source = adv.severity_source
    if not source:
        source = "cvss" if adv.cvss_vector else ("vendor" if record.severity != "unknown" else "none")
    return {"label": record.severity, "score": adv.cvss_score, "source": source}


def prioritise(
    config: Config,
    record: AdvisoryRecord,
    adv: Advisory,
    rows: list[dict[str, Any]],
    epss: Mapping[str, tuple[float, float]],
) -> None:
    """Fill each match row's tier and due date; the record's due is the earliest (or its own if unmatched).

    A row a vendor's VEX cleared (``not_affected``) is not work: no tier, no due date."""
    work = []
    for row in rows:
        if row["status"] == NOT_AFFECTED:
            row["priority"], row["due"] = "", None
            continue
        tier = priority.tier(config.policy, signals(config, record, adv, row["system"], epss))
        row["priority"] = tier
        row["due"] = sla.match_due(
            config.policy, tier=tier, discovered=row["discovered"], published=adv.published, kev_due=adv.kev_due_date
        )
        work.append(row)
    if work:
        record.due = min(r["due"] for r in work)
    else:
        tier = priority.tier(config.policy, signals(config, record, adv, "", epss))
        record.due = sla.match_due(
            config.policy, tier=tier, discovered=record.first_seen, published=adv.published, kev_due=adv.kev_due_date
        )
