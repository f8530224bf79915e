"""Typed ORM models, status enums and the explicit lifecycle transition table."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def str_enum(enum: type[StrEnum], length: int) -> Enum:
    """A StrEnum stored as its value in a VARCHAR (no native enum type: adding states needs no DDL)."""
    return Enum(
        enum,
        native_enum=False,
        create_constraint=False,
        length=length,
        values_callable=lambda members: [m.value for m in members],
    )


def utcnow() -> datetime:
    """Now, aware UTC."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
        list[Any]: JSON(),
    }


class ChangeState(StrEnum):
    """The policy's lifecycle of a change request (snake_case values appear in JSON output)."""

    DRAFT = "draft"
    PENDING_TEST_APPROVAL = "pending_test_approval"
    APPROVED_FOR_TEST = "approved_for_test"
    TEST_SCHEDULED = "test_scheduled"
    TEST_DEPLOYING = "test_deploying"
    TEST_VERIFYING = "test_verifying"
    TEST_PASSED = "test_passed"
    TEST_FAILED = "test_failed"
    RISK_ACCEPTED = "risk_accepted"
    TEST_ACKNOWLEDGED = "test_acknowledged"
    PENDING_PROD_APPROVAL = "pending_prod_approval"
    APPROVED_FOR_PROD = "approved_for_prod"
    PROD_SCHEDULED = "prod_scheduled"
    PROD_DEPLOYING = "prod_deploying"
    PROD_VERIFYING = "prod_verifying"
    COMPLETED = "completed"
    ROLLED_BACK = "rolled_back"
    FAILED = "failed"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


S = ChangeState
TERMINAL: frozenset[ChangeState] = frozenset({S.COMPLETED, S.ROLLED_BACK, S.FAILED, S.REJECTED, S.CANCELLED, S.EXPIRED})
PENDING_APPROVAL: dict[str, ChangeState] = {"test": S.PENDING_TEST_APPROVAL, "prod": S.PENDING_PROD_APPROVAL}
APPROVED: dict[str, ChangeState] = {"test": S.APPROVED_FOR_TEST, "prod": S.APPROVED_FOR_PROD}

# The lifecycle, explicitly. Cancel is allowed from every open state (added below); reject and expire
# only from the states that await approval.
TRANSITIONS: dict[ChangeState, frozenset[ChangeState]] = {
    S.DRAFT: frozenset({S.PENDING_TEST_APPROVAL}),
    S.PENDING_TEST_APPROVAL: frozenset({S.APPROVED_FOR_TEST, S.REJECTED, S.EXPIRED, S.PENDING_TEST_APPROVAL}),
    S.APPROVED_FOR_TEST: frozenset({S.TEST_SCHEDULED, S.TEST_DEPLOYING, S.PENDING_TEST_APPROVAL}),
    S.TEST_SCHEDULED: frozenset({S.TEST_DEPLOYING, S.APPROVED_FOR_TEST, S.PENDING_TEST_APPROVAL}),
    S.TEST_DEPLOYING: frozenset({S.TEST_VERIFYING, S.TEST_FAILED}),
    S.TEST_VERIFYING: frozenset({S.TEST_PASSED, S.TEST_FAILED}),
    S.TEST_PASSED: frozenset({S.TEST_ACKNOWLEDGED, S.TEST_FAILED}),
    S.TEST_FAILED: frozenset({S.RISK_ACCEPTED, S.FAILED}),
    S.RISK_ACCEPTED: frozenset({S.TEST_ACKNOWLEDGED}),
    S.TEST_ACKNOWLEDGED: frozenset({S.PENDING_PROD_APPROVAL}),
    S.PENDING_PROD_APPROVAL: frozenset({S.APPROVED_FOR_PROD, S.REJECTED, S.EXPIRED, S.PENDING_PROD_APPROVAL}),
    S.APPROVED_FOR_PROD: frozenset({S.PROD_SCHEDULED, S.PROD_DEPLOYING, S.PENDING_PROD_APPROVAL}),
    S.PROD_SCHEDULED: frozenset({S.PROD_DEPLOYING, S.APPROVED_FOR_PROD, S.PENDING_PROD_APPROVAL}),
    S.PROD_DEPLOYING: frozenset({S.PROD_VERIFYING, S.FAILED, S.ROLLED_BACK}),
    S.PROD_VERIFYING: frozenset({S.COMPLETED, S.ROLLED_BACK, S.FAILED}),
}
# A run refused before any step ran (an artifact failed verification) gives the stage back to its approval.
TRANSITIONS[S.TEST_DEPLOYING] |= {S.APPROVED_FOR_TEST}
TRANSITIONS[S.PROD_DEPLOYING] |= {S.APPROVED_FOR_PROD}
for _state in list(TRANSITIONS):
    if _state not in (S.TEST_DEPLOYING, S.PROD_DEPLOYING, S.TEST_VERIFYING, S.PROD_VERIFYING):
        TRANSITIONS[_state] = TRANSITIONS[_state] | {S.CANCELLED}
