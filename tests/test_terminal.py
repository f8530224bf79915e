"""The terminal a newcomer sees (issue 13): quiet by default, a busy port in one line, clean Ctrl-C/SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
ENV = {k: v for k, v in os.environ.items() if not k.startswith("SLACK_")} | {"PYTHONUNBUFFERED": "1"}


def start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "bot", *args],
        cwd=REPO,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_url(proc: subprocess.Popen[str], limit: float = 60.0) -> str:
    """Read stdout until the sandbox prints its URL (polling with a deadline)."""
    assert proc.stdout is not None
    deadline = time.monotonic() + limit
    seen = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            break
        seen.append(line)
        if "open http://127.0.0.1:" in line:
            return line
    proc.kill()
    raise AssertionError(f"no URL line; got {seen!r}")


def test_busy_port_says_which_and_how_to_pick_another_exit_2() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "bot", "sandbox", "--port", str(port)],
            cwd=REPO,
            env=ENV,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode == 2, result
    err = result.stderr.strip().splitlines()
    assert [line for line in err if "SANDBOX" not in line and "Nothing reaches" not in line] == [
        f"Error: Port {port} is already in use (another sandbox or bot?): stop it, or pick another port with "
        "--port, e.g. --port 3001."
    ], result.stderr
    assert "Traceback" not in result.stderr and "Unclosed" not in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_sandbox_is_quiet_and_stops_cleanly_and_quickly(sig: signal.Signals) -> None:
    proc = start("sandbox", "--port", "0")
    try:
        url = wait_for_url(proc)
        assert "calendar.ics" in url
        # not waiting for work: an observation period in which the 2 s outbox ticks would have been logged
        time.sleep(4.5)
        sent = time.monotonic()
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=15)
        took = time.monotonic() - sent
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "CancelledError" not in err and "Unclosed" not in err, err
    assert "Running job" not in err and "executed successfully" not in err and '"GET ' not in err, err
    assert f"{sig.name}: stopping the sandbox" in err
    assert took < 5.0, f"shutdown took {took:.1f} s"


@pytest.mark.slow
def test_serve_stops_on_sigterm_with_exit_0_and_a_busy_port_is_one_line(tmp_path: Path) -> None:
    env = ENV | {
        "PATCHWARDEN_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'p.db'}",
        "PATCHWARDEN_CONFIG": str(REPO / "examples" / "patchwarden.yaml"),
        "PATCHWARDEN_AUDIT_KEY_FILE": str(tmp_path / "audit.key"),
        "SLACK_BOT_TOKEN": "xoxb-test",
        "SLACK_SIGNING_SECRET": "not-a-real-secret",
        "SLACK_API_URL": "http://127.0.0.1:9/api/",  # never called before the first request
    }
    subprocess.run([sys.executable, "-m", "bot", "db", "upgrade"], cwd=REPO, env=env, check=True, timeout=120)
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = subprocess.run(
            [sys.executable, "-m", "bot", "serve", "--port", str(port)],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert busy.returncode == 2 and f"Error: Port {port} is already in use" in busy.stderr, busy
    assert "Traceback" not in busy.stderr and "Unclosed" not in busy.stderr
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot", "serve", "--port", "0"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "listening on" not in proc.stdout.readline():
            pass
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        took = time.monotonic() - sent
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "SIGTERM: stopping" in err and "Traceback" not in err and "CancelledError" not in err, err
    assert took < 5.0, f"shutdown took {took:.1f} s"


async def test_serve_shutdown_records_a_deployment_cut_off_after_the_grace_period(harness_factory: Any) -> None:
    from conftest import Harness, eventually, make_config
    from deploy_support import approved_for_test, wait_state
    from test_deploy import deploy_cmd

    from bot.cli.serve import finish_deployments
    from storage import deployments
    from storage.models import ChangeState, DeploymentStatus

    very_slow = {"executor": "dry-run", "delay": "3s"}  # plan previews wait it out at teardown
    h: Harness = await harness_factory(make_config(systems={"web-shop": {"environments": {"test": very_slow}}}))
    card = await approved_for_test(h, change_class="emergency", details="outage")
    assert "Deploying CHG-1" in await deploy_cmd(h, "CHG-1 test --now outage")
    await wait_state(h, ChangeState.TEST_DEPLOYING)
    await finish_deployments(h.deps, 0.2)  # SIGTERM's grace period runs out while the step still runs
    async with h.deps.sessions.begin() as s:
        [dep] = await deployments.for_change(s, 1)
    assert dep.status is DeploymentStatus.FAILED and dep.finished_at is not None
    await wait_state(h, ChangeState.TEST_FAILED)
    await eventually(lambda: [m for m in h.thread(card) if "was interrupted" in m.text], what="thread note")
