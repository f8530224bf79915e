"""Rings with gates and pacing inside a window, through the shell executor with a real script per target."""

from __future__ import annotations

import os
import random
import stat
from datetime import timedelta
from pathlib import Path

import pytest

from bot.config import Ring
from bot.deps import FakeClock
from bot.executors.base import DeploymentRequest, Step, StepResult
from bot.executors.shell import ShellExecutor
from bot.workflows.rollout import Pacing, RingOutcome, RingStatus, Rollout, ring_line, run_hook

SCRIPT = """#!/bin/sh
# $1: step, $2: marker folder; the target comes in PATCHWARDEN_TARGETS (one per call)
step="$1"; dir="$2"; t="$PATCHWARDEN_TARGETS"
echo "$step" >> "$dir/$t.log"
if [ -e "$dir/hang-$t" ]; then sleep 30; fi
if [ -e "$dir/slow" ]; then sleep 0.05; fi
if [ "$step" = verify ] && [ -e "$dir/fail-verify-$t" ]; then echo "service down on $t"; exit 1; fi
echo "$step ok on $t"
"""


@pytest.fixture
def marks(tmp_path: Path) -> Path:
    folder = tmp_path / "marks"
    folder.mkdir()
    return folder


@pytest.fixture
def shell(tmp_path: Path, marks: Path) -> ShellExecutor:
    script = tmp_path / "deploy.sh"
    script.write_text(SCRIPT)
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return ShellExecutor(
        {
            "argv": [str(script), "apply", str(marks)],
            "verify": {"argv": [str(script), "verify", str(marks)]},
            "timeout": "1m",
        }
    )


class Probe:
    """Runs each target's step through the executor and measures how many ran at once."""

    def __init__(self, executor: ShellExecutor) -> None:
        self.executor, self.running, self.most = executor, 0, 0

    async def __call__(self, host: str, step: Step) -> StepResult:
        request = DeploymentRequest(run_id="r1", change_key="CHG-7", stage="prod", system="web", targets=(host,))
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            return await (self.executor.apply if step is Step.APPLY else self.executor.verify)(request)
        finally:
            self.running -= 1


def steps(marks: Path, host: str) -> list[str]:
    log = marks / f"{host}.log"
    return log.read_text().split() if log.exists() else []


def rollout(probe: Probe, clock: FakeClock, rings: list[Ring], **kw: object) -> Rollout:
    async def sleep(delta: timedelta) -> None:  # the soak passes on the fake clock
        clock.advance(delta)

    said: list[RingOutcome] = []

    async def on_ring(out: RingOutcome) -> None:
        said.append(out)

    r = Rollout(rings=rings, step=probe, now=clock.now, sleep=sleep, on_ring=on_ring, **kw)  # type: ignore[arg-type]
    r.said = said  # type: ignore[attr-defined]
    return r


RINGS = [
    Ring.model_validate({"name": "canary", "targets": ["web-01"], "gate": {"min_success": 1, "soak": "30m"}}),
    Ring.model_validate(
        {"name": "half", "targets": ["web-02", "web-03"], "gate": {"min_success_rate": 0.9, "soak": "1h"}}
    ),
    Ring.model_validate({"name": "rest", "targets": ["web-04", "web-05", "web-06"]}),
]


async def test_three_rings_whose_gates_hold(shell: ShellExecutor, marks: Path) -> None:
    clock = FakeClock()
    r = rollout(Probe(shell), clock, RINGS)
    outcomes = await r.run()
    assert [o.status for o in outcomes] == [RingStatus.SUCCEEDED] * 3 and r.succeeded
    assert steps(marks, "web-01") == ["apply", "verify", "verify"]  # verified again after the soak
    assert steps(marks, "web-06") == ["apply", "verify"]  # no soak in the last ring
    assert clock.offset == timedelta(hours=1, minutes=30)  # both soaks passed on the clock
    assert [o.to_json()["status"] for o in r.said] == ["succeeded"] * 3  # type: ignore[attr-defined]
    assert ring_line(outcomes[1]) == ":white_check_mark: Ring *half* succeeded (2/2 succeeded)"