for _state in TERMINAL:
    TRANSITIONS[_state] = frozenset()

# States in which the approvable content may be edited (an edit sends the change back for approval).
EDITABLE: frozenset[ChangeState] = frozenset(
    {
        S.DRAFT,
        S.PENDING_TEST_APPROVAL,
        S.APPROVED_FOR_TEST,
        S.TEST_SCHEDULED,
        S.PENDING_PROD_APPROVAL,
        S.APPROVED_FOR_PROD,
        S.PROD_SCHEDULED,
    }
)


def stage_of(state: ChangeState) -> str | None:
    """The stage ("test"/"prod") a state belongs to, or None for draft and terminal states."""
    if state in TERMINAL or state is S.DRAFT:
        return None
    prod_states = {
        S.TEST_ACKNOWLEDGED,
        S.PENDING_PROD_APPROVAL,
        S.APPROVED_FOR_PROD,
        S.PROD_SCHEDULED,
        S.PROD_DEPLOYING,
        S.PROD_VERIFYING,
    }
    return "prod" if state in prod_states else "test"


class ChangeClass(StrEnum):
    STANDARD = "standard"
    NORMAL = "normal"
    EMERGENCY = "emergency"


class Decision(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"


class Change(Base):
    """A change request (the policy's "request for update")."""

    __tablename__ = "changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    state: Mapped[ChangeState] = mapped_column(str_enum(ChangeState, 32), index=True)
    systems: Mapped[list[Any]]
    title: Mapped[str] = mapped_column(String(200))
    details: Mapped[str] = mapped_column(Text, default="")
    technical: Mapped[str] = mapped_column(Text, default="")
    change_class: Mapped[ChangeClass] = mapped_column(str_enum(ChangeClass, 16))
    requester: Mapped[str] = mapped_column(String(32))
    last_editor: Mapped[str] = mapped_column(String(32))
    officer: Mapped[str] = mapped_column(String(32))
    operator: Mapped[str | None] = mapped_column(String(32))
    planned_test: Mapped[str | None] = mapped_column(String(10))
    planned_prod: Mapped[str | None] = mapped_column(String(10))
    expected_downtime: Mapped[str] = mapped_column(String(100), default="")
    rollback_plan: Mapped[str] = mapped_column(Text, default="")
    advisory_ref: Mapped[str] = mapped_column(String(200), default="")
    revision: Mapped[int] = mapped_column(Integer, default=1)
    content_hash: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str | None] = mapped_column(String(32))
    thread_ts: Mapped[str | None] = mapped_column(String(32))
    stage_requested_at: Mapped[datetime | None]
    approval_deadline: Mapped[datetime | None] = mapped_column(index=True)
    last_reminded_at: Mapped[datetime | None]
    unblock_notified: Mapped[bool] = mapped_column(default=False)
    policy_version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    version: Mapped[int] = mapped_column(Integer, default=1)  # optimistic lock for compare-and-set

    @property
    def key(self) -> str:
        """The human id, ``CHG-<n>``."""
        return f"CHG-{self.id}"


