"""Rings with success gates, and pacing inside a window: how one environment's targets are walked.

A rollout goes ring by ring (``environments.<stage>.rings``). Within a ring, each target gets its own
executor call, at most ``max_parallel`` at once, each after a random ``jitter``; a step running longer than
``max_duration`` is stopped and reported. Then the ring's gate decides:

1. no ring and no target starts later than ``cutoff`` before the window ends (SSM's Cutoff): it is
   refused, not squeezed in;
2. a ring's targets are applied, then the ones that applied are verified;
3. the gate holds when the successes reach ``min_success`` and the success rate reaches
   ``min_success_rate`` (no threshold given: every target must succeed);
4. with ``soak``, the ring's successful targets are verified again after that long, and any that fails
   then fails the gate; the next ring waits for the soak;
5. a failed gate stops the rollout: finished rings stay as they are, later rings never start, and the
   caller asks the owner what to do (``on_failed_verify``).

``pre`` and ``post`` hooks (argv) run before the first and after the last target; a failing ``pre`` stops
the rollout before anything changed. The functions here take the clock, a sleep and the per-target step as
arguments, so the fake clock drives them in tests and the runner drives them in production.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from bot.config import Environment, Gate, Ring, format_duration
from bot.executors.base import Step, StepResult

HostStep = Callable[[str, Step], Awaitable[StepResult]]
Sleep = Callable[[timedelta], Awaitable[None]]
Now = Callable[[], datetime]
HOOK_TIMEOUT = timedelta(minutes=10)


class RingStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REFUSED = "refused"  # the cutoff came first


@dataclass
class RingOutcome:
    """One ring's progress, for the card, the thread and ``changes show --json`` (``rings``)."""

    name: str
    targets: tuple[str, ...]
    status: RingStatus = RingStatus.PENDING
    started: datetime | None = None
    finished: datetime | None = None
    succeeded: tuple[str, ...] = ()
    reason: str = ""
    results: dict[str, StepResult] = field(default_factory=dict)  # the last step per target

    def to_json(self) -> dict[str, object]:
        """``{name, targets, status, started, finished}`` (the JSON contract)."""
        return {
            "name": self.name,
            "targets": list(self.targets),
            "status": self.status.value,
            "started": self.started.isoformat() if self.started else None,
            "finished": self.finished.isoformat() if self.finished else None,
        }


@dataclass(frozen=True)
class Pacing:
    """How targets are paced inside a window."""

    max_parallel: int = 10
    cutoff: timedelta = timedelta(0)
    max_duration: timedelta | None = None
    jitter: timedelta = timedelta(0)

    @classmethod
    def of(cls, env: Environment) -> Pacing:
        """The environment's pacing settings."""
        return cls(env.max_parallel, env.cutoff, env.max_duration, env.jitter)


def rings_of(env: Environment, targets: Sequence[str]) -> list[Ring]:
    """The environment's rings, or one ring of all targets when it has none."""
    return list(env.rings) if env.rings else [Ring(name="all", targets=list(targets))]


def gate_failure(gate: Gate, *, total: int, successes: int) -> str | None:
    """Step 3: why the gate does not hold, or None when it does."""
    if gate.min_success is None and gate.min_success_rate is None:
        return None if successes == total else f"{total - successes} of {total} targets failed"
    if gate.min_success is not None and successes < gate.min_success:
        return f"{successes} succeeded, the gate needs {gate.min_success}"
    rate = successes / total if total else 0.0
    if gate.min_success_rate is not None and rate < gate.min_success_rate:
        return f"success rate {rate:.0%}, the gate needs {gate.min_success_rate:.0%}"
    return None


