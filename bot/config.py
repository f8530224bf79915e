"""Settings from the environment and the YAML configuration, both validated by pydantic.

The YAML shape is a contract with operators: keys are never renamed, an unknown key is an error (a typo
must never silently do nothing), and every error names its key path.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    SecretStr,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot import config_file
from bot.errors import ConfigError, MissingSecretError

_DURATION_PART = re.compile(r"(\d+)\s*([smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(value: object) -> timedelta:
    """Parse ``30m``, ``72h``, ``7d``, ``1h30m`` (or a timedelta / number of seconds) into a timedelta."""
    if isinstance(value, timedelta):
        if value < timedelta(0):
            raise ValueError("a duration cannot be negative")
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        try:
            return timedelta(seconds=value)
        except OverflowError as exc:
            raise ValueError(f"{value!r} is out of range for a duration") from exc
    if not isinstance(value, str):
        raise ValueError("a duration is written like 30m, 72h or 7d")
    text = value.strip().lower().replace(" ", "")
    parts = _DURATION_PART.findall(text)
    if not text or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"{value!r} is not a duration; write it like 30m, 72h, 7d or 1h30m")
    total = timedelta()
    try:
        for number, unit in parts:
            total += timedelta(**{_UNITS[unit]: int(number)})
    except (OverflowError, ValueError) as exc:
        raise ValueError(f"{value!r} is out of range for a duration") from exc
    return total


def format_duration(value: timedelta) -> str:
    """The inverse of ``parse_duration`` for display: 72h, 1d2h, 45m."""
    seconds = int(value.total_seconds())
    out = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            out.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(out) or "0m"


Duration = Annotated[timedelta, BeforeValidator(parse_duration), PlainSerializer(format_duration, return_type=str)]


def _check_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {value!r} (use an IANA name like Europe/Berlin)") from exc
    return value


TimeZoneName = Annotated[str, BeforeValidator(lambda v: _check_timezone(str(v)))]
SlackUserId = Annotated[str, Field(pattern=r"^[UW][A-Z0-9]{2,}$")]
SlackChannelId = Annotated[str, Field(pattern=r"^[CGD][A-Z0-9]{2,}$")]
Name = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,62}$")]


class Strict(BaseModel):
    """Base for every configuration model: unknown keys are errors, models are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class SlackChannels(Strict):
    approvals_channel: SlackChannelId
    advisories_channel: SlackChannelId | None = None
    audit_channel: SlackChannelId | None = None


class Role(StrEnum):
    OWNER = "owner"
    STAKEHOLDER = "stakeholder"


class Requirement(Strict):
    """One approval requirement of a stage: a role of the affected systems or a named group."""

    role: Role | None = None
    group: str | None = None
    count: int = Field(default=1, ge=1, le=20)

    @model_validator(mode="after")
    def _one_source(self) -> Requirement:
        if (self.role is None) == (self.group is None):
            raise ValueError("give exactly one of 'role' (owner|stakeholder) or 'group'")
        return self


class MissedWindow(StrEnum):
    NEXT = "next"
    ASK = "ask"
    RUN = "run"


class VerifyFix(StrEnum):
    INVENTORY = "inventory"
    NONE = "none"


class OnFailedVerify(StrEnum):
    ASK = "ask"
    ROLLBACK = "rollback"


