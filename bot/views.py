"""Read models shared by workflows and renderers: what a card, a post or a listing shows.

Workflows build these; ``bot/blocks`` renders them. Nothing here touches the database or Slack.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from bot import policy
from bot.advisories.model import Advisory as AdvisoryModel
from bot.text import strip_invisible
from storage.models import (
    AdvisoryMatch,
    AdvisoryRecord,
    Approval,
    AuditEntry,
    Change,
    ChangeClass,
    ChangeState,
    Deployment,
    Stage,
    StageReport,
    Window,
)

Text = Annotated[str, StringConstraints(strip_whitespace=True, max_length=3000)]
UserId = Annotated[str, StringConstraints(pattern=r"^[UW][A-Z0-9]{2,}$")]

SNOOZE_CHOICES: dict[str, timedelta] = {"1d": timedelta(days=1), "7d": timedelta(days=7), "30d": timedelta(days=30)}

__all__ = ["Stage"]  # re-exported for listeners, which import no storage module


def state_label(state: ChangeState) -> str:
    """Human words for a state: ``pending_test_approval`` → ``pending test approval``."""
    return state.value.replace("_", " ")


def effective_severity(severity: str, *, known_exploited: bool) -> str:
    """The band the SLA uses: known-exploited advisories count as critical."""
    return "critical" if known_exploited else severity


@dataclass(frozen=True)
class AutoStatus:
    """The policy's auto-approval of a stage: booked or only planned, announced, vetoed or applied."""

    rule: str
    stage: Stage
    at: datetime
    veto_from: datetime
    vetoed_by: str | None = None
    veto_reason: str = ""
    announced: bool = False
    applied: bool = False

    def to_json(self) -> dict[str, object]:
        """``changes show --json`` ``auto_approval``: ``{rule, at, veto_until, vetoed_by}``."""
        at = self.at.isoformat()
        return {"rule": self.rule, "at": at, "veto_until": at, "vetoed_by": self.vetoed_by}


@dataclass(frozen=True)
class ChangeSnapshot:
    """A change with everything its card and status reply show, loaded in one go."""

    change: Change
    stage: Stage | None
    progress: policy.StageProgress | None
    approvals: tuple[Approval, ...]
    history: tuple[AuditEntry, ...]
    windows: tuple[Window, ...] = ()
    deployments: tuple[Deployment, ...] = ()
    plans: tuple[StageReport, ...] = ()  # executor previews of the current revision and stage
    auto: AutoStatus | None = None  # the policy's auto-approval of the awaited stage, if a rule applies
    test_result: str | None = None  # the owner's recorded test result ("passed" | "problems"), if any
    advisory_link: str | None = None  # permalink-style link to the linked advisory's post, if posted
    presence: dict[str, object] | None = None  # {required, checked_in_by, at} of its prod window (issue 12)
    docs: dict[str, object] | None = None  # {status, confirmed_by, at, url}: documentation after completion
    log_seq: int | None = None  # the newest control-log entry of the change when this was read (storage.cards)

    @property
    def docs_pending(self) -> bool:
        """The change completed and its documentation is not confirmed yet."""
        return self.docs is not None and self.docs.get("status") == "pending"


@dataclass(frozen=True)
class ApprovePrompt:
    """What an eligible person confirms before their approval counts (``bot.workflows.approval_prompt``)."""

    change: Change
    stage: Stage
    progress: policy.StageProgress  # before this vote
    requirement: str  # the requirement key this vote fills
    completes: bool  # this vote completes the stage
    step_up: str | None  # the second factor that follows the confirmation ("totp", "oidc"), if any
    step_up_minutes: int


@dataclass(frozen=True)
class AdvisoryView:
    """Everything a post or a listing shows about one advisory."""

    record: AdvisoryRecord
    advisory: AdvisoryModel
    matches: list[AdvisoryMatch]
    tier: str = ""  # the highest priority tier among the matches
    why: tuple[str, ...] = ()  # why that tier: KEV (proof), EPSS (estimate), severity, exposure
    arrival: str = ""  # "overdue by its own dates since ..." when it was overdue before we saw it

    @property
    def systems(self) -> list[str]:
        """Affected systems, in match order, without duplicates."""
        return list(dict.fromkeys(m.system for m in self.matches))


class ChangeInput(BaseModel):
    """What a person fills in to request (or edit) a change. Field names are the modal's block ids."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    systems: list[str] = Field(min_length=1)
    # bidi overrides and zero-width characters are removed before the length check (display spoofing)
    title: Annotated[
        str, AfterValidator(strip_invisible), StringConstraints(strip_whitespace=True, min_length=3, max_length=200)
    ]
    details: Text = ""
    technical: Text = ""
    change_class: ChangeClass = ChangeClass.NORMAL
    officer: UserId
    operator: UserId | None = None
    planned_test: date | None = None
    planned_prod: date | None = None
    expected_downtime: Annotated[str, StringConstraints(strip_whitespace=True, max_length=100)] = ""
    rollback_plan: Text = ""
    advisory_ref: Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)] = ""

    @model_validator(mode="after")
    def _dates(self) -> ChangeInput:
        if self.planned_test and self.planned_prod and self.planned_prod < self.planned_test:
            raise ValueError("planned_prod: the production date must not be before the test date")
        return self
