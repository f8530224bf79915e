"""The ``shell`` executor: runs a command from the configuration, never a shell string.

Security properties (each is tested):

1. The process gets exactly the configured argv (``create_subprocess_exec``, no shell); nothing typed by
   a person is ever placed on the command line.
2. The environment is built from scratch: only the variables named in ``env_allow`` (default ``PATH`` and
   ``LANG``) are copied from the bot's environment, so tokens and secrets of the bot do not leak; the
   ``PATCHWARDEN_*`` variables carry validated values only (see ``DeploymentRequest``).
3. Artifacts: the child sees only the verified files, as read-only copies (re-hashed after copying) under
   their artifact names in a fresh per-step directory ``PATCHWARDEN_ARTIFACT_DIR``; ``PATCHWARDEN_ARTIFACTS``
   is the path of a JSON file listing ``{name, path, sha256, signer}`` (paths inside that directory). A
   copy that does not hash to the verified digest fails the step before the command starts.
4. The process runs in its own session; on timeout or cancellation the whole process group is sent
   SIGTERM, then SIGKILL after ``KILL_GRACE`` seconds, so grandchildren do not survive as orphans.
5. Just-in-time credentials (``DeploymentRequest.credential_env``, e.g. ``PATCHWARDEN_SSH_KEY`` and
   ``PATCHWARDEN_SSH_CERT``: files in the run's private directory, valid until the window ends and deleted
   when the run ends) are added to the environment; they cannot replace the ``PATCHWARDEN_*`` values above.

Reboots: ``PATCHWARDEN_REBOOT`` names a file that does not exist when the command starts. A command that
leaves the target needing a reboot writes ``required`` into it; one that restarted the target itself writes
``done``. No file: no reboot needed. Anything else in the file counts as ``required`` (a reboot is never
silently skipped). E.g. on Debian: ``[ -e /var/run/reboot-required ] && echo required > "$PATCHWARDEN_REBOOT"``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import tempfile
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, field_validator

from bot.config import Duration
from bot.errors import ConfigError, ExecutorError
from bot.executors.base import (
    DeploymentRequest,
    Executor,
    ExecutorOptions,
    HookResult,
    Step,
    StepContext,
    TargetResult,
    TargetStatus,
)

KILL_GRACE = 3.0
MAX_INVENTORY_BYTES = 20_000_000  # the SBOM a step may write to PATCHWARDEN_INVENTORY_OUT
# After the main process exits, how long to keep reading output that a background child still writes.
DRAIN_GRACE = 2.0
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


def _check_argv(value: tuple[str, ...]) -> tuple[str, ...]:
    if not value or not value[0]:
        raise ValueError("argv needs at least the program to run")
    if any("\0" in arg for arg in value):
        raise ValueError("argv must not contain NUL characters")
    return value


Argv = Annotated[tuple[str, ...], AfterValidator(_check_argv)]


class Command(BaseModel):
    """A further command (``verify``, ``rollback``, ``plan``): an argv and an optional own time limit."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    argv: Argv
    timeout: Duration | None = None


class ShellOptions(ExecutorOptions):
    """Options of the ``shell`` executor."""

    argv: Argv
    plan: Command | None = None  # optional preview command; without it the plan shows the argv
    verify: Command | None = None
    rollback: Command | None = None
    env_allow: tuple[str, ...] = ("PATH", "LANG")
    cwd: Path | None = None

    @field_validator("env_allow")
    @classmethod
    def _env_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            if not _ENV_NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not an environment variable name")
            if name.upper().startswith("PATCHWARDEN_"):
                raise ValueError(f"{name} is set by patchwarden itself and cannot be passed through")
        return value


def build_env(
    allow: tuple[str, ...], request: DeploymentRequest, *, artifact_dir: Path, manifest: Path
) -> dict[str, str]:
    """The child's whole environment: allow-listed variables plus the validated ``PATCHWARDEN_*`` ones."""
    env = {name: os.environ[name] for name in allow if name in os.environ}
    env.update(request.credential_env)
    env.update(
        PATCHWARDEN_CHANGE=request.change_key,
        PATCHWARDEN_STAGE=request.stage,
        PATCHWARDEN_SYSTEM=request.system,
        PATCHWARDEN_RUN_ID=request.run_id,
        PATCHWARDEN_TARGETS=" ".join(request.targets),
        PATCHWARDEN_ARTIFACT_DIR=str(artifact_dir),
        PATCHWARDEN_ARTIFACTS=str(manifest),
    )
    return env


