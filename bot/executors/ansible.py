"""The ``ansible`` executor: runs a playbook with ansible-runner, limited to the system's hosts.

1. ``playbook`` and ``inventory`` are checked at startup (a missing file stops startup);
2. ``limit`` is mandatory, so a playbook written for ``hosts: all`` cannot reach beyond the system;
3. extra variables are fixed values from the configuration plus the validated ``patchwarden_*`` facts of
   the request (change, stage, system, run id, artifacts); nothing typed by a person is passed;
4. the blocking runner runs in a worker thread; on timeout or cancellation its ``cancel_callback`` tells it
   to kill ansible-playbook's process group, and the step waits (up to ``CANCEL_GRACE``) for that to
   happen before ``CancelledError`` propagates;
5. the per-host recap (ok / changed / failed / unreachable / skipped) becomes the step's target results;
6. the run's just-in-time credential (``DeploymentRequest.credential_env``) reaches ansible-playbook as
   environment variables, and an ``ssh-cert`` key as ``ansible_ssh_private_key_file`` (OpenSSH picks the
   ``-cert.pub`` next to it); nothing long-lived is passed.

Reboots: a play that leaves a host needing a reboot sets the fact ``reboot_required: true`` (``set_fact``),
e.g. from ``/var/run/reboot-required``; ``rebooted: true`` when it rebooted the host itself
(``ansible.builtin.reboot``). They are read from the task results' events, not from a fact cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
from pathlib import Path
from typing import Annotated, Any

import ansible_runner
import psutil
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

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

CANCEL_GRACE = 30.0
# How often the runner thread asks whether it was cancelled (ansible-runner's default is 5 s).
CANCEL_POLL = 0.25
_RESERVED_PREFIX = "patchwarden_"
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")

ExtraVar = str | int | float | bool


def _check_extravars(value: dict[str, ExtraVar]) -> dict[str, ExtraVar]:
    for key in value:
        # ansible-runner writes keys into a JSON string unescaped: allow identifiers only.
        if not _IDENTIFIER.fullmatch(key):
            raise ValueError(f"extra variable name {key!r} is not an identifier")
        if key.startswith(_RESERVED_PREFIX):
            raise ValueError(f"extra variable {key} is reserved for patchwarden")
    return value


ExtraVars = Annotated[dict[str, ExtraVar], AfterValidator(_check_extravars)]


class PlaybookStep(BaseModel):
    """A further playbook (``verify``, ``rollback``) run with the same inventory and limit."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    playbook: Path
    extravars: ExtraVars = Field(default_factory=dict)
    timeout: Duration | None = None


class AnsibleOptions(ExecutorOptions):
    """Options of the ``ansible`` executor."""

    playbook: Path
    inventory: Path
    limit: str = Field(pattern=r"^[A-Za-z0-9_.*\[\]][A-Za-z0-9_.:,&!*\[\]-]{0,500}$")
    extravars: ExtraVars = Field(default_factory=dict)
    private_data_dir: Path | None = None
    verify: PlaybookStep | None = None
    rollback: PlaybookStep | None = None
    check_plan: bool = False  # plan runs the playbook in --check --diff mode against the hosts


def host_results(stats: dict[str, dict[str, int]] | None) -> tuple[TargetResult, ...]:
    """Per-host results from ansible-runner's ``stats`` (the play recap)."""
    if not stats:
        return ()
    keys = ("ok", "changed", "failures", "dark", "skipped", "processed", "ignored", "rescued")
    hosts = sorted(set().union(*(stats.get(k, {}) for k in keys)))
    results = []
    for host in hosts:
        counts = {k: int(stats.get(k, {}).get(host, 0)) for k in keys}
        if counts["dark"]:
            status = TargetStatus.UNREACHABLE
        elif counts["failures"]:
            status = TargetStatus.FAILED
        elif counts["changed"]:
            status = TargetStatus.CHANGED
        elif counts["ok"]:
            status = TargetStatus.OK
        else:
            status = TargetStatus.SKIPPED
        detail = " ".join(
            f"{label}={counts[k]}"
            for label, k in (
                ("ok", "ok"),
                ("changed", "changed"),
                ("failed", "failures"),
                ("unreachable", "dark"),
                ("skipped", "skipped"),
            )
        )
        results.append(TargetResult(target=host, status=status, detail=detail))
    return tuple(results)