@dataclass
class Rollout:
    """One environment's rollout: rings, pacing, the window's end and how to run a step on a target."""

    rings: list[Ring]
    step: HostStep
    now: Now
    sleep: Sleep
    pacing: Pacing = Pacing()
    window_end: datetime | None = None
    rng: random.Random = field(default_factory=random.Random)
    on_ring: Callable[[RingOutcome], Awaitable[None]] | None = None  # a ring finished or was refused
    on_start: Callable[[RingOutcome], Awaitable[None]] | None = None  # a ring started
    outcomes: list[RingOutcome] = field(default_factory=list)

    def _past_cutoff(self) -> bool:
        return self.window_end is not None and self.now() > self.window_end - self.pacing.cutoff

    def _cutoff_reason(self) -> str:
        assert self.window_end is not None
        return (
            f"the window ends {self.window_end:%Y-%m-%d %H:%M %Z} and nothing starts in its last "
            f"{format_duration(self.pacing.cutoff)} (cutoff)"
        )

    async def _one(self, gate: asyncio.Semaphore, host: str, step: Step) -> StepResult:
        async with gate:
            if self.pacing.jitter:
                await self.sleep(self.pacing.jitter * self.rng.random())
            started = self.now()
            if step is Step.APPLY and self._past_cutoff():  # 1. (per target)
                return StepResult(step=step, ok=False, summary=self._cutoff_reason(), started=started, finished=started)
            if self.pacing.max_duration is None:
                return await self.step(host, step)
            try:
                async with asyncio.timeout(self.pacing.max_duration.total_seconds()):
                    return await self.step(host, step)
            except TimeoutError:
                limit = format_duration(self.pacing.max_duration)
                return StepResult(
                    step=step, ok=False, summary=f"stopped after max_duration {limit}", started=started,
                    finished=self.now(), timed_out=True,
                )  # fmt: skip

    async def _all(self, hosts: Sequence[str], step: Step) -> dict[str, StepResult]:
        gate = asyncio.Semaphore(self.pacing.max_parallel)
        results = await asyncio.gather(*(self._one(gate, h, step) for h in hosts))
        return dict(zip(hosts, results, strict=True))

    async def _ring(self, ring: Ring, out: RingOutcome) -> str | None:
        out.status, out.started = RingStatus.RUNNING, self.now()
        if self.on_start is not None:
            await self.on_start(out)
        applied = await self._all(ring.targets, Step.APPLY)  # 2.
        out.results.update(applied)
        verified = await self._all([h for h in ring.targets if applied[h].ok], Step.VERIFY)
        out.results.update(verified)
        ok = [h for h in ring.targets if h in verified and verified[h].ok]
        reason = gate_failure(ring.gate, total=len(ring.targets), successes=len(ok))  # 3.
        if reason is None and ring.gate.soak and ok:  # 4.
            await self.sleep(ring.gate.soak)
            again = await self._all(ok, Step.VERIFY)
            out.results.update(again)
            lost = [h for h in ok if not again[h].ok]
            ok = [h for h in ok if again[h].ok]
            if lost:
                reason = f"verify failed after the {format_duration(ring.gate.soak)} soak on {', '.join(lost)}"
        out.succeeded = tuple(ok)
        return reason

    async def run(self) -> list[RingOutcome]:
        """Walk the rings (steps 1-5 of the module docstring); returns every ring's outcome."""
        self.outcomes = [RingOutcome(r.name, tuple(r.targets)) for r in self.rings]
        for ring, out in zip(self.rings, self.outcomes, strict=True):
            if self._past_cutoff():  # 1.
                out.status, out.reason = RingStatus.REFUSED, self._cutoff_reason()
                await self._said(out)
                break
            reason = await self._ring(ring, out)
            out.finished = self.now()
            out.status, out.reason = (RingStatus.FAILED, reason) if reason else (RingStatus.SUCCEEDED, "")
            await self._said(out)
            if reason:  # 5.
                break
        return self.outcomes

    async def _said(self, out: RingOutcome) -> None:
        if self.on_ring is not None:
            await self.on_ring(out)

    @property
    def succeeded(self) -> bool:
        """Every ring ran and held its gate."""
        return bool(self.outcomes) and all(o.status is RingStatus.SUCCEEDED for o in self.outcomes)


def ring_line(out: RingOutcome) -> str:
    """One thread line per ring."""
    icon = {
        RingStatus.SUCCEEDED: ":white_check_mark:", RingStatus.FAILED: ":x:", RingStatus.REFUSED: ":no_entry_sign:",
        RingStatus.RUNNING: ":arrows_counterclockwise:", RingStatus.PENDING: ":white_circle:",
    }[out.status]  # fmt: skip
    done = f" ({len(out.succeeded)}/{len(out.targets)} succeeded)" if out.status is not RingStatus.PENDING else ""
    why = f": {out.reason}" if out.reason else ""
    return f"{icon} Ring *{out.name}* {out.status.value}{done}{why}"


async def run_hook(argv: Sequence[str], *, env: dict[str, str], what: str) -> tuple[bool, str]:
    """Run a ``pre``/``post`` hook (argv, never a shell); ``(ok, last lines of output)``."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
    except OSError as exc:
        return False, f"{what} hook could not start: {exc.strerror or exc}"
    try:
        async with asyncio.timeout(HOOK_TIMEOUT.total_seconds()):
            out, _ = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return False, f"{what} hook timed out after {format_duration(HOOK_TIMEOUT)}"
    text = out.decode(errors="replace").strip()[-500:]
    return proc.returncode == 0, text or f"{what} hook exited {proc.returncode}"
