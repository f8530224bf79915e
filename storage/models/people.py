"""Step-up secrets and reservations (issue 12)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from storage.models.base import Base, str_enum
from storage.models.changes import Stage


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
    stage: Mapped[Stage] = mapped_column(str_enum(Stage, 8))
    revision: Mapped[int] = mapped_column(Integer)
    content_hash: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[str] = mapped_column(String(32), index=True)
    requirement: Mapped[str | None] = mapped_column(String(100))
    method: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    state: Mapped[ReservationState] = mapped_column(str_enum(ReservationState, 12))