async def test_a_gate_that_fails_stops_the_rollout_and_keeps_the_finished_rings(
    shell: ShellExecutor, marks: Path
) -> None:
    (marks / "fail-verify-web-03").touch()
    r = rollout(Probe(shell), FakeClock(), RINGS)
    canary, half, rest = await r.run()
    assert canary.status is RingStatus.SUCCEEDED
    assert half.status is RingStatus.FAILED and half.reason == "success rate 50%, the gate needs 90%"
    assert half.succeeded == ("web-02",) and "service down on web-03" in half.results["web-03"].output
    assert rest.status is RingStatus.PENDING and not r.succeeded
    assert all(steps(marks, h) == [] for h in rest.targets)  # the next ring never started


async def test_verify_failing_during_the_soak_fails_the_gate(shell: ShellExecutor, marks: Path) -> None:
    class Breaks(Probe):
        async def __call__(self, host: str, step: Step) -> StepResult:
            if step is Step.VERIFY and steps(marks, host).count("verify") == 1:
                (marks / f"fail-verify-{host}").touch()  # healthy at first, broken by the second verify
            return await super().__call__(host, step)

    canary, half, rest = await rollout(Breaks(shell), FakeClock(), RINGS).run()
    assert canary.status is RingStatus.FAILED and canary.reason == "verify failed after the 30m soak on web-01"
    assert half.status is RingStatus.PENDING and rest.status is RingStatus.PENDING


async def test_the_cutoff_refuses_a_ring_that_would_start_too_late(shell: ShellExecutor, marks: Path) -> None:
    clock = FakeClock()
    end = clock.now() + timedelta(minutes=45)
    r = rollout(Probe(shell), clock, RINGS, window_end=end, pacing=Pacing(cutoff=timedelta(minutes=20)))
    canary, half, rest = await r.run()
    assert canary.status is RingStatus.SUCCEEDED  # started at once; its 30 m soak ends 5 m past the cutoff
    assert half.status is RingStatus.REFUSED and "(cutoff)" in half.reason
    assert rest.status is RingStatus.PENDING and steps(marks, "web-02") == []


async def test_max_parallel_is_respected(shell: ShellExecutor, marks: Path) -> None:
    (marks / "slow").touch()
    ring = Ring(name="all", targets=[f"web-{n:02}" for n in range(1, 13)])
    probe = Probe(shell)
    [out] = await rollout(probe, FakeClock(), [ring], pacing=Pacing(max_parallel=3)).run()
    assert out.status is RingStatus.SUCCEEDED and len(out.succeeded) == 12
    assert probe.most == 3  # measured: never more, and the limit was reached


async def test_a_step_past_max_duration_is_stopped_and_reported(shell: ShellExecutor, marks: Path) -> None:
    (marks / "hang-web-02").touch()
    ring = Ring(name="all", targets=["web-01", "web-02"])
    pacing = Pacing(max_duration=timedelta(seconds=1))
    [out] = await rollout(Probe(shell), FakeClock(), [ring], pacing=pacing).run()
    assert out.status is RingStatus.FAILED and out.succeeded == ("web-01",)
    assert out.results["web-02"].timed_out and out.results["web-02"].summary == "stopped after max_duration 1s"


async def test_jitter_delays_each_target_within_its_bound(shell: ShellExecutor) -> None:
    clock = FakeClock()
    ring = Ring(name="all", targets=["a1", "a2", "a3"])
    r = rollout(Probe(shell), clock, [ring], pacing=Pacing(jitter=timedelta(minutes=2)), rng=random.Random(7))
    await r.run()
    assert timedelta(0) < clock.offset <= timedelta(minutes=6)


async def test_hooks_run_argv_and_report_failure(tmp_path: Path) -> None:
    env = {"PATH": os.environ["PATH"]}
    assert await run_hook(["sh", "-c", "echo snapshot taken"], env=env, what="pre") == (True, "snapshot taken")
    ok, text = await run_hook(["sh", "-c", "echo no space >&2; exit 3"], env=env, what="pre")
    assert not ok and text == "no space"
    ok, text = await run_hook([str(tmp_path / "missing")], env=env, what="post")
    assert not ok and text.startswith("post hook could not start")


def test_ring_config_refuses_duplicates() -> None:
    from bot.config import Environment

    with pytest.raises(ValueError, match="one ring only"):
        Environment.model_validate(
            {"executor": "shell", "rings": [{"name": "a", "targets": ["x"]}, {"name": "b", "targets": ["x"]}]}
        )