class AutoApproveRule(Strict):
    """Approve a stage by policy after a delay, unless someone vetoes (``policy.auto_approve``).

    The delay runs from the release of the advisory the change addresses, else from the request. The veto
    window is the last ``veto`` before that moment; it is announced in the thread when it opens.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    stage: str
    change_class: str | None = Field(default=None, alias="class")
    priority: str | None = None
    after: Duration
    veto: Duration = timedelta(0)

    @field_validator("stage")
    @classmethod
    def _stage(cls, value: str) -> str:
        if value not in ("test", "prod"):
            raise ValueError(f"unknown stage {value!r}; the stages are test and prod")
        return value

    @field_validator("change_class")
    @classmethod
    def _class(cls, value: str | None) -> str | None:
        if value == "emergency":
            raise ValueError("emergency changes are never approved automatically")
        if value not in (None, "standard", "normal"):
            raise ValueError(f"unknown class {value!r}; write standard or normal")
        return value

    @model_validator(mode="after")
    def _veto_fits(self) -> AutoApproveRule:
        if self.veto > self.after:
            raise ValueError("veto: the veto window cannot be longer than the delay ('after')")
        return self

    def describe(self, index: int) -> str:
        """The rule as the control log and the card name it: ``auto_approve[2] (prod, routine, after 7d)``."""
        parts = [
            self.stage,
            *(p for p in (self.change_class, self.priority) if p),
            f"after {format_duration(self.after)}",
        ]
        if self.veto:
            parts.append(f"veto {format_duration(self.veto)}")
        return f"auto_approve[{index}] ({', '.join(parts)})"


class SlaFrom(StrEnum):
    DISCOVERED = "discovered"  # when patchwarden first saw the system affected
    PUBLISHED = "published"  # the advisory's publication


class Exposure(StrEnum):
    INTERNET = "internet"
    INTERNAL = "internal"
    ISOLATED = "isolated"


SEVERITY_RANK = {"unknown": 0, "none": 1, "low": 2, "medium": 3, "high": 4, "critical": 5}


class PriorityWhen(Strict):
    """The conditions of a priority rule; all given ones must hold (none given: always)."""

    kev: bool | None = None
    epss_at_least: float | None = Field(default=None, ge=0, le=1)
    percentile_at_least: float | None = Field(default=None, ge=0, le=1)
    exposure: Exposure | list[Exposure] | None = None
    severity_at_least: str | None = None

    @field_validator("severity_at_least")
    @classmethod
    def _severity(cls, value: str | None) -> str | None:
        if value is not None and value not in SEVERITY_RANK:
            raise ValueError(f"unknown severity {value!r}; one of {', '.join(SEVERITY_RANK)}")
        return value


class PriorityRule(Strict):
    """``{tier: fix-now, when: {kev: true}}``: the first rule whose conditions hold names the match's tier."""

    tier: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,31}$")]
    when: PriorityWhen = PriorityWhen()


class StepUpMethod(StrEnum):
    TOTP = "totp"
    OIDC = "oidc"


class StepUpWhen(Strict):
    """Which approvals need a second factor; every key given must match (an empty ``when`` matches all)."""

    priority: str | None = None
    stage: str | None = Field(default=None, pattern=r"^(test|prod)$")
    change_class: str | None = Field(default=None, alias="class", pattern=r"^(normal|standard|emergency)$")


class StepUp(Strict):
    """``policy.step_up``: an Approve click only reserves the vote until confirmed with ``method``."""

    when: StepUpWhen = Field(default_factory=StepUpWhen)
    method: StepUpMethod
    confirm_within: Duration = timedelta(minutes=5)

    @model_validator(mode="after")
    def _supported(self) -> StepUp:
        # fail closed: a rule that cannot be enforced yet is an error, never a silent "no step-up"
        if self.method is StepUpMethod.OIDC:
            raise ValueError("method oidc is not available yet; use totp")
        if self.when.priority is not None:
            raise ValueError("when.priority is not available yet (changes carry no priority); use stage or class")
        return self


class Policy(Strict):
    """The approval and scheduling policy. ``version`` is stamped on every control-log entry."""

    version: int = Field(ge=1)
    self_approval: bool = False
    approval_ttl: Duration = timedelta(hours=72)
    remind_every: Duration = timedelta(hours=24)
    operators: str
    fallback: str = "security"
    stages: dict[str, list[Requirement]]
    announce_notice: Duration = timedelta(hours=24)
    remind_before: Duration = timedelta(hours=1)
    missed_window: MissedWindow = MissedWindow.NEXT
    on_failed_verify: OnFailedVerify = OnFailedVerify.ASK
    sla_days: dict[str, int] = Field(default_factory=lambda: {"critical": 30, "high": 90, "medium": 90, "low": 90})
    kev_due_date: bool = True
    auto_approve: list[AutoApproveRule] = Field(default_factory=list)  # first match wins; none: explicit only

    sla_from: SlaFrom = SlaFrom.DISCOVERED
    priority: list[PriorityRule] = Field(default_factory=list)  # empty: the tier is the severity band

    @model_validator(mode="after")
    def _tiers_have_sla(self) -> Policy:
        missing = [f"{i}.tier {r.tier!r}" for i, r in enumerate(self.priority) if r.tier not in self.sla_days]
        if missing:
            raise ValueError(f"policy.priority: no sla_days for {', '.join(missing)}; add them under sla_days")
        return self

    verify_fix: VerifyFix = VerifyFix.INVENTORY  # a completed prod change proves its fix by inventory
    drift_window: Duration = timedelta(hours=24)  # a version change without a change this recent is drift
    exception_remind_before: Duration = timedelta(days=3)

    # who may book an emergency window (bypassing windows and notice): the operators, and this group if set
    emergency_approvers: str | None = None

    step_up: StepUp | None = None

    @field_validator("stages")
    @classmethod
    def _stages(cls, value: dict[str, list[Requirement]]) -> dict[str, list[Requirement]]:
        missing = {"test", "prod"} - set(value)
        if missing:
            raise ValueError(f"stages must define {' and '.join(sorted(missing))}")
        unknown = set(value) - {"test", "prod", "exception"}
        if unknown:
            raise ValueError(
                f"unknown stage(s) {', '.join(sorted(unknown))}; the stages are test, prod (and exception)"
            )
        for stage, reqs in value.items():
            if not reqs:
                raise ValueError(f"stage {stage} has no requirement; an empty policy would approve nothing")
        return value


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