class Approval(Base):
    """One person's decision on one stage of one revision. The unique constraint makes clicks count once."""

    __tablename__ = "approvals"
    __table_args__ = (UniqueConstraint("change_id", "stage", "revision", "user_id", name="uq_approval_once"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    change_id: Mapped[int] = mapped_column(ForeignKey("changes.id"), index=True)
    stage: Mapped[str] = mapped_column(String(8))
    revision: Mapped[int] = mapped_column(Integer)
    user_id: Mapped[str] = mapped_column(String(32))
    decision: Mapped[Decision] = mapped_column(str_enum(Decision, 8))
    requirement: Mapped[str | None] = mapped_column(String(100))
    reason: Mapped[str] = mapped_column(Text, default="")
    content_hash: Mapped[str] = mapped_column(String(64))
    stale: Mapped[bool] = mapped_column(default=False)
    decided_at: Mapped[datetime]
    step_up: Mapped[str | None] = mapped_column(String(8))  # the second factor that confirmed it (issue 12)
    delegated_from: Mapped[str | None] = mapped_column(String(32))  # the approver who handed it over


class AuditEntry(Base):
    """An append-only update-control-log entry. ``body`` is the canonical JSON the hash covers."""

    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64), index=True)
    change_id: Mapped[int | None] = mapped_column(Integer, index=True)
    policy_version: Mapped[int | None] = mapped_column(Integer)
    body: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hash: Mapped[str] = mapped_column(String(64), unique=True)