def stage_artifacts(request: DeploymentRequest, folder: Path) -> tuple[Path, Path]:
    """Copy the verified artifacts read-only into ``folder/artifacts`` and write ``folder/artifacts.json``.

    Each copy is hashed again and must equal the digest the runner verified (fail closed); returns the
    directory and the manifest path.
    """
    target = folder / "artifacts"
    target.mkdir(mode=0o700)
    listed = []
    for artifact in request.artifacts:
        copy = target / artifact.name
        shutil.copyfile(artifact.path, copy)
        with copy.open("rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
        if digest != artifact.sha256:
            raise ExecutorError(f"artifact {artifact.name} changed after verification; nothing was run")
        copy.chmod(0o444)
        listed.append(artifact.model_copy(update={"path": copy}).manifest())
    target.chmod(0o500)
    manifest = folder / "artifacts.json"
    manifest.write_text(json.dumps(listed, indent=1))
    manifest.chmod(0o444)
    return target, manifest


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


class _Collector(asyncio.SubprocessProtocol):
    """Receives the child's output chunks and its exit, independently of each other.

    ``Process.wait()`` would also wait until every holder of the output pipe closed it, which a background
    grandchild may never do (cpython#119710); owning the protocol lets the exit be seen on its own.
    """

    def __init__(self) -> None:
        self.chunks: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.exited: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def pipe_data_received(self, fd: int, data: bytes | str) -> None:
        self.chunks.put_nowait(data.encode() if isinstance(data, str) else data)

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        self.chunks.put_nowait(None)

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)


async def _stop_group(pgid: int, exited: asyncio.Future[None]) -> None:
    """SIGTERM the process group, wait up to ``KILL_GRACE`` for the leader, then SIGKILL the group."""
    _signal_group(pgid, signal.SIGTERM)
    await asyncio.wait({exited}, timeout=KILL_GRACE)
    # Grandchildren may ignore SIGTERM or outlive the leader; nothing of the group may survive.
    _signal_group(pgid, signal.SIGKILL)
    await asyncio.wait({exited}, timeout=KILL_GRACE)


async def _pump(chunks: asyncio.Queue[bytes | None], ctx: StepContext) -> None:
    """Split the output into lines for ``ctx``; a partial last line is kept until more data comes."""
    rest = b""
    while (chunk := await chunks.get()) is not None:
        *lines, rest = (rest + chunk).split(b"\n")
        for line in lines:
            await ctx.emit(line.decode("utf-8", errors="replace"))
    if rest:
        await ctx.emit(rest.decode("utf-8", errors="replace"))