EMAIL_PATTERN = r"^[^@\s<>,;]+@[^@\s<>,;]+\.[^@\s<>,;]+$"
EmailAddress = Annotated[str, Field(pattern=EMAIL_PATTERN, max_length=254)]
MailRecipient = Annotated[str, Field(pattern=EMAIL_PATTERN + r"|^[UW][A-Z0-9]{2,}$", max_length=254)]


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


def normalize_database_url(url: str) -> str:
    """Map plain ``sqlite://`` / ``postgresql://`` URLs to the async drivers patchwarden uses."""
    for plain, async_ in (
        ("sqlite://", "sqlite+aiosqlite://"),
        ("postgresql://", "postgresql+asyncpg://"),
        ("postgres://", "postgresql+asyncpg://"),
    ):
        if url.startswith(plain):
            return async_ + url[len(plain) :]
    return url


class Settings(BaseSettings):
    """Process settings from the environment. Secrets stay ``SecretStr`` and never reach logs."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    slack_bot_token: SecretStr | None = Field(default=None, validation_alias="SLACK_BOT_TOKEN")
    slack_signing_secret: SecretStr | None = Field(default=None, validation_alias="SLACK_SIGNING_SECRET")
    slack_app_token: SecretStr | None = Field(default=None, validation_alias="SLACK_APP_TOKEN")
    slack_api_url: str = Field(default="https://slack.com/api/", validation_alias="SLACK_API_URL")
    database_url: str = Field(
        default="sqlite+aiosqlite:///patchwarden.db",
        validation_alias=AliasChoices("PATCHWARDEN_DATABASE_URL"),
    )
    config_path: Path = Field(default=Path("patchwarden.yaml"), validation_alias="PATCHWARDEN_CONFIG")
    audit_key: SecretStr | None = Field(default=None, validation_alias="PATCHWARDEN_AUDIT_KEY")
    calendar_token: SecretStr | None = Field(default=None, validation_alias="PATCHWARDEN_CALENDAR_TOKEN")
    secrets_key: SecretStr | None = Field(default=None, validation_alias="PATCHWARDEN_SECRETS_KEY")
    audit_key_file: Path = Field(default=Path("patchwarden-audit.key"), validation_alias="PATCHWARDEN_AUDIT_KEY_FILE")

    @field_validator("slack_api_url")
    @classmethod
    def _trailing_slash(cls, value: str) -> str:
        return value.rstrip("/") + "/"

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, value: str) -> str:
        return normalize_database_url(value)

    def require(self, *names: str) -> None:
        """Raise ``MissingSecretError`` naming the first missing or empty secret."""
        env_names = {
            "slack_bot_token": "SLACK_BOT_TOKEN",
            "slack_signing_secret": "SLACK_SIGNING_SECRET",
            "slack_app_token": "SLACK_APP_TOKEN",
        }
        for name in names:
            value = getattr(self, name)
            if value is None or not value.get_secret_value().strip():
                raise MissingSecretError(
                    f"{env_names[name]} is not set or empty; patchwarden serve needs it "
                    "(see the README, section 'Slack app set-up')"
                )