class AuditHead(Base):
    """A single row locked by every append, so concurrent writers extend the chain one at a time."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    hash: Mapped[str] = mapped_column(String(64))
    # signed by the audit key at every commit that extends the log, so it cannot be moved without the key
    signed_at: Mapped[datetime | None]
    key_id: Mapped[str | None] = mapped_column(String(32))
    signature: Mapped[str | None] = mapped_column(String(128))


class AuditCheckpoint(Base):
    """A signed statement "entry ``seq`` has hash ``hash``", so truncation of the log is detectable."""

    __tablename__ = "audit_checkpoints"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    hash: Mapped[str] = mapped_column(String(64))
    signed_at: Mapped[datetime]
    key_id: Mapped[str] = mapped_column(String(32))
    public_key: Mapped[str] = mapped_column(String(64))
    signature: Mapped[str] = mapped_column(String(128))
    posted_ts: Mapped[str | None] = mapped_column(String(32))
    published_at: Mapped[datetime | None]  # copied to the witness file/URL, the audit channel and the stream


Index("ix_approvals_change_stage_rev", Approval.change_id, Approval.stage, Approval.revision)


# ---- maintenance windows, deployments, announcements (issue: windows / deployments) -----------------------


class WindowState(StrEnum):
    BOOKED = "booked"  # waiting for its start
    STARTED = "started"  # a deployment claimed it
    DONE = "done"
    CANCELLED = "cancelled"
    RESCHEDULED = "rescheduled"  # superseded by a new booking
    MISSED = "missed"  # its start passed while nobody ran it (missed_window policy decides what next)
    AWAITING_DECISION = "awaiting_decision"  # missed_window: ask — waiting for an operator


class Window(Base):
    """A maintenance window booked for one stage of one change."""

    __tablename__ = "windows"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    change_id: Mapped[int] = mapped_column(ForeignKey("changes.id"), index=True)
    stage: Mapped[str] = mapped_column(String(8))
    systems: Mapped[list[Any]]
    start: Mapped[datetime] = mapped_column(index=True)
    end: Mapped[datetime]
    state: Mapped[WindowState] = mapped_column(str_enum(WindowState, 20), index=True)
    emergency: Mapped[bool] = mapped_column(default=False)
    bypass_reason: Mapped[str] = mapped_column(Text, default="")
    booked_by: Mapped[str] = mapped_column(String(32))
    booked_at: Mapped[datetime]
    reminded: Mapped[bool] = mapped_column(default=False)
    claimed_by: Mapped[str | None] = mapped_column(String(64))


class DeploymentStatus(StrEnum):
    RUNNING = "running"
    VERIFYING = "verifying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # apply failed
    VERIFY_FAILED = "verify_failed"  # waiting for the owner's Roll back / Keep
    ROLLING_BACK = "rolling_back"
    ROLLED_BACK = "rolled_back"
    ROLLBACK_FAILED = "rollback_failed"
    KEPT = "kept"  # verify failed, owner chose to keep


class Deployment(Base):
    """One run of an executor for one stage of one change."""

    __tablename__ = "deployments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(64), unique=True)
    change_id: Mapped[int] = mapped_column(ForeignKey("changes.id"), index=True)
    window_id: Mapped[int | None] = mapped_column(ForeignKey("windows.id"))
    stage: Mapped[str] = mapped_column(String(8))
    system: Mapped[str] = mapped_column(String(64))
    executor: Mapped[str] = mapped_column(String(64))
    status: Mapped[DeploymentStatus] = mapped_column(str_enum(DeploymentStatus, 20), index=True)
    started_by: Mapped[str] = mapped_column(String(32))
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    steps: Mapped[list[Any]] = mapped_column(default=list)  # [{step, ok, summary, targets:[...], started, finished}]
    output: Mapped[str] = mapped_column(Text, default="")
    # ``/patch deploy ... --now REASON`` outside any window (emergency bypass): shown on the card (0008)
    bypass_reason: Mapped[str | None] = mapped_column(Text, default=None)


class SystemLock(Base):
    """At most one deployment runs on a system at a time: the primary key refuses a second holder."""

    __tablename__ = "system_locks"

    system: Mapped[str] = mapped_column(String(64), primary_key=True)
    deployment_id: Mapped[int] = mapped_column(Integer)
    acquired_at: Mapped[datetime]


class StageReport(Base):
    """Test result, risk decision, owner acknowledgement, post-implementation review request."""

    __tablename__ = "stage_reports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    change_id: Mapped[int] = mapped_column(ForeignKey("changes.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))  # test_result | risk_decision | acknowledgement | review
    user_id: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime]
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)


class OutboxState(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"  # gave up after max attempts (reported)
    CANCELLED = "cancelled"


class OutboxMessage(Base):
    """A Slack message to send exactly once. ``key`` makes enqueueing idempotent; a lease makes sending
    single-owner; the key also travels in the message metadata so a crash after posting is recognised."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)
    channel: Mapped[str] = mapped_column(String(32), index=True)
    thread_ts: Mapped[str | None] = mapped_column(String(32))
    text: Mapped[str] = mapped_column(Text)
    blocks: Mapped[list[Any]] = mapped_column(default=list)
    not_before: Mapped[datetime] = mapped_column(index=True)
    state: Mapped[OutboxState] = mapped_column(str_enum(OutboxState, 12), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_until: Mapped[datetime | None]
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    last_error: Mapped[str] = mapped_column(Text, default="")
    sent_ts: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime]
    change_id: Mapped[int | None] = mapped_column(Integer, index=True)
    mail_to: Mapped[str | None] = mapped_column(String(320))  # set: an e-mail (``text`` is the RFC 5322 message)


# ---- advisories (issue: advisories) -----------------------------------------------------------------------


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


