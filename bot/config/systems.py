"""``systems:``: owners, environments (rollout, pacing, reboots), windows and blackouts; people and SMTP."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from bot.config.fields import Duration, EmailAddress, MailRecipient, SlackChannelId, SlackUserId, Strict, TimeZoneName
from bot.config.people import LogReview, TestScenario
from bot.config.policy import Exposure


class Blackout(Strict):
    """A freeze period. Times without an offset are in the system's zone (global blackouts: UTC)."""

    start: datetime
    end: datetime
    reason: str = Field(min_length=1)

    @model_validator(mode="after")
    def _ordered(self) -> Blackout:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self


class WindowRule(Strict):
    """A recurring maintenance window: an RFC 5545 RRULE and a duration, in the system's time zone."""

    rrule: str
    duration: Duration

    @field_validator("rrule")
    @classmethod
    def _rrule(cls, value: str) -> str:
        from dateutil.rrule import rrulestr

        try:
            rrulestr(value, dtstart=datetime(2026, 1, 1))
        except (ValueError, TypeError) as exc:
            raise ValueError(f"not a valid RFC 5545 recurrence rule: {exc}") from exc
        # a window more often than once a minute is a mistake, and expanding it would freeze the bot
        upper = value.upper().replace(" ", "")
        bysecond = re.search(r"BYSECOND=([0-9,]+)", upper)
        if "FREQ=SECONDLY" in upper or (bysecond is not None and "," in bysecond.group(1)):
            raise ValueError("windows more often than once a minute (FREQ=SECONDLY, several BYSECOND) are refused")
        count = re.search(r"COUNT=(\d+)", upper)
        if count is not None and int(count.group(1)) > 100_000:
            raise ValueError("COUNT above 100000 is refused (use UNTIL, or no end)")
        return value


class Gate(Strict):
    """What a ring must show before the next ring starts."""

    min_success: int | None = Field(default=None, ge=1)
    min_success_rate: float | None = Field(default=None, gt=0, le=1)
    soak: Duration = timedelta(0)  # verify again after this long; the next ring waits for it


class Ring(Strict):
    """One wave of a rollout: these targets, then the gate."""

    name: str = Field(pattern=r"^[A-Za-z0-9._-]{1,40}$")
    targets: list[str] = Field(min_length=1)
    gate: Gate = Field(default_factory=Gate)


class Reboot(StrEnum):
    IF_REQUIRED = "if_required"
    ALWAYS = "always"
    NEVER = "never"


class Environment(BaseModel):
    """A deployment target of a system. Executor-specific keys are validated by the executor plugin.

    The keys declared here are patchwarden's own (rollout, pacing, credentials); everything else is the
    executor's."""

    model_config = ConfigDict(extra="allow", frozen=True)
    executor: str
    rings: list[Ring] | None = None
    max_parallel: int = Field(default=10, ge=1, le=1000)  # targets at once
    cutoff: Duration = timedelta(0)  # no target or ring starts later than this before the window ends
    max_duration: Duration | None = None  # a step still running then is stopped and reported
    jitter: Duration = timedelta(0)  # random delay before each target
    pre: list[str] | None = None  # argv run before the first target; failing stops the deployment
    post: list[str] | None = None  # argv run after the last target
    reboot: Reboot = Reboot.IF_REQUIRED
    credentials: dict[str, Any] | None = None  # {provider: ssh-cert | webhook | <plugin>, ...options}

    @field_validator("rings")
    @classmethod
    def _rings(cls, value: list[Ring] | None) -> list[Ring] | None:
        if value is not None:
            names = [r.name for r in value]
            hosts = [t for r in value for t in r.targets]
            if len(set(names)) != len(names):
                raise ValueError("ring names must be unique")
            if len(set(hosts)) != len(hosts):
                raise ValueError("a target may be in one ring only")
        return value

    targets: tuple[str, ...] = ()  # the hosts a deployment addresses (DeploymentRequest.targets)


class Package(Strict):
    """An installed package listed in the configuration (alternative to an SBOM import)."""

    ecosystem: str
    name: str
    version: str
    release: str | None = None


class Person(Strict):
    """``people.<Slack id>``: how patchwarden reaches a person outside Slack and who they are elsewhere."""

    email: EmailAddress | None = None
    oidc_sub: str | None = None  # the identity provider's subject bound to this Slack user (step-up)


class Smtp(Strict):
    """``smtp:``: the mail relay for announcements. The password comes from the environment variable named."""

    host: str = Field(min_length=1)
    port: int = Field(default=587, ge=1, le=65535)
    starttls: bool = True
    username: str | None = None
    password_env: str | None = Field(default=None, pattern=r"^[A-Z_][A-Z0-9_]*$")
    sender: EmailAddress = Field(alias="from")
    timeout: float = Field(default=30.0, gt=0, le=300)


class System(Strict):
    owner: SlackUserId
    stakeholders: list[SlackUserId] = Field(default_factory=list)
    announce_channel: SlackChannelId | None = None
    timezone: TimeZoneName = "UTC"
    environments: dict[str, Environment] = Field(default_factory=dict)
    maintenance_windows: list[WindowRule] = Field(default_factory=list)
    blackouts: list[Blackout] = Field(default_factory=list)
    announce_test: bool = False
    packages: list[Package] = Field(default_factory=list)
    description: str = ""
    exposure: Exposure = Exposure.INTERNAL  # internet-facing systems rank exploitable advisories higher

    announce_email: list[MailRecipient] = Field(default_factory=list)  # addresses or people (Slack ids)

    test_scenarios: list[TestScenario] = Field(default_factory=list, max_length=40)  # the test result checklist
    log_review: LogReview | None = None  # logs scanned for evidence of malfunction after the test run

    @field_validator("test_scenarios")
    @classmethod
    def _unique_scenarios(cls, value: list[TestScenario]) -> list[TestScenario]:
        names = [s.name for s in value]
        if len(set(names)) != len(names):
            raise ValueError("test scenario names must be unique")
        return value
