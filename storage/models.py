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
TERMINAL: frozenset[ChangeState] = frozenset(
    {S.COMPLETED, S.ROLLED_BACK, S.FAILED, S.REJECTED, S.CANCELLED, S.EXPIRED}
)
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


Index("ix_approvals_change_stage_rev", Approval.change_id, Approval.stage, Approval.revision)
