"""``policy:``: approval requirements, auto-approval, SLA and priority rules, step-up."""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from typing import Annotated

from pydantic import (
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from bot.config.fields import Duration, SlackUserId, Strict, format_duration
from bot.config.people import Delegation, Digest


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


class PresencePolicy(StrEnum):
    REQUIRED = "required"  # a due prod window starts only once an owner checked in (within presence_wait)
    NOTIFY = "notify"  # the owners are told (DM) that it starts
    OFF = "off"


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


class OidcProvider(Strict):
    """``policy.step_up.oidc``: the identity provider a step-up sign-in goes to (authorization code + PKCE).

    ``issuer`` is the provider's issuer URL (its discovery document is ``/.well-known/openid-configuration``
    under it, and the outbound-URL policy applies to it); ``redirect_url`` is the bot's own callback,
    ``<bot base URL>/oidc/callback``, registered at the provider; the client secret comes from the environment
    variable named by ``client_secret_env`` (none: a public client, PKCE only).
    """

    issuer: Annotated[str, Field(pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$", max_length=500)]
    client_id: Annotated[str, Field(min_length=1, max_length=200)]
    client_secret_env: str | None = Field(default=None, pattern=r"^[A-Z_][A-Z0-9_]*$")
    redirect_url: Annotated[str, Field(pattern=r"^https?://[^\s/?#]+/[^\s?#]*$", max_length=500)]


class StepUp(Strict):
    """``policy.step_up``: an Approve click only reserves the vote until confirmed with ``method``."""

    when: StepUpWhen = Field(default_factory=StepUpWhen)
    method: StepUpMethod
    confirm_within: Duration = timedelta(minutes=5)
    oidc: OidcProvider | None = None

    @model_validator(mode="after")
    def _provider(self) -> StepUp:
        # fail closed: a method that cannot be carried out is an error, never a silent "no step-up"
        if self.method is StepUpMethod.OIDC and self.oidc is None:
            raise ValueError("method oidc needs an oidc: {issuer, client_id, redirect_url} section")
        if self.method is not StepUpMethod.OIDC and self.oidc is not None:
            raise ValueError("oidc: is only used with method oidc; remove it or set method: oidc")
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
    # a run whose owner process has not renewed its heartbeat for this long is taken as dead: it is marked
    # interrupted and its owner asked what happened (the heartbeat is renewed every quarter of it)
    heartbeat_timeout: Duration = Field(default=timedelta(seconds=60), gt=timedelta(seconds=0))

    # people are away (issue 12): delegation, escalation after a wait, the weekly CAB digest
    delegation: Delegation = Field(default_factory=Delegation)
    escalate_after: Duration | None = None  # remind the fallback group, then each manager, per step
    managers: list[SlackUserId] = Field(default_factory=list)
    digest: Digest | None = None

    # the owner is present for production (issue 12, item 2)
    prod_presence: PresencePolicy = PresencePolicy.NOTIFY
    presence_wait: Duration = timedelta(minutes=15)  # from the window's start; no check-in by then: no start
    # the technical documentation is revised after each update (issue 12, item 4)
    docs_remind_after: Duration = timedelta(days=3)

    @field_validator("presence_wait", "docs_remind_after")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be longer than zero")
        return value

    @model_validator(mode="after")
    def _step_up_tier(self) -> Policy:
        wanted = self.step_up.when.priority if self.step_up is not None else None
        tiers = {r.tier for r in self.priority} or set(SEVERITY_RANK)
        if wanted is not None and wanted not in tiers:
            raise ValueError(
                f"policy.step_up.when.priority: {wanted!r} is no tier of the policy; one of {', '.join(sorted(tiers))}"
            )
        return self

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
