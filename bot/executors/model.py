"""The values the executor contract exchanges: requests, step and target results, the options base.

Frozen pydantic models, so a plugin cannot change what the runner handed it. Re-exported by
:mod:`bot.executors.base`, the one module a plugin imports.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bot.config import Duration

DEFAULT_TIMEOUT = timedelta(minutes=15)

_RUN_ID = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"
_NAME = r"^[a-z0-9][a-z0-9_.-]{0,62}$"
# Host names, FQDNs and IP addresses; never a leading "-" that a tool could read as an option (CWE-88).
_TARGET = re.compile(r"^[A-Za-z0-9_\[][A-Za-z0-9_.:\[\]-]{0,252}$")


class TargetStatus(StrEnum):
    """Outcome of a step on one host (the names follow Ansible's recap)."""

    OK = "ok"
    CHANGED = "changed"
    FAILED = "failed"
    UNREACHABLE = "unreachable"
    SKIPPED = "skipped"


class Step(StrEnum):
    """The four steps of a deployment."""

    PLAN = "plan"
    APPLY = "apply"
    VERIFY = "verify"
    ROLLBACK = "rollback"


class TargetResult(BaseModel):
    """The outcome of a step on one target."""

    model_config = ConfigDict(frozen=True)

    target: str
    status: TargetStatus
    detail: str = ""


class StepResult(BaseModel):
    """What a step did. ``output`` is the whole captured output (the caller attaches it as a file)."""

    model_config = ConfigDict(frozen=True)

    step: Step
    ok: bool
    summary: str
    targets: tuple[TargetResult, ...] = ()
    output: str = ""
    started: datetime
    finished: datetime
    timed_out: bool = False
    inventory: str = ""  # an SBOM (CycloneDX or SPDX JSON) of the system the step wrote, if any


class ArtifactInfo(BaseModel):
    """A verified artifact as an executor gets it: ``path`` (quarantine, re-hashed just before the step) is
    the only copy to use; ``sha256`` lets an executor that copies the file check the copy (built-ins do)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.+~-]{0,199}$")
    path: Path  # absolute, no control characters (checked below)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    signer: str = Field(default="", max_length=100)
    size: int = Field(default=0, ge=0)

    @field_validator("path")
    @classmethod
    def _path(cls, path: Path) -> Path:
        if not path.is_absolute() or any(c in str(path) for c in "\n\r\0"):
            raise ValueError(f"artifact path {str(path)[:80]!r} must be absolute")
        return path

    def manifest(self) -> dict[str, str]:
        """The entry of ``PATCHWARDEN_ARTIFACTS`` / ``patchwarden_artifacts``."""
        return {"name": self.name, "path": str(self.path), "sha256": self.sha256, "signer": self.signer}


class DeploymentRequest(BaseModel):
    """One step of one deployment run, as handed to an executor.

    Every field is validated to a narrow format because values reach process environments, URLs and
    JSON bodies; free text typed by people (titles, descriptions) is deliberately not part of it.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    run_id: str = Field(pattern=_RUN_ID)
    change_key: str = Field(pattern=r"^CHG-\d{1,12}$")
    stage: str = Field(pattern=_NAME)
    system: str = Field(pattern=_NAME)
    targets: tuple[str, ...] = ()
    artifacts: tuple[ArtifactInfo, ...] = ()  # the verified artifacts, and only those

    @field_validator("targets")
    @classmethod
    def _targets(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for target in value:
            if not _TARGET.fullmatch(target):
                raise ValueError(f"{target[:60]!r} is not a host name or address")
        return value

    @field_validator("artifacts")
    @classmethod
    def _artifacts(cls, value: tuple[ArtifactInfo, ...]) -> tuple[ArtifactInfo, ...]:
        if len({a.name for a in value}) != len(value):
            raise ValueError("artifact names must be unique within a request")
        return value


class ExecutorOptions(BaseModel):
    """Base of every plugin's ``Options`` model: unknown keys are errors, options are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timeout: Duration = DEFAULT_TIMEOUT


class HookResult(BaseModel):
    """What a hook returns; the base adds the step, the times and the captured output."""

    model_config = ConfigDict(frozen=True)

    ok: bool
    summary: str
    targets: tuple[TargetResult, ...] = ()
    inventory: str = ""  # an SBOM of the system after the step (the runner imports it after verify)
