"""Issue 12 (people): test scenarios, log review, delegation, escalation and the weekly CAB digest."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

from pydantic import Field, field_validator, model_validator

from bot.config.fields import SlackChannelId, SlackUserId, Strict

MAX_PATTERN = 200  # characters of one log pattern: a longer one is a mistake, and harder to bound
MAX_LOG_BYTES = 10_000_000
# a repeated group that itself repeats, like (a+)+ or (\w*)*: backtracking on it can take exponential time
NESTED_REPEAT = re.compile(r"\((?:[^()\\]|\\.)*[+*}](?:[^()\\]|\\.)*\)[+*{]")


class TestScenario(Strict):
    """``systems.<name>.test_scenarios[]``: a typical use the owner checks after the test deployment."""

    name: str = Field(min_length=1, max_length=100)
    expected: str = Field(min_length=1, max_length=1000)


class LogReview(Strict):
    """``systems.<name>.log_review``: where evidence of malfunction is looked for after a test run (BSI M 2.421).

    ``paths`` are files named here only (never typed by a user); of each the last ``max_bytes`` are read and
    the report says when a file was longer. ``patterns`` are regular expressions matched line by line.
    """

    paths: list[Path] = Field(default_factory=list, max_length=20)
    executor_output: bool = True  # also scan the test deployment's own output
    patterns: list[str] = Field(min_length=1, max_length=50)
    max_bytes: int = Field(default=1_000_000, ge=1, le=MAX_LOG_BYTES)

    @field_validator("paths")
    @classmethod
    def _absolute(cls, value: list[Path]) -> list[Path]:
        for p in value:
            if not p.is_absolute():
                raise ValueError(f"{p}: log paths must be absolute")
        return value

    @field_validator("patterns")
    @classmethod
    def _patterns(cls, value: list[str]) -> list[str]:
        for i, pattern in enumerate(value):
            if not pattern or len(pattern) > MAX_PATTERN:
                raise ValueError(f"patterns.{i}: give 1 to {MAX_PATTERN} characters")
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"patterns.{i}: not a valid regular expression: {exc}") from exc
            if NESTED_REPEAT.search(pattern):
                raise ValueError(f"patterns.{i}: a repeated group with a repeat inside, like (a+)+, is refused")
        return value

    @model_validator(mode="after")
    def _something(self) -> LogReview:
        if not self.paths and not self.executor_output:
            raise ValueError("log_review: name paths or keep executor_output: true (nothing would be read)")
        return self


class Delegation(Strict):
    """``policy.delegation``: stages where an approver may not hand their vote to a colleague."""

    forbid: list[str] = Field(default_factory=list)

    @field_validator("forbid")
    @classmethod
    def _stages(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - {"test", "prod", "exception"})
        if unknown:
            raise ValueError(f"unknown stage(s) {', '.join(unknown)}; the stages are test, prod and exception")
        return value


class Digest(Strict):
    """``policy.digest``: the CAB digest's recurrence (RFC 5545 RRULE, UTC) and channel (default: approvals)."""

    rrule: str
    channel: SlackChannelId | None = None

    @field_validator("rrule")
    @classmethod
    def _rrule(cls, value: str) -> str:
        from dateutil.rrule import rrulestr

        upper = value.upper().replace(" ", "")
        if any(f"FREQ={f}" in upper for f in ("SECONDLY", "MINUTELY")):
            raise ValueError("a digest more often than hourly is refused (FREQ=SECONDLY/MINUTELY)")
        try:
            rrulestr(value, dtstart=datetime(2026, 1, 1))
        except (ValueError, TypeError) as exc:
            raise ValueError(f"not a valid RFC 5545 recurrence rule: {exc}") from exc
        return value


Managers = list[SlackUserId]
