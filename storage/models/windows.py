"""Maintenance windows, deployments, system locks and test-stage reports."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    ForeignKey,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from storage.models.base import Base, str_enum
from storage.models.changes import Stage


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
    stage: Mapped[Stage] = mapped_column(str_enum(Stage, 8))
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
    # its owner process died mid-run (heartbeat lost): the system stays locked until the owner says what
    # happened (Completed / Failed - roll back / Retry), never guessed as failed (0012)
    INTERRUPTED = "interrupted"


class Deployment(Base):
    """One run of an executor for one stage of one change."""

    __tablename__ = "deployments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(64), unique=True)
    change_id: Mapped[int] = mapped_column(ForeignKey("changes.id"), index=True)
    window_id: Mapped[int | None] = mapped_column(ForeignKey("windows.id"))
    stage: Mapped[Stage] = mapped_column(str_enum(Stage, 8))
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
    # Issue 11 (0013): ring progress [{name, targets, status, started, finished}], the reboot outcome
    # {required, done, scheduled} and the just-in-time credential {provider, key_id, serial, valid_before}.
    rings: Mapped[list[Any]] = mapped_column(default=list)
    reboot: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    credential: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)

    # durable run (0012): which process runs it ("host:pid"), its last sign of life, the step it is in and
    # the executor's process group (shell, ansible) so a recovery on the same host can stop an orphan
    owner: Mapped[str | None] = mapped_column(String(128), default=None)
    heartbeat_at: Mapped[datetime | None] = mapped_column(default=None)
    step: Mapped[str | None] = mapped_column(String(16), default=None)
    pgid: Mapped[int | None] = mapped_column(Integer, default=None)


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