async def run_command(argv: Argv, *, env: dict[str, str], cwd: Path | None, ctx: StepContext) -> int:
    """Run ``argv`` in its own session, stream its merged stdout/stderr to ``ctx``, return the exit code.

    On cancellation (including the base class's timeout) the process group is stopped before the
    ``CancelledError`` propagates.
    """
    loop = asyncio.get_running_loop()
    try:
        transport, protocol = await loop.subprocess_exec(
            _Collector,
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
    except OSError as exc:
        raise ExecutorError(f"cannot start {argv[0]}: {exc.strerror or exc}") from exc
    pump = asyncio.create_task(_pump(protocol.chunks, ctx))
    ctx.process_started(transport.get_pid())  # the leader of its own group: its pid is the pgid
    try:
        # Shielded: cancelling this wait must not cancel the future that _stop_group waits on.
        await asyncio.shield(protocol.exited)
        # A background child that inherited stdout could keep the pipe open forever: stop reading soon.
        done, _ = await asyncio.wait({pump}, timeout=DRAIN_GRACE)
        if not done:
            ctx.record("\n[patchwarden stopped reading: a background process kept the output open]\n")
        code = transport.get_returncode()
        assert code is not None
        return code
    except BaseException:
        # start_new_session=True made the child the leader of its own process group.
        await asyncio.shield(_stop_group(transport.get_pid(), protocol.exited))
        raise
    finally:
        ctx.process_started(None)
        pump.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pump
        transport.close()


def _read_inventory(path: Path) -> str:
    """The SBOM a step wrote to ``PATCHWARDEN_INVENTORY_OUT`` ("" when none; capped)."""
    if not path.is_file():
        return ""
    if path.stat().st_size > MAX_INVENTORY_BYTES:
        raise ExecutorError(f"the inventory written to PATCHWARDEN_INVENTORY_OUT is over {MAX_INVENTORY_BYTES} bytes")
    return path.read_text(encoding="utf-8", errors="replace")


def read_reboot(path: Path) -> str:
    """What the step wrote to ``PATCHWARDEN_REBOOT``: "" (no file), "done", else "required"."""
    if not path.is_file():
        return ""
    word = path.read_bytes()[:64].decode(errors="replace").strip().lower()
    return "done" if word == "done" else "required"


class ShellExecutor(Executor[ShellOptions]):
    """Runs the configured argv; exit code 0 means success."""

    name = "shell"

    def _check(self) -> None:
        cwd = self.options.cwd
        if cwd is not None and not cwd.is_dir():
            raise ConfigError(f"{self._key('cwd')}: directory {cwd} does not exist")

    def _command(self, step: Step) -> Command | None:
        if step is Step.APPLY:
            return Command(argv=self.options.argv)
        return {Step.PLAN: self.options.plan, Step.VERIFY: self.options.verify, Step.ROLLBACK: self.options.rollback}[
            step
        ]

    def _has_step(self, step: Step) -> bool:
        return self._command(step) is not None

    def timeout_for(self, step: Step) -> Duration:
        """The command's own ``timeout`` if set, else the environment's."""
        command = self._command(step)
        if command is not None and command.timeout is not None:
            return command.timeout
        return self.options.timeout

    async def _execute(self, request: DeploymentRequest, ctx: StepContext) -> HookResult:
        command = self._command(ctx.step)
        assert command is not None
        shown = shlex.join(command.argv)
        await ctx.emit(f"$ {shown}")
        with tempfile.TemporaryDirectory(prefix=f"patchwarden-{request.run_id}-") as tmp:
            folder = Path(tmp)
            artifact_dir, manifest = await asyncio.to_thread(stage_artifacts, request, folder)
            env = build_env(self.options.env_allow, request, artifact_dir=artifact_dir, manifest=manifest)
            env["PATCHWARDEN_INVENTORY_OUT"] = str(folder / "inventory.json")
            env["PATCHWARDEN_REBOOT"] = str(folder / "reboot")
            try:
                code = await run_command(command.argv, env=env, cwd=self.options.cwd, ctx=ctx)
            finally:
                artifact_dir.chmod(0o700)  # so the temporary directory can be removed
            sbom = await asyncio.to_thread(_read_inventory, folder / "inventory.json")
            reboot = await asyncio.to_thread(read_reboot, folder / "reboot")
        ok = code == 0
        if sbom:
            await ctx.emit(f"(the step wrote an inventory of {len(sbom):,} bytes to PATCHWARDEN_INVENTORY_OUT)")
        status = (TargetStatus.CHANGED if ctx.step is Step.APPLY else TargetStatus.OK) if ok else TargetStatus.FAILED
        detail = f"exit code {code}"
        summary = f"{ctx.step} {'succeeded' if ok else 'failed'}: {shown} exited with code {code}"
        targets = tuple(TargetResult(target=t, status=status, detail=detail) for t in request.targets)
        if reboot:
            await ctx.emit(f"(the step says: reboot {reboot})")
        return HookResult(
            ok=ok, summary=summary, targets=targets, inventory=sbom,
            reboot_required=reboot == "required", rebooted=reboot == "done",
        )  # fmt: skip

    async def _plan(self, request: DeploymentRequest, ctx: StepContext) -> HookResult:
        if self.options.plan is not None:
            return await self._execute(request, ctx)
        where = f" in {self.options.cwd}" if self.options.cwd else ""
        return HookResult(ok=True, summary=f"would run: {shlex.join(self.options.argv)}{where}")

    async def _apply(self, request: DeploymentRequest, ctx: StepContext) -> HookResult:
        return await self._execute(request, ctx)

    async def _verify(self, request: DeploymentRequest, ctx: StepContext) -> HookResult:
        return await self._execute(request, ctx)

    async def _rollback(self, request: DeploymentRequest, ctx: StepContext) -> HookResult:
        return await self._execute(request, ctx)