def kill_tree(pid: int) -> None:
    """SIGKILL everything ansible-playbook ``pid`` started, then leave ``pid`` itself to ansible-runner.

    ansible-runner kills only ansible-playbook's process group, but Ansible's workers detach with
    ``setsid()``, so the commands they run would outlive a cancelled deployment. Only a direct child of
    this process is touched, so a stale or reused pid can never make us kill a stranger.
    """
    try:
        main = psutil.Process(pid)
        if main.ppid() != os.getpid():
            return
        main.suspend()  # no new workers while the tree is collected
        children = main.children(recursive=True)
    except psutil.Error:
        return
    groups = set()
    for child in children:
        with contextlib.suppress(psutil.Error, OSError):
            groups.add(os.getpgid(child.pid))
    for group in groups - {os.getpgrp()}:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signal.SIGKILL)
    for child in children:
        with contextlib.suppress(psutil.Error):
            child.kill()


REBOOT_FACTS = ("reboot_required", "rebooted")


def reboot_facts_of(event: dict[str, Any]) -> set[str]:
    """Which of ``reboot_required`` / ``rebooted`` a task result sets to true (``set_fact``), from its event."""
    if event.get("event") != "runner_on_ok":
        return set()
    data = event.get("event_data")
    res = data.get("res") if isinstance(data, dict) else None
    facts = res.get("ansible_facts") if isinstance(res, dict) else None
    return {name for name in REBOOT_FACTS if isinstance(facts, dict) and facts.get(name) is True}


def playbook_binary() -> Path | None:
    """``ansible-playbook`` on PATH, else beside this Python (a venv's ``bin``, run without activating it)."""
    found = shutil.which("ansible-playbook")
    if found is not None:
        return Path(found)
    beside = Path(sys.executable).parent / "ansible-playbook"
    return beside if beside.is_file() and os.access(beside, os.X_OK) else None


