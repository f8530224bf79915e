"""Settings from the environment and the YAML configuration, both validated by pydantic.

The YAML shape is a contract with operators: keys are never renamed, an unknown key is an error (a typo
must never silently do nothing), and every error names its key path.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, StringConstraints, ValidationError, model_validator

from bot import config_file
from bot.config.fields import (
    EMAIL_PATTERN,
    Duration,
    EmailAddress,
    MailRecipient,
    Name,
    SlackChannelId,
    SlackUserId,
    Strict,
    TimeZoneName,
    format_duration,
    parse_duration,
)
from bot.config.people import Delegation, Digest, LogReview, TestScenario
from bot.config.policy import (
    SEVERITY_RANK,
    AutoApproveRule,
    Exposure,
    MissedWindow,
    OnFailedVerify,
    Policy,
    PriorityRule,
    PriorityWhen,
    Requirement,
    Role,
    SlaFrom,
    StepUp,
    StepUpMethod,
    StepUpWhen,
    VerifyFix,
)
from bot.config.settings import (
    Settings,
    normalize_database_url,
)
from bot.config.systems import (
    Blackout,
    Environment,
    Gate,
    Package,
    Person,
    Reboot,
    Ring,
    Smtp,
    System,
    WindowRule,
)
from bot.errors import ConfigError

__all__ = [
    "EMAIL_PATTERN",
    "SEVERITY_RANK",
    "AdvisorySettings",
    "AuditSettings",
    "AuditStream",
    "AutoApproveRule",
    "Blackout",
    "Config",
    "Delegation",
    "Digest",
    "Duration",
    "EmailAddress",
    "Environment",
    "Exposure",
    "Gate",
    "LogReview",
    "MailRecipient",
    "MissedWindow",
    "Name",
    "OnFailedVerify",
    "OutboundSettings",
    "Package",
    "Person",
    "Policy",
    "PriorityRule",
    "PriorityWhen",
    "Reboot",
    "Requirement",
    "Ring",
    "Role",
    "Settings",
    "SlaFrom",
    "SlackChannelId",
    "SlackChannels",
    "SlackUserId",
    "Smtp",
    "StepUp",
    "StepUpMethod",
    "StepUpWhen",
    "Strict",
    "System",
    "TestScenario",
    "TimeZoneName",
    "VerifyFix",
    "WindowRule",
    "format_duration",
    "load_config",
    "normalize_database_url",
    "parse_config",
    "parse_duration",
]


class SlackChannels(Strict):
    approvals_channel: SlackChannelId
    advisories_channel: SlackChannelId | None = None
    audit_channel: SlackChannelId | None = None


class AdvisorySettings(Strict):
    """``advisories:``: feed polling, posting and SLA reminders (issue 4)."""

    poll_every: Duration = timedelta(hours=1)
    post_unmatched_critical: bool = False  # also post critical advisories that match no system
    remind_before: list[Duration] = Field(default_factory=lambda: [timedelta(days=7), timedelta(days=1)])
    quarantine_dir: Path | None = None  # where patch artifacts are verified; default: a temp folder
    digest_over: int = Field(default=20, ge=0)  # more new matches than this for one system: one digest


class OutboundSettings(Strict):
    """Internal networks (CIDR) or host names that artifacts, feeds and webhooks may reach (see bot.outbound)."""

    allow: list[Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255)]] = Field(
        default_factory=list
    )


class AuditStream(Strict):
    """``audit.stream:``: where every control-log entry and signed checkpoint is copied (a SIEM)."""

    url: str | None = None  # NDJSON lines POSTed to this URL
    syslog: str | None = None  # host:port of an RFC 5424 syslog receiver (UDP)
    batch: int = Field(default=500, ge=1, le=10_000)


class AuditSettings(Strict):
    """``audit:``: the control log's trust anchors, checkpoint cadence and witnesses (issue 14, item 1).

    ``trusted_keys`` are base64 raw Ed25519 public keys; the key of ``PATCHWARDEN_AUDIT_KEY`` or the key file is
    trusted as well. Nothing in the database is ever trusted as a key.
    """

    trusted_keys: list[str] = Field(default_factory=list)
    checkpoint_every: int = Field(default=100, ge=1, le=1_000_000)
    checkpoint_interval: Duration = timedelta(hours=1)
    witness_file: Path | None = None  # append-only JSON lines of every signed checkpoint
    witness_url: str | None = None  # each signed checkpoint is POSTed here as JSON
    stream: AuditStream = Field(default_factory=AuditStream)


class Config(Strict):
    """The whole YAML configuration."""

    slack: SlackChannels
    groups: dict[str, list[SlackUserId]] = Field(default_factory=dict)
    systems: dict[Name, System]
    policy: Policy
    blackouts: list[Blackout] = Field(default_factory=list)
    feeds: dict[str, dict[str, Any]] = Field(default_factory=dict)
    trust: dict[str, dict[str, Any]] = Field(default_factory=dict)
    advisories: AdvisorySettings = Field(default_factory=AdvisorySettings)
    outbound: OutboundSettings = Field(default_factory=OutboundSettings)

    audit: AuditSettings = Field(default_factory=AuditSettings)

    people: dict[SlackUserId, Person] = Field(default_factory=dict)
    smtp: Smtp | None = None

    @model_validator(mode="after")
    def _references(self) -> Config:
        errors = self._people_references()
        if self.policy.operators not in self.groups:
            errors.append(f"policy.operators: group {self.policy.operators!r} is not defined under groups")
        if self.policy.fallback not in self.groups:
            errors.append(f"policy.fallback: group {self.policy.fallback!r} is not defined under groups")
        if self.policy.emergency_approvers is not None and self.policy.emergency_approvers not in self.groups:
            errors.append(
                f"policy.emergency_approvers: group {self.policy.emergency_approvers!r} is not defined under groups"
            )
        for stage, reqs in self.policy.stages.items():
            for i, req in enumerate(reqs):
                if req.group is not None and req.group not in self.groups:
                    errors.append(f"policy.stages.{stage}.{i}.group: group {req.group!r} is not defined")
        if self.policy.escalate_after is not None and self.policy.escalate_after.total_seconds() <= 0:
            errors.append("policy.escalate_after: give a positive duration (or leave it out)")
        if not self.systems:
            errors.append("systems: at least one system is required")
        if errors:
            raise ValueError("; ".join(errors))
        return self

    def _people_references(self) -> list[str]:
        errors = []
        for name, system in self.systems.items():
            for i, who in enumerate(system.announce_email):
                if "@" not in who and (who not in self.people or self.people[who].email is None):
                    errors.append(f"systems.{name}.announce_email.{i}: {who} has no people.{who}.email")
            if system.announce_email and self.smtp is None:
                errors.append(f"systems.{name}.announce_email: e-mail needs an smtp: section")
        return errors

    def system(self, name: str) -> System:
        """The named system; raises ``KeyError`` if unknown."""
        return self.systems[name]

    def group(self, name: str) -> frozenset[str]:
        """Members of a group (empty when the group is not defined)."""
        return frozenset(self.groups.get(name, []))


def _format_validation_error(exc: ValidationError, source: str) -> str:
    lines = [f"{source}: {exc.error_count()} error(s)"]
    for err in exc.errors():
        path = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling; see examples/patchwarden.yaml)"
        lines.append(f"  {path}: {msg}")
    if len(lines) == 2:  # one error: one line
        return f"{source}: {lines[1].strip()}"
    return "\n".join(lines)


def parse_config(data: object, *, source: str = "configuration") -> Config:
    """Validate already-parsed YAML data; raises ``ConfigError`` naming each bad key path."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of keys (slack, groups, systems, policy)")
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, source)) from exc


def load_config(path: Path) -> Config:
    """Read and validate the YAML configuration file; every failure is a one-line ``ConfigError``."""
    return parse_config(config_file.read_yaml(path), source=str(path))
