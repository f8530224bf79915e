"""What leaves for Slack and e-mail: the outbox, handled deliveries, mail opt-outs."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from storage.models.base import Base, str_enum


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


class SlackDelivery(Base):
    """A signed interaction already handled (modal submission or click): a replay of it is dropped."""

    __tablename__ = "slack_deliveries"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    at: Mapped[datetime] = mapped_column(index=True)


class MailOptOut(Base):
    """A person who asked for no maintenance mail about one system (emergency notices still reach them)."""

    __tablename__ = "mail_optouts"

    user_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    system: Mapped[str] = mapped_column(String(64), primary_key=True)
    at: Mapped[datetime]
