"""People are away (issue 12): delegations, the requester's nudges, and once-only marks for scheduled posts."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from storage.models.base import Base, str_enum
from storage.models.changes import Stage


class Delegation(Base):
    """``delegator`` hands their approvals to ``delegate`` from ``starts`` until ``ends`` (unless cancelled)."""

    __tablename__ = "delegations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    delegator: Mapped[str] = mapped_column(String(32), index=True)
    delegate: Mapped[str] = mapped_column(String(32), index=True)
    starts: Mapped[datetime]
    ends: Mapped[datetime]
    created_at: Mapped[datetime]
    cancelled_at: Mapped[datetime | None]


class Nudge(Base):
    """The requester's last nudge of a stage's approvers; the compare-and-set on ``last_at`` allows one per
    ``remind_every`` (the unique row makes the first nudge a race with one winner)."""

    __tablename__ = "nudges"
    __table_args__ = (UniqueConstraint("change_id", "stage", "revision", name="uq_nudge_stage"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    change_id: Mapped[int] = mapped_column(ForeignKey("changes.id"))
    stage: Mapped[Stage] = mapped_column(str_enum(Stage, 8))
    revision: Mapped[int] = mapped_column(Integer)
    last_at: Mapped[datetime]
    count: Mapped[int] = mapped_column(Integer, default=1)


class OnceMark(Base):
    """Something done exactly once across replicas (an escalation step, a digest occurrence): its key."""

    __tablename__ = "once_marks"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    at: Mapped[datetime]
