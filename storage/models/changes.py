"""Change requests, their approvals and the explicit lifecycle transition table."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from storage.models.base import Base, str_enum


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


class Stage(StrEnum):
    """The two stages every change goes through, in order: the test environment, then production."""

    TEST = "test"
    PROD = "prod"


@dataclass(frozen=True)
class StageStates:
    """The states of a change while one stage is under way, in the order they are passed."""

    pending: ChangeState
    approved: ChangeState
    scheduled: ChangeState
    deploying: ChangeState
    verifying: ChangeState


# The one table from a stage to its states; the maps below are views of it.
STAGE_STATES: dict[Stage, StageStates] = {
    Stage.TEST: StageStates(
        S.PENDING_TEST_APPROVAL, S.APPROVED_FOR_TEST, S.TEST_SCHEDULED, S.TEST_DEPLOYING, S.TEST_VERIFYING
    ),
    Stage.PROD: StageStates(
        S.PENDING_PROD_APPROVAL, S.APPROVED_FOR_PROD, S.PROD_SCHEDULED, S.PROD_DEPLOYING, S.PROD_VERIFYING
    ),
}
PENDING_APPROVAL: dict[str, ChangeState] = {stage: s.pending for stage, s in STAGE_STATES.items()}
APPROVED: dict[str, ChangeState] = {stage: s.approved for stage, s in STAGE_STATES.items()}
SCHEDULED: dict[str, ChangeState] = {stage: s.scheduled for stage, s in STAGE_STATES.items()}
DEPLOYING: dict[str, ChangeState] = {stage: s.deploying for stage, s in STAGE_STATES.items()}
VERIFYING: dict[str, ChangeState] = {stage: s.verifying for stage, s in STAGE_STATES.items()}


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

# The owner retries a rollout stopped at a failed ring gate: the remaining rings deploy again (issue 11).
TRANSITIONS[S.TEST_VERIFYING] |= {S.TEST_DEPLOYING}
TRANSITIONS[S.PROD_VERIFYING] |= {S.PROD_DEPLOYING}


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


def stage_of(state: ChangeState) -> Stage | None:
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
    return Stage.PROD if state in prod_states else Stage.TEST


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
    # the newest control-log entry of this change its card showed when last rendered (storage.cards)
    card_seq: Mapped[int | None] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))

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
    stage: Mapped[Stage] = mapped_column(str_enum(Stage, 8))
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


Index("ix_approvals_change_stage_rev", Approval.change_id, Approval.stage, Approval.revision)


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
    stage: Mapped[Stage] = mapped_column(str_enum(Stage, 8))
    revision: Mapped[int]
    rule: Mapped[str] = mapped_column(String(200))
    at: Mapped[datetime] = mapped_column(index=True)
    veto_from: Mapped[datetime]
    announced_at: Mapped[datetime | None]
    vetoed_by: Mapped[str | None] = mapped_column(String(32))
    veto_reason: Mapped[str] = mapped_column(Text, default="")
    vetoed_at: Mapped[datetime | None]
    applied_at: Mapped[datetime | None]
