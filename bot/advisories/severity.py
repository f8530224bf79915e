"""Severity you can defend: CVSS base scores computed from their vectors, vendor words as a fallback.

Contract (``Rated``, and its JSON form ``{"label", "score", "source"}``):

1. A CVSS vector is scored with the ``cvss`` package (v2, v3.0/3.1, v4.0); the newest CVSS version present
   wins, and within one version the highest score. A *declared* score that disagrees with its vector
   (CSAF ``baseScore``) is not trusted: the computed score wins and ``flagged`` says what disagreed.
2. Without a usable vector, the first vendor word found in this order decides: GHSA
   ``database_specific.severity``, CSAF ``aggregate_severity`` then a CSAF ``impact`` threat, Debian
   urgency, Ubuntu priority, Red Hat severity (and other per-package ``ecosystem_specific.severity``).
3. Only a record with none of these is ``unknown`` (source ``none``).

``source`` names where the label came from (``cvss_v3.1``, ``ghsa``, ``csaf_aggregate``,
``csaf_threat_impact``, ``debian_urgency``, ``ubuntu_priority``, ``redhat_severity``, ...) so a post can
say it and a reviewer can check it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from cvss import CVSS2, CVSS3, CVSS4
from cvss.exceptions import CVSSError

from bot.advisories.model import Advisory, Severity

# Declared and computed scores are both rounded to one decimal; anything beyond rounding noise disagrees.
_TOLERANCE = Decimal("0.05")
SEVERITY_RANK = (
    Severity.CRITICAL,
    Severity.HIGH,
    Severity.MEDIUM,
    Severity.LOW,
    Severity.NONE,
    Severity.UNKNOWN,
)


@dataclass(frozen=True, slots=True)
class Rated:
    """A severity and where it came from. ``flagged`` explains a declared score that was overruled."""

    label: Severity
    score: float | None = None
    source: str = "none"
    vector: str | None = None
    flagged: str = ""

    def as_json(self) -> dict[str, object]:
        """The ``{"label", "score", "source"}`` object of the ``advisories list --json`` contract."""
        return {"label": self.label.value, "score": self.score, "source": self.source}


UNKNOWN = Rated(Severity.UNKNOWN)


def band(score: float | None) -> Severity:
    """CVSS v3/v4 qualitative band of a base score (0.0 is none; None is unknown)."""
    if score is None:
        return Severity.UNKNOWN
    if score >= 9.0:
        return Severity.CRITICAL
    if score >= 7.0:
        return Severity.HIGH
    if score >= 4.0:
        return Severity.MEDIUM
    return Severity.LOW if score > 0 else Severity.NONE


def _compute(vector: str) -> tuple[str, Decimal] | None:
    """``(source, base score)`` of a vector, or ``None`` when the ``cvss`` package rejects it."""
    text = vector.strip()
    try:
        if text.startswith("CVSS:4."):
            return "cvss_v4.0", Decimal(str(CVSS4(text).base_score))
        if text.startswith("CVSS:3."):
            return f"cvss_v{text[5:8]}", Decimal(str(CVSS3(text).base_score))
        return "cvss_v2", Decimal(str(CVSS2(text.removeprefix("(").removesuffix(")")).base_score))
    except (CVSSError, ValueError, KeyError, TypeError, ArithmeticError):
        return None


def _label(source: str, score: Decimal) -> Severity:
    # CVSS v2 has no "critical" band: 9.0+ stays "high".
    value = float(score)
    return (Severity.HIGH if value >= 7.0 else band(value)) if source == "cvss_v2" else band(value)


def cvss_severity(vector: str) -> tuple[Severity, float | None]:
    """Band and base score of a CVSS v2/v3.x/v4.0 vector; unknown if unparsable."""
    computed = _compute(vector)
    if computed is None:
        return Severity.UNKNOWN, None
    return _label(computed[0], computed[1]), float(computed[1])


def from_vector(vector: str, *, declared: float | None = None, where: str = "") -> Rated | None:
    """The rating a vector computes to; a ``declared`` score that disagrees is flagged, never used."""
    computed = _compute(vector)
    if computed is None:
        return None
    source, score = computed
    flagged = ""
    if declared is not None and abs(Decimal(str(declared)) - score) > _TOLERANCE:
        at = f" in {where}" if where else ""
        flagged = (
            f"declared base score {declared:g}{at} disagrees with its vector {vector} "
            f"(computes to {score}); the computed score is used"
        )
    return Rated(_label(source, score), float(score), source, vector, flagged)


def best_vector(candidates: Iterable[Rated | None]) -> Rated | None:
    """The rating of the newest CVSS version, highest score first; flags of overruled scores are kept."""
    rated = [r for r in candidates if r is not None]
    if not rated:
        return None
    version = max(r.source for r in rated)  # cvss_v2 < cvss_v3.0 < cvss_v3.1 < cvss_v4.0
    best = max((r for r in rated if r.source == version), key=lambda r: r.score or 0.0)
    flags = "; ".join(dict.fromkeys(r.flagged for r in rated if r.flagged))
    return Rated(best.label, best.score, best.source, best.vector, flags)


# Vendor scales (advisories-integrity notes §7): Red Hat Low/Moderate/Important/Critical, GHSA
# LOW/MODERATE/HIGH/CRITICAL, Ubuntu negligible/low/medium/high/critical, Debian unimportant/low/medium/high.
_WORDS = {
    "critical": Severity.CRITICAL,
    "important": Severity.HIGH,
    "high": Severity.HIGH,
    "moderate": Severity.MEDIUM,
    "medium": Severity.MEDIUM,
    "low": Severity.LOW,
    "negligible": Severity.LOW,
    "unimportant": Severity.LOW,
    "none": Severity.NONE,
}


def word_severity(text: str) -> Severity:
    """Band of a vendor word (Red Hat "Important", GHSA "MODERATE", Debian "low*"); unknown otherwise."""
    return _WORDS.get(text.strip().strip("*").strip().lower(), Severity.UNKNOWN)


def from_word(text: object, *, source: str) -> Rated | None:
    """A rating from a vendor word, or ``None`` when the word is missing or not on any known scale."""
    if not isinstance(text, str):
        return None
    label = word_severity(text)
    return None if label is Severity.UNKNOWN else Rated(label, None, source)


def first(candidates: Iterable[Rated | None]) -> Rated:
    """The first usable rating in fallback order, else unknown."""
    return next((r for r in candidates if r is not None), UNKNOWN)


def most_severe(ratings: Iterable[Rated]) -> Rated:
    """For merged records: the most severe label; among equals a computed CVSS score beats a word."""
    known = list(ratings)
    if not known:
        return UNKNOWN

    def key(r: Rated) -> tuple[int, int, float]:
        return (SEVERITY_RANK.index(r.label), 0 if r.score is not None else 1, -(r.score or 0.0))

    best = min(known, key=key)
    flags = "; ".join(dict.fromkeys(r.flagged for r in known if r.flagged))
    return Rated(best.label, best.score, best.source, best.vector, flags)


def of(advisory: Advisory) -> Rated:
    """The rating stored on an advisory (records stored before sources were recorded say ``unrecorded``)."""
    source = advisory.severity_source or ("none" if advisory.severity is Severity.UNKNOWN else "unrecorded")
    return Rated(advisory.severity, advisory.cvss_score, source, advisory.cvss_vector, advisory.severity_flag)


def merged_source(docs: Iterable[Advisory], label: Severity) -> tuple[str, str]:
    """``(source, flag)`` for a merged record whose label is ``label``: from the first document rated so."""
    docs = list(docs)
    source = next((d.severity_source for d in docs if d.severity is label and d.severity_source), "")
    flag = "; ".join(dict.fromkeys(d.severity_flag for d in docs if d.severity_flag))
    return source, flag
