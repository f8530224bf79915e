"""The executor plugin contract: how patchwarden drives a deployment tool.

An executor is a class registered under the entry-point group ``patchwarden.executors``. It is enabled
only when an environment of a system names it (``executor: shell``); being installed enables nothing.

Callers use the four public, concrete steps of :class:`Executor`:

``plan``
    A preview of what ``apply`` would do, shown on the approval card. Must not change anything.
``apply``
    The deployment itself.
``verify``
    Post-deployment checks. Without a configured verify step it succeeds with "no verify step configured".
``rollback``
    Undo the deployment. Without a configured rollback step it fails with "no rollback configured".

Each step returns a :class:`StepResult`; the base class guarantees its invariants so plugins cannot break
them:

1. the options are validated once, at startup, by the plugin's ``Options`` model (``extra="forbid"``);
   a bad option raises ``ConfigError`` naming the key path;
2. every step runs under ``asyncio.timeout`` (the ``timeout`` option, default 15 minutes); a timeout
   becomes a failed ``StepResult`` with ``timed_out=True``;
3. cancelling the calling task cancels the hook, which must stop its work (kill the process group, stop
   polling) and let ``CancelledError`` propagate; the base re-raises it;
4. any other exception from a hook becomes a failed ``StepResult`` with a safe summary; the traceback goes
   to the log only, never to Slack;
5. progress lines are batched (at most one callback every ``PROGRESS_INTERVAL`` seconds) so posting them
   to a Slack thread stays under Slack's one-message-per-second limit, and a failing progress callback
   never fails the deployment;
6. the full output is kept (capped at ``MAX_OUTPUT_CHARS``) and returned even on failure or timeout so the
   caller can attach it to the thread as a file;
7. a plugin that reaches the network gets the configured outbound-URL policy as ``self.outbound``
   (``bot.outbound``: no internal address unless ``outbound.allow`` lists it; without one, every internal
   address is refused) and a refusal by it becomes a failed ``StepResult`` saying which URL and why.

Plugins implement ``_plan``, ``_apply``, ``_verify`` and ``_rollback``. They receive only frozen pydantic
models (the request, their options) and a :class:`StepContext`; never a database session or a Slack client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Generic, TypeVar, cast, get_args, get_origin

from pydantic import ValidationError

from bot.config import format_duration
from bot.errors import ConfigError, ExecutorError, OutboundRefusedError
from bot.executors.model import (
    DEFAULT_TIMEOUT,
    ArtifactInfo,
    DeploymentRequest,
    ExecutorOptions,
    HookResult,
    Step,
    StepResult,
    TargetResult,
    TargetStatus,
)
from bot.outbound import OutboundPolicy

log = logging.getLogger(__name__)
__all__ = [
    "DEFAULT_TIMEOUT",
    "ArtifactInfo",
    "DeploymentRequest",
    "Executor",
    "ExecutorOptions",
    "HookResult",
    "ProcessCallback",
    "ProgressCallback",
    "Step",
    "StepContext",
    "StepResult",
    "TargetResult",
    "TargetStatus",
]

ProgressCallback = Callable[[str], Awaitable[None]]
ProcessCallback = Callable[[int | None], None]  # a step's local process group started (pgid) or ended (None)

PROGRESS_INTERVAL = 2.0
MAX_PROGRESS_CHARS = 3000
MAX_OUTPUT_CHARS = 5_000_000


class StepContext:
    """A hook's link to the outside: a batched progress stream and the output buffer the base keeps.

    ``emit`` records a line and streams it; ``record`` records text without streaming it (e.g. the final
    output a remote system reports). The base reads ``output`` even after a timeout, so hooks should record
    as they go rather than at the end.
    """

    def __init__(
        self, step: Step, progress: ProgressCallback | None, on_process: ProcessCallback | None = None
    ) -> None:
        self.step = step
        self._progress = progress
        self._on_process = on_process
        self._chunks: list[str] = []
        self._size = 0
        self._truncated = False
        self._pending: list[str] = []
        self._flusher: asyncio.Task[None] | None = None
        self._last_flush = 0.0

    @property
    def output(self) -> str:
        """Everything recorded so far (capped at ``MAX_OUTPUT_CHARS``)."""
        text = "".join(self._chunks)
        if self._truncated:
            text += "\n[output truncated by patchwarden: over the size limit]\n"
        return text

    def record(self, text: str) -> None:
        """Append ``text`` to the output without streaming it."""
        room = MAX_OUTPUT_CHARS - self._size
        if room <= 0:
            self._truncated = self._truncated or bool(text)
            return
        if len(text) > room:
            self._truncated = True
            text = text[:room]
        self._chunks.append(text)
        self._size += len(text)

    def process_started(self, pgid: int | None) -> None:
        """Tell the runner the step's local process group (``None`` when it ended), so a recovery after a
        crash of the bot can stop an orphan. Executors that start local processes call it."""
        if self._on_process is not None:
            try:
                self._on_process(pgid)
            except Exception:
                log.warning("process callback failed for step %s", self.step, exc_info=True)

    async def emit(self, line: str) -> None:
        """Record one line of output and queue it for the (batched) progress callback."""
        line = line.rstrip("\r\n")
        self.record(line + "\n")
        if self._progress is None:
            return
        self._pending.append(line)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_later())

    async def _flush_later(self) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(max(0.0, self._last_flush + PROGRESS_INTERVAL - loop.time()))
        await self._flush()

    async def _flush(self) -> None:
        if not self._pending or self._progress is None:
            return
        lines, self._pending = self._pending, []
        self._last_flush = asyncio.get_running_loop().time()
        text = "\n".join(lines)
        if len(text) > MAX_PROGRESS_CHARS:
            # Slack messages have a size limit; the whole output still reaches the thread as a file.
            text = "…" + text[-MAX_PROGRESS_CHARS:]
        try:
            await self._progress(text)
        except Exception:
            log.warning("progress callback failed for step %s; deployment continues", self.step, exc_info=True)

    async def close(self) -> None:
        """Stop the flusher and deliver what is still pending."""
        if self._flusher is not None and not self._flusher.done():
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        await self._flush()


def _now() -> datetime:
    return datetime.now(UTC)


def format_validation_error(exc: ValidationError, key_path: str) -> str:
    """One line per error, each naming its full key path (``systems.web.environments.test.argv``)."""
    lines = []
    for err in exc.errors():
        path = ".".join([key_path, *(str(p) for p in err["loc"])]).strip(".") or "(options)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling)"
        lines.append(f"{path}: {msg}")
    return "; ".join(lines)


OptionsT = TypeVar("OptionsT", bound=ExecutorOptions)


class Executor(ABC, Generic[OptionsT]):
    """Base class of every executor plugin (see the module docstring for the contract).

    Subclasses set ``name``, name their options model as the type parameter (``class ShellExecutor(
    Executor[ShellOptions])``: ``Options`` is set from it and ``self.options`` is typed by it), implement the four
    ``_hooks`` and may override ``_has_step`` (to say verify/rollback are not configured) and ``_check``
    (extra startup checks, raising ``ConfigError``).
    """

    name: ClassVar[str]
    Options: ClassVar[type[ExecutorOptions]] = ExecutorOptions
    options: OptionsT

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for base in getattr(cls, "__orig_bases__", ()):
            args = get_args(base) if get_origin(base) is Executor else ()
            if args and isinstance(args[0], type) and issubclass(args[0], ExecutorOptions):
                cls.Options = args[0]

    def __init__(
        self, options: Mapping[str, Any], *, key_path: str = "", outbound: OutboundPolicy | None = None
    ) -> None:
        self.key_path = key_path
        self.outbound = outbound if outbound is not None else OutboundPolicy()  # 7. (fail closed)
        try:
            self.options = cast(OptionsT, self.Options.model_validate(dict(options)))
        except ValidationError as exc:
            raise ConfigError(
                f"invalid options for executor {self.name!r}: {format_validation_error(exc, key_path)}"
            ) from exc
        self._check()

    def _check(self) -> None:
        """Extra startup checks (files exist, secrets set); raise ``ConfigError`` naming the key path."""
        return None

    def _key(self, field: str) -> str:
        return f"{self.key_path}.{field}" if self.key_path else field

    def has_step(self, step: Step) -> bool:
        """Whether this environment configures ``step`` (plan and apply always exist)."""
        return step in (Step.PLAN, Step.APPLY) or self._has_step(step)

    def _has_step(self, step: Step) -> bool:
        return True

    def timeout_for(self, step: Step) -> timedelta:
        """The time limit of ``step``."""
        return self.options.timeout

    async def plan(
        self,
        request: DeploymentRequest,
        *,
        progress: ProgressCallback | None = None,
        on_process: ProcessCallback | None = None,
    ) -> StepResult:
        """Preview what ``apply`` would do, changing nothing."""
        return await self._run(Step.PLAN, self._plan, request, progress, on_process)

    async def apply(
        self,
        request: DeploymentRequest,
        *,
        progress: ProgressCallback | None = None,
        on_process: ProcessCallback | None = None,
    ) -> StepResult:
        """Deploy."""
        return await self._run(Step.APPLY, self._apply, request, progress, on_process)

    async def verify(
        self,
        request: DeploymentRequest,
        *,
        progress: ProgressCallback | None = None,
        on_process: ProcessCallback | None = None,
    ) -> StepResult:
        """Run the post-deployment checks (ok when none are configured)."""
        if not self.has_step(Step.VERIFY):
            now = _now()
            return StepResult(step=Step.VERIFY, ok=True, summary="no verify step configured", started=now, finished=now)
        return await self._run(Step.VERIFY, self._verify, request, progress, on_process)

    async def rollback(
        self,
        request: DeploymentRequest,
        *,
        progress: ProgressCallback | None = None,
        on_process: ProcessCallback | None = None,
    ) -> StepResult:
        """Undo the deployment (fails when no rollback is configured)."""
        if not self.has_step(Step.ROLLBACK):
            now = _now()
            return StepResult(step=Step.ROLLBACK, ok=False, summary="no rollback configured", started=now, finished=now)
        return await self._run(Step.ROLLBACK, self._rollback, request, progress, on_process)

    async def _run(
        self,
        step: Step,
        hook: Callable[[DeploymentRequest, StepContext], Awaitable[HookResult]],
        request: DeploymentRequest,
        progress: ProgressCallback | None,
        on_process: ProcessCallback | None = None,
    ) -> StepResult:
        if not isinstance(request, DeploymentRequest):
            raise ExecutorError(f"{self.name}: expected a DeploymentRequest, got {type(request).__name__}")
        ctx = StepContext(step, progress, on_process)
        started = _now()
        timed_out = False
        limit = self.timeout_for(step)
        try:
            async with asyncio.timeout(limit.total_seconds()):
                outcome = await hook(request, ctx)
        except TimeoutError:
            timed_out = True
            outcome = HookResult(ok=False, summary=f"{step} timed out after {format_duration(limit)} and was stopped")
        except (ExecutorError, OutboundRefusedError) as exc:  # 7. (the URL in the message is redacted)
            log.warning("executor %s: %s failed: %s", self.name, step, exc)
            outcome = HookResult(ok=False, summary=f"{step} failed: {exc.user_message}")
        except Exception as exc:
            # The message may carry paths or secrets: only the type goes to Slack, the traceback to the log.
            log.exception("executor %s: %s raised", self.name, step)
            outcome = HookResult(
                ok=False,
                summary=f"{step} failed with an internal error ({type(exc).__name__}); see the bot log",
            )
        finally:
            await ctx.close()
        return StepResult(
            step=step,
            ok=outcome.ok,
            summary=outcome.summary,
            targets=outcome.targets,
            output=ctx.output,
            started=started,
            finished=_now(),
            timed_out=timed_out,
            inventory=outcome.inventory,
            reboot_required=outcome.reboot_required,
            rebooted=outcome.rebooted,
        )

    @abstractmethod
    async def _plan(self, request: DeploymentRequest, ctx: StepContext) -> HookResult:
        """Describe what ``_apply`` would do; change nothing."""

    @abstractmethod
    async def _apply(self, request: DeploymentRequest, ctx: StepContext) -> HookResult:
        """Deploy. Stop all work and re-raise when cancelled."""

    @abstractmethod
    async def _verify(self, request: DeploymentRequest, ctx: StepContext) -> HookResult:
        """Check the deployment. Only called when ``_has_step(Step.VERIFY)``."""

    @abstractmethod
    async def _rollback(self, request: DeploymentRequest, ctx: StepContext) -> HookResult:
        """Undo the deployment. Only called when ``_has_step(Step.ROLLBACK)``."""