class AnsibleExecutor(Executor[AnsibleOptions]):
    """Runs an Ansible playbook through ansible-runner."""

    name = "ansible"

    def _check(self) -> None:
        # Resolved once at startup, so a later change of working directory cannot swap the files.
        self._paths: dict[str, Path] = {}
        files = {"playbook": self.options.playbook, "inventory": self.options.inventory}
        for step in (Step.VERIFY, Step.ROLLBACK):
            extra = getattr(self.options, step.value)
            if extra is not None:
                files[f"{step.value}.playbook"] = extra.playbook
        for key, path in files.items():
            if not path.is_file():
                raise ConfigError(f"{self._key(key)}: file {path} does not exist")
            self._paths[key] = path.resolve()
        binary = playbook_binary()
        if binary is None:
            raise ConfigError(
                f"{self._key('playbook')}: ansible-playbook is not installed (not on PATH, "
                f"nor beside {sys.executable}); install ansible-core"
            )
        self._binary = binary

    def _step(self, step: Step) -> PlaybookStep | None:
        if step in (Step.PLAN, Step.APPLY):
            return PlaybookStep(playbook=self.options.playbook, extravars=self.options.extravars)
        extra: PlaybookStep | None = getattr(self.options, step.value)
        return extra

    def _has_step(self, step: Step) -> bool:
        return self._step(step) is not None

    def timeout_for(self, step: Step) -> Duration:
        """The playbook's own ``timeout`` if set, else the environment's."""
        extra = self._step(step)
        return extra.timeout if extra is not None and extra.timeout is not None else self.options.timeout

    def limit_for(self, request: DeploymentRequest) -> str:
        """The configured ``limit``, narrowed to the request's targets (their intersection, never wider).

        Ansible reads ``a,b,&c`` as ``(a ∪ b) ∩ c``; with a compound ``limit`` that reading would widen the
        set, so targets on such a limit are refused (fail closed).
        """
        if not request.targets:
            return self.options.limit
        if any(c in self.options.limit for c in ",:&!"):
            raise ExecutorError(f"targets cannot be combined with the compound limit {self.options.limit!r}")
        return ",".join(request.targets) + f",&{self.options.limit}"

    def _extravars(self, request: DeploymentRequest, extra: PlaybookStep) -> dict[str, Any]:
        return {
            **extra.extravars,
            "patchwarden_change": request.change_key,
            "patchwarden_stage": request.stage,
            "patchwarden_system": request.system,
            "patchwarden_run_id": request.run_id,
            "patchwarden_artifacts": [a.manifest() for a in request.artifacts],
            "patchwarden_targets": list(request.targets),
            **(
                {"ansible_ssh_private_key_file": request.credential_env["PATCHWARDEN_SSH_KEY"]}
                if "PATCHWARDEN_SSH_KEY" in request.credential_env
                else {}
            ),
        }

    async def _run_playbook(self, request: DeploymentRequest, ctx: StepContext, *, check: bool = False) -> HookResult:
        extra = self._step(ctx.step)
        assert extra is not None
        key = "playbook" if ctx.step in (Step.PLAN, Step.APPLY) else f"{ctx.step.value}.playbook"
        playbook = self._paths[key]
        loop = asyncio.get_running_loop()
        lines: asyncio.Queue[str | None] = asyncio.Queue()
        cancel = threading.Event()
        playbook_pid: list[int] = []
        facts: set[str] = set()

        def on_event(event: dict[str, Any]) -> bool:
            # Runs in the runner thread: hand the text to the event loop, never touch ctx here.
            if not playbook_pid and isinstance(event.get("pid"), int):
                playbook_pid.append(event["pid"])
                with contextlib.suppress(OSError):  # a recovery after a crash stops this group (issue 14)
                    loop.call_soon_threadsafe(ctx.process_started, os.getpgid(event["pid"]))
            facts.update(reboot_facts_of(event))
            text = event.get("stdout")
            if text:
                loop.call_soon_threadsafe(lines.put_nowait, str(text))
            return True  # keep the event: the recap (stats) is read from the stored events

        async def forward() -> None:
            while (text := await lines.get()) is not None:
                for line in text.splitlines():
                    await ctx.emit(line)

        with contextlib.ExitStack() as stack:
            if self.options.private_data_dir is not None:
                self.options.private_data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            data_dir = self.options.private_data_dir or Path(
                stack.enter_context(
                    tempfile.TemporaryDirectory(prefix="patchwarden-ansible-", ignore_cleanup_errors=True)
                )
            )
            kwargs: dict[str, Any] = {
                "private_data_dir": str(data_dir),
                "project_dir": str(playbook.parent),
                "playbook": str(playbook),
                "inventory": str(self._paths["inventory"]),
                "limit": self.limit_for(request),
                "extravars": self._extravars(request, extra),
                "ident": f"{request.run_id}-{ctx.step.value}",
                "quiet": True,
                "event_handler": on_event,
                "cancel_callback": cancel.is_set,
                "settings": {"pexpect_timeout": CANCEL_POLL, "suppress_ansible_output": True},
            }
            envvars = dict(request.credential_env)
            if shutil.which("ansible-playbook") is None:  # found beside this Python: let ansible-runner find it too
                envvars["PATH"] = os.pathsep.join([str(self._binary.parent), os.environ.get("PATH", os.defpath)])
            if envvars:
                kwargs["envvars"] = envvars
            if check:
                kwargs["cmdline"] = "--check --diff"
            shown = f"ansible-playbook {playbook.name} --limit {kwargs['limit']}{' --check' if check else ''}"
            await ctx.emit(shown)
            forwarder = asyncio.create_task(forward())
            work = asyncio.ensure_future(asyncio.to_thread(ansible_runner.run, **kwargs))
            try:
                runner = await asyncio.shield(work)
            except asyncio.CancelledError:
                if playbook_pid:
                    kill_tree(playbook_pid[0])
                cancel.set()
                # Report only once ansible is really gone (or the grace is over), so nothing keeps running.
                await asyncio.wait({work}, timeout=CANCEL_GRACE)
                raise
            finally:
                lines.put_nowait(None)
                await asyncio.wait({forwarder}, timeout=5)
                forwarder.cancel()
            # Read the recap while the private data dir (which holds the events) still exists.
            try:
                stats = runner.stats
            except ansible_runner.AnsibleRunnerException:  # no events: ansible-playbook never started
                stats = None
            targets = host_results(stats)
            ok = runner.status == "successful" and runner.rc == 0
            counts = {s: sum(1 for t in targets if t.status is s) for s in TargetStatus}
            recap = ", ".join(f"{n} {s}" for s, n in counts.items() if n) or "no host ran"
            summary = f"{ctx.step} {'succeeded' if ok else 'failed'}: playbook {playbook.name} ({recap})"
            if not ok and not targets:
                summary += f"; ansible-playbook ended with status {runner.status}, code {runner.rc}"
            return HookResult(
                ok=ok, summary=summary, targets=targets,
                reboot_required="reboot_required" in facts, rebooted="rebooted" in facts,
            )  # fmt: skip

    async def _plan(self, request: DeploymentRequest, ctx: StepContext) -> HookResult:
        if self.options.check_plan:
            return await self._run_playbook(request, ctx, check=True)
        return HookResult(
            ok=True,
            summary=f"would run playbook {self.options.playbook} on hosts matching {self.options.limit!r} "
            f"from inventory {self.options.inventory}",
        )

    async def _apply(self, request: DeploymentRequest, ctx: StepContext) -> HookResult:
        return await self._run_playbook(request, ctx)

    async def _verify(self, request: DeploymentRequest, ctx: StepContext) -> HookResult:
        return await self._run_playbook(request, ctx)

    async def _rollback(self, request: DeploymentRequest, ctx: StepContext) -> HookResult:
        return await self._run_playbook(request, ctx)
