"""Advisories, their aliases and matches, the inventory, feed state, quarantine, EPSS, exceptions."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from storage.models.base import Base, str_enum


class AdvisoryStatus(StrEnum):
    OPEN = "open"
    CHANGE_REQUESTED = "change_requested"
    REMEDIATED = "remediated"
    NOT_APPLICABLE = "not_applicable"
    SNOOZED = "snoozed"
    WITHDRAWN = "withdrawn"
    REMEDIATION_PENDING = "remediation_pending"  # its change completed in prod; the inventory must prove it
    STILL_VULNERABLE = "still_vulnerable"  # the inventory after the change still has an affected version
    RISK_ACCEPTED = "risk_accepted"  # an approved exception (accept) until its expiry
    NOT_AFFECTED = "not_affected"  # an approved exception (not-affected, with a VEX justification)


class AdvisoryRecord(Base):
    """A de-duplicated advisory (ids and aliases from every feed merged) with its triage state and SLA."""

    __tablename__ = "advisories"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    primary_id: Mapped[str] = mapped_column(String(100), unique=True)
    sources: Mapped[list[Any]] = mapped_column(default=list)
    aliases: Mapped[list[Any]] = mapped_column(default=list)
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)  # the normalised Advisory (merged)
    content_hash: Mapped[str] = mapped_column(String(64))
    severity: Mapped[str] = mapped_column(String(16), index=True)
    known_exploited: Mapped[bool] = mapped_column(default=False)
    published: Mapped[datetime | None]
    modified: Mapped[datetime | None]
    withdrawn: Mapped[datetime | None]
    status: Mapped[AdvisoryStatus] = mapped_column(str_enum(AdvisoryStatus, 20), index=True)
    status_reason: Mapped[str] = mapped_column(Text, default="")
    snoozed_until: Mapped[datetime | None]
    change_id: Mapped[int | None] = mapped_column(ForeignKey("changes.id"))
    due: Mapped[datetime | None] = mapped_column(index=True)
    channel: Mapped[str | None] = mapped_column(String(32))
    message_ts: Mapped[str | None] = mapped_column(String(32))
    last_reminder_at: Mapped[datetime | None]
    escalated_at: Mapped[datetime | None]
    first_seen: Mapped[datetime]
    updated_at: Mapped[datetime]
    digested_at: Mapped[datetime | None]  # reached Slack through a per-system digest, not a post of its own
    remediated_at: Mapped[datetime | None]  # when the inventory proved the fix (issue 10)
    remediation: Mapped[dict[str, Any]] = mapped_column(default=dict)  # {change_id, systems, evidence, ...}


class AdvisoryAlias(Base):
    """Every id and alias of an advisory points at its record: the de-duplication key across feeds."""

    __tablename__ = "advisory_aliases"

    alias: Mapped[str] = mapped_column(String(100), primary_key=True)
    advisory_id: Mapped[int] = mapped_column(ForeignKey("advisories.id"), index=True)


class AdvisoryMatch(Base):
    """One advisory affecting one installed package of one system (or needing triage)."""

    __tablename__ = "advisory_matches"
    __table_args__ = (
        UniqueConstraint("advisory_id", "system", "ecosystem", "package", "installed", name="uq_advisory_match"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    advisory_id: Mapped[int] = mapped_column(ForeignKey("advisories.id"), index=True)
    system: Mapped[str] = mapped_column(String(64), index=True)
    ecosystem: Mapped[str] = mapped_column(String(64))
    package: Mapped[str] = mapped_column(String(200))
    installed: Mapped[str] = mapped_column(String(100))
    fixed: Mapped[list[Any]] = mapped_column(default=list)
    status: Mapped[str] = mapped_column(String(16))  # affected | needs_triage | not_affected (vendor VEX)
    reason: Mapped[str] = mapped_column(Text, default="")
    discovered: Mapped[datetime | None]  # when patchwarden first saw this system affected: the SLA clock
    due: Mapped[datetime | None] = mapped_column(index=True)
    priority: Mapped[str] = mapped_column(String(32), default="")  # the policy's tier for this match

    remediation: Mapped[str] = mapped_column(Text, default="")  # the vendor's fix line (CSAF), issue 9
    justification: Mapped[str] = mapped_column(String(64), default="")  # VEX label of a not_affected match


class InventoryPackage(Base):
    """An installed package of a system, from an SBOM import or the configuration."""

    __tablename__ = "inventory_packages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    system: Mapped[str] = mapped_column(String(64), index=True)
    ecosystem: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    version: Mapped[str] = mapped_column(String(100))
    release: Mapped[str | None] = mapped_column(String(32))
    purl: Mapped[str | None] = mapped_column(String(500))
    source: Mapped[str] = mapped_column(String(200))  # "config" or the SBOM file name
    imported_at: Mapped[datetime]


class FeedState(Base):
    """Where each feed's incremental reading stands (its opaque cursor), and how the last poll went."""

    __tablename__ = "feed_state"

    feed: Mapped[str] = mapped_column(String(64), primary_key=True)
    cursor: Mapped[dict[str, Any]] = mapped_column(default=dict)
    last_polled_at: Mapped[datetime | None]
    last_error: Mapped[str] = mapped_column(Text, default="")