class Artifact(Base):
    """A patch artifact a change references; verified into quarantine before any executor sees it."""

    __tablename__ = "artifacts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    change_id: Mapped[int] = mapped_column(ForeignKey("changes.id"), index=True)
    url: Mapped[str] = mapped_column(String(2000))
    sha256: Mapped[str | None] = mapped_column(String(64))
    sha512: Mapped[str | None] = mapped_column(String(128))
    signature_url: Mapped[str | None] = mapped_column(String(2000))
    signer: Mapped[str | None] = mapped_column(String(100))
    verified_path: Mapped[str | None] = mapped_column(String(1000))
    verified_sha256: Mapped[str | None] = mapped_column(String(64))
    verified_at: Mapped[datetime | None]
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending | verified | refused
    detail: Mapped[str] = mapped_column(Text, default="")


class AutoApproval(Base):
    """A stage that approves itself by policy at ``at`` unless vetoed; one row per change, stage and revision."""

    __tablename__ = "auto_approvals"
    __table_args__ = (UniqueConstraint("change_id", "stage", "revision", name="uq_auto_approval_once"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    change_id: Mapped[int] = mapped_column(ForeignKey("changes.id"), index=True)
    stage: Mapped[str] = mapped_column(String(8))
    revision: Mapped[int]
    rule: Mapped[str] = mapped_column(String(200))
    at: Mapped[datetime] = mapped_column(index=True)
    veto_from: Mapped[datetime]
    announced_at: Mapped[datetime | None]
    vetoed_by: Mapped[str | None] = mapped_column(String(32))
    veto_reason: Mapped[str] = mapped_column(Text, default="")
    vetoed_at: Mapped[datetime | None]
    applied_at: Mapped[datetime | None]


class SlackDelivery(Base):
    """A signed interaction already handled (modal submission or click): a replay of it is dropped."""

    __tablename__ = "slack_deliveries"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    at: Mapped[datetime] = mapped_column(index=True)


class AuditStreamCursor(Base):
    """How far the control log has been copied to one external target (issue 14: audit streaming)."""

    __tablename__ = "audit_stream_cursor"

    target: Mapped[str] = mapped_column(String(200), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), default=0)


class EpssScore(Base):
    """FIRST's EPSS estimate for one CVE (the latest daily file): probability of exploitation in 30 days."""

    __tablename__ = "epss_scores"

    cve: Mapped[str] = mapped_column(String(32), primary_key=True)
    epss: Mapped[float]
    percentile: Mapped[float]
    score_date: Mapped[str] = mapped_column(String(10))  # YYYY-MM-DD of the file the score came from


# ---- exceptions (issue 10: close the loop) ------------------------------------------------------------------


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


# ---- people (issue 12) ----------------------------------------------------------------------------------


class MailOptOut(Base):
    """A person who asked for no maintenance mail about one system (emergency notices still reach them)."""

    __tablename__ = "mail_optouts"

    user_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    system: Mapped[str] = mapped_column(String(64), primary_key=True)
    at: Mapped[datetime]


class StepUpSecret(Base):
    """A person's TOTP secret, encrypted (``bot.crypto.seal``); ``last_step`` refuses a replayed code."""

    __tablename__ = "step_up_secrets"

    user_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    sealed: Mapped[str] = mapped_column(Text)
    enrolled_at: Mapped[datetime]
    last_step: Mapped[int | None] = mapped_column(BigInteger)


class ReservationState(StrEnum):
    PENDING = "pending"
    CONFIRMED = "confirmed"
    VOID = "void"  # refused, expired or replaced


class StepUpReservation(Base):
    """An Approve click that waits for its second factor, bound to change, revision, content hash and user."""

    __tablename__ = "step_up_reservations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    change_id: Mapped[int] = mapped_column(ForeignKey("changes.id"), index=True)
    stage: Mapped[str] = mapped_column(String(8))
    revision: Mapped[int] = mapped_column(Integer)
    content_hash: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[str] = mapped_column(String(32), index=True)
    requirement: Mapped[str | None] = mapped_column(String(100))
    method: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    state: Mapped[ReservationState] = mapped_column(str_enum(ReservationState, 12))