class QuarantinedDocument(Base):
    """A malformed or unverifiable document, reported once."""

    __tablename__ = "quarantine"
    __table_args__ = (UniqueConstraint("source", "document", "reason_hash", name="uq_quarantine_once"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(64))
    document: Mapped[str] = mapped_column(String(500))
    reason: Mapped[str] = mapped_column(Text)
    reason_hash: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime]
    reported: Mapped[bool] = mapped_column(default=False)


class EpssScore(Base):
    """FIRST's EPSS estimate for one CVE (the latest daily file): probability of exploitation in 30 days."""

    __tablename__ = "epss_scores"

    cve: Mapped[str] = mapped_column(String(32), primary_key=True)
    epss: Mapped[float]
    percentile: Mapped[float]
    score_date: Mapped[str] = mapped_column(String(10))  # YYYY-MM-DD of the file the score came from


class ExceptionKind(StrEnum):
    ACCEPT = "accept"  # the risk is accepted until the expiry
    NOT_AFFECTED = "not_affected"  # not affected, with an OpenVEX justification


class ExceptionState(StrEnum):
    PENDING = "pending"  # waiting for the policy.stages.exception quorum
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"  # its end passed: the match reopened
    RENEWED = "renewed"  # superseded by an approved renewal


class AdvisoryException(Base):
    """A time-boxed, approved decision not to patch one advisory on one system (accept or not affected)."""

    __tablename__ = "advisory_exceptions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    advisory_id: Mapped[int] = mapped_column(ForeignKey("advisories.id"), index=True)
    system: Mapped[str] = mapped_column(String(64))
    kind: Mapped[ExceptionKind] = mapped_column(str_enum(ExceptionKind, 16))
    justification: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)
    until: Mapped[datetime] = mapped_column(index=True)
    state: Mapped[ExceptionState] = mapped_column(str_enum(ExceptionState, 16), index=True)
    requested_by: Mapped[str] = mapped_column(String(32))
    requested_at: Mapped[datetime]
    approvals: Mapped[list[Any]] = mapped_column(default=list)  # [{user, requirement, at}]
    decided_at: Mapped[datetime | None]
    renewal_of: Mapped[int | None] = mapped_column(Integer)
    renewals: Mapped[int] = mapped_column(Integer, default=0)
    reminded_at: Mapped[datetime | None]
    previous_status: Mapped[str] = mapped_column(String(20), default="open")  # the advisory's status before
    channel: Mapped[str | None] = mapped_column(String(32))
    message_ts: Mapped[str | None] = mapped_column(String(32))
