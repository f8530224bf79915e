"""Rings, pacing, hooks, reboots and just-in-time credentials through the real runner (a booked window, the
due-window sweep, the shell executor running a real script per target), seen in Slack and ``changes show``."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

from conftest import BASE_CONFIG, OTHER, OWNER, Harness, eventually, make_config
from deploy_support import approved_for_test, book, in_thread, state_of, wait_state

from bot import jobs
from bot.workflows import views
from storage import audit, changes, windows
from storage.models import ChangeState

SCRIPT = """#!/bin/sh
# $1: step, $2: marker folder. One target per call (PATCHWARDEN_TARGETS). Writes what it saw into the folder.
step="$1"; d="$2"; t="$PATCHWARDEN_TARGETS"
echo "$step" >> "$d/$t.log"
if [ "$step" = apply ]; then
  echo "start $(date +%s.%N)" >> "$d/$t.times"
  if [ -n "$PATCHWARDEN_SSH_CERT" ] && [ -f "$PATCHWARDEN_SSH_CERT" ] && [ -f "$PATCHWARDEN_SSH_KEY" ]; then
    echo "$PATCHWARDEN_SSH_CERT" > "$d/$t.cert"
  fi
  if [ -e "$d/hold-$t" ]; then
    touch "$d/started-$t"; i=0
    while [ ! -e "$d/go" ] && [ $i -lt 2000 ]; do sleep 0.01; i=$((i+1)); done
  fi
  if [ -e "$d/slow" ]; then sleep 0.3; fi
  if [ -e "$d/reboot-$t" ]; then echo required > "$PATCHWARDEN_REBOOT"; fi
  echo "end $(date +%s.%N)" >> "$d/$t.times"
fi
if [ "$step" = verify ] && [ -e "$d/fail-verify-$t" ]; then echo "service down on $t"; exit 1; fi
echo "$step ok on $t"
"""
HOSTS = [f"web-0{n}" for n in range(1, 7)]


def script(tmp_path: Path) -> tuple[Path, Path]:
    marks = tmp_path / "marks"
    marks.mkdir()
    path = tmp_path / "deploy.sh"
    path.write_text(SCRIPT)
    path.chmod(0o755)
    return path, marks


def environment(path: Path, marks: Path, **extra: Any) -> dict[str, Any]:
    return {
        "executor": "shell",
        "argv": [str(path), "apply", str(marks)],
        "verify": {"argv": [str(path), "verify", str(marks)]},
        "rollback": {"argv": [str(path), "rollback", str(marks)]},
        "timeout": "1m",
        **extra,
    }


THREE_RINGS = [
    {"name": "canary", "targets": ["web-01"], "gate": {"min_success": 1}},
    {"name": "half", "targets": ["web-02", "web-03"], "gate": {"min_success_rate": 1.0}},
    {"name": "rest", "targets": ["web-04", "web-05", "web-06"]},
]


def steps(marks: Path, host: str) -> list[str]:
    log = marks / f"{host}.log"
    return log.read_text().split() if log.exists() else []


def most_at_once(marks: Path) -> int:
    """The largest number of applies running at the same moment, from the scripts' own timestamps."""
    events: list[tuple[float, int]] = []
    for f in marks.glob("*.times"):
        for line in f.read_text().splitlines():
            kind, at = line.split()
            events.append((float(at), 1 if kind == "start" else -1))
    running = most = 0
    for _, delta in sorted(events, key=lambda e: (e[0], e[1])):
        running += delta
        most = max(most, running)
    return most


async def show(h: Harness) -> dict[str, Any]:
    async with h.deps.sessions.begin() as s:
        change = await changes.get(s, 1)
        assert change is not None
        return views.to_json(await views.snapshot(s, config=h.config, change=change))


async def logged(h: Harness, action: str) -> list[dict[str, Any]]:
    async with h.deps.sessions.begin() as s:
        entries = await audit.entries_since(s, None)
    return [json.loads(e.body)["details"] for e in entries if e.action == action]


async def until_logged(h: Harness, action: str, count: int, within: float = 10.0) -> None:
    """Poll the control log until ``action`` was logged ``count`` times."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while len(await logged(h, action)) < count:
        if loop.time() > deadline:
            raise AssertionError(f"{action} logged fewer than {count} times")
        await asyncio.sleep(0.02)


async def start_window(h: Harness, length: timedelta = timedelta(hours=1)) -> list[asyncio.Task[Any]]:
    await approved_for_test(h)
    await book(h, stage="test", start_in=timedelta(minutes=5), length=length)
    h.clock.advance(timedelta(minutes=6))
    return list(await jobs.run_due_windows(h.deps))


def ca_key(tmp_path: Path) -> Path:
    path = tmp_path / "ca"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path


async def test_three_rings_a_gate_holds_one_fails_the_owner_is_asked_and_the_done_rings_roll_back(
    harness_factory: Any, tmp_path: Path
) -> None:
    path, marks = script(tmp_path)
    (marks / "fail-verify-web-03").touch()
    (marks / "reboot-web-02").touch()
    env = environment(
        path, marks, rings=THREE_RINGS, max_parallel=2, reboot_window="FREQ=WEEKLY;BYDAY=SU;BYHOUR=3;BYMINUTE=0",
        credentials={"provider": "ssh-cert", "ca_key_file": str(ca_key(tmp_path)), "login": "deploy"},
    )  # fmt: skip
    h: Harness = await harness_factory(make_config(systems={"web-shop": {"environments": {"test": env}}}))
    await asyncio.gather(*await start_window(h))
    card = h.cards()[0]
    prompt = await in_thread(h, card, "deploy_rollback", what="Roll back / Keep buttons")
    assert "half" in prompt.text or "half" in json.dumps(prompt.blocks)
    # the canary's gate held, the half ring's failed (web-03's verify), the rest never ran
    assert steps(marks, "web-01") == ["apply", "verify"]
    assert steps(marks, "web-02") == steps(marks, "web-03") == ["apply", "verify"]
    assert all(steps(marks, h_) == [] for h_ in ("web-04", "web-05", "web-06"))
    texts = [m.text for m in h.thread(card)]
    assert any(":white_check_mark: Ring *canary* succeeded (1/1 succeeded)" in t for t in texts)
    assert any(":x: Ring *half* failed (1/2 succeeded)" in t for t in texts)
    assert not any("Ring *rest*" in t for t in texts)
    assert any("`web-shop` needs a reboot: scheduled for" in t for t in texts)
    assert "ring *canary* succeeded" in json.dumps(h.latest(card).blocks)  # the card shows ring progress
    assert await state_of(h) is ChangeState.TEST_VERIFYING
    # the credential: there during the run, gone after, in the control log without its secret
    cert = (marks / "web-01.cert").read_text().strip()
    assert cert.endswith("id_ed25519-cert.pub")
    assert not await asyncio.to_thread(os.path.exists, cert) and not await asyncio.to_thread(
        os.path.exists, Path(cert).parent
    )
    [issued] = await logged(h, "credential_issued")
    [revoked] = await logged(h, "credential_revoked")
    async with h.deps.sessions.begin() as s:
        [window] = await windows.for_change(s, 1)
    assert issued["provider"] == "ssh-cert" and issued["key_id"].startswith("patchwarden:CHG-1:CHG-1-test-web-shop")
    assert issued["valid_before"] == window.end.isoformat() and revoked["revoked"] is True
    assert revoked["serial"] == issued["serial"]
    async with h.deps.sessions.begin() as s:
        assert not any("PRIVATE KEY" in e.body for e in await audit.entries_since(s, None))
    # changes show --json: rings, reboot, credential per deployment
    [dep] = (await show(h))["deployments"]
    assert [(r["name"], r["status"]) for r in dep["rings"]] == [
        ("canary", "succeeded"), ("half", "failed"), ("rest", "pending"),
    ]  # fmt: skip
    assert (
        dep["rings"][1]["targets"] == ["web-02", "web-03"]
        and dep["rings"][1]["started"]
        and dep["rings"][1]["finished"]
    )
    assert dep["rings"][2]["started"] is None
    assert dep["reboot"]["required"] is True and dep["reboot"]["done"] is False and dep["reboot"]["scheduled"]
    assert dep["credential"] == {k: issued[k] for k in ("provider", "key_id", "serial", "valid_before")}
    # the owner rolls back: the rings that ran, not the one that never started; a new credential for it
    await h.slack.click(prompt, "deploy_rollback", user=OWNER)
    await wait_state(h, ChangeState.TEST_FAILED)
    assert [steps(marks, x)[-1] for x in ("web-01", "web-02", "web-03")] == ["rollback"] * 3
    assert all(steps(marks, x) == [] for x in ("web-04", "web-05", "web-06"))
    assert len(await logged(h, "credential_issued")) == 2
    await until_logged(h, "credential_revoked", 2)  # revoked once the rollback's last step is over


async def test_the_cutoff_refuses_a_ring_that_would_start_too_late(harness_factory: Any, tmp_path: Path) -> None:
    path, marks = script(tmp_path)
    (marks / "hold-web-01").touch()
    env = environment(path, marks, rings=THREE_RINGS, cutoff="30m")
    h: Harness = await harness_factory(make_config(systems={"web-shop": {"environments": {"test": env}}}))
    tasks = await start_window(h)
    await eventually(lambda: (marks / "started-web-01").exists(), what="the canary's apply")
    h.clock.advance(timedelta(minutes=40))  # the canary took long: 14 minutes of the window are left
    (marks / "go").touch()
    await asyncio.gather(*tasks)
    card = h.cards()[0]
    refused = await in_thread(h, card, "Ring *half* refused")
    assert "nothing starts in its last 30m (cutoff)" in refused.text
    assert steps(marks, "web-01") == ["apply", "verify"]
    assert all(steps(marks, x) == [] for x in HOSTS[1:])
    await in_thread(h, card, "deploy_rollback", what="the owner is asked")
    [dep] = (await show(h))["deployments"]
    assert [r["status"] for r in dep["rings"]] == ["succeeded", "refused", "pending"]


async def test_max_parallel_is_respected_across_one_ring_of_targets(harness_factory: Any, tmp_path: Path) -> None:
    path, marks = script(tmp_path)
    (marks / "slow").touch()
    env = environment(path, marks, targets=HOSTS, max_parallel=2)  # no rings: the targets are one ring
    h: Harness = await harness_factory(make_config(systems={"web-shop": {"environments": {"test": env}}}))
    await asyncio.gather(*await start_window(h))
    await wait_state(h, ChangeState.TEST_PASSED)
    await h.deps.deployments.wait()  # the run's last steps (release, thread) are over
    assert all(steps(marks, x) == ["apply", "verify"] for x in HOSTS)
    assert most_at_once(marks) == 2  # limited to two, and really two at once
    [dep] = (await show(h))["deployments"]
    assert [(r["name"], r["status"], len(r["targets"])) for r in dep["rings"]] == [("all", "succeeded", 6)]
    assert dep["reboot"] == {"required": False, "done": False, "scheduled": None} and dep["credential"] is None


async def test_a_failing_pre_hook_stops_before_anything_changed(harness_factory: Any, tmp_path: Path) -> None:
    path, marks = script(tmp_path)
    hook = tmp_path / "pre.sh"
    hook.write_text(
        f'#!/bin/sh\necho "$PATCHWARDEN_CHANGE $PATCHWARDEN_TARGETS" > {marks}/pre.seen\necho snapshot failed\nexit 4\n'
    )
    hook.chmod(0o755)
    env = environment(path, marks, rings=THREE_RINGS, pre=[str(hook)], post=[str(hook)])
    h: Harness = await harness_factory(make_config(systems={"web-shop": {"environments": {"test": env}}}))
    await asyncio.gather(*await start_window(h))
    card = h.cards()[0]
    note = await in_thread(h, card, "Nothing was deployed")
    assert "pre hook of web-shop failed (snapshot failed)" in note.text
    assert (marks / "pre.seen").read_text().split() == ["CHG-1", *HOSTS]
    assert all(steps(marks, x) == [] for x in HOSTS)
    assert await state_of(h) in (ChangeState.APPROVED_FOR_TEST, ChangeState.TEST_SCHEDULED)
    assert [d["reason"] for d in await logged(h, "deployment_refused_hook")] == [
        "the pre hook of web-shop failed (snapshot failed)"
    ]


def test_check_config_validates_reboot_window_and_the_credential_provider(tmp_path: Path) -> None:
    from test_cli_core import run_cli, write_config

    def check(**prod: Any) -> str:
        data = json.loads(json.dumps(BASE_CONFIG))
        data["systems"]["web-shop"]["environments"]["prod"] = {"executor": "dry-run", **prod}
        result = run_cli(["check-config", str(write_config(tmp_path, data))])
        return f"{result.exit_code} {result.output}"

    assert check(reboot_window="FREQ=WEEKLY;BYDAY=SU;BYHOUR=3").startswith("0 OK")
    bad = check(reboot_window="FREQ=SOMETIMES")
    assert bad.startswith("2") and "systems.web-shop.environments.prod.reboot_window" in bad
    unknown = check(credentials={"provider": "vault-magic"})
    assert unknown.startswith("2") and "environments.prod.credentials.provider: unknown credential provider" in unknown
    missing_ca = check(credentials={"provider": "ssh-cert", "ca_key_file": str(tmp_path / "nope"), "login": "deploy"})
    assert missing_ca.startswith("2") and "nope" in missing_ca
    typo = check(reboot_windw="FREQ=DAILY")
    assert typo.startswith("2") and "reboot_windw: unknown key" in typo


async def test_the_owner_retries_the_rings_that_did_not_hold(harness_factory: Any, tmp_path: Path) -> None:
    path, marks = script(tmp_path)
    (marks / "fail-verify-web-03").touch()
    env = environment(path, marks, rings=THREE_RINGS)
    h: Harness = await harness_factory(make_config(systems={"web-shop": {"environments": {"test": env}}}))
    await asyncio.gather(*await start_window(h))
    card = h.cards()[0]
    prompt = await in_thread(h, card, "deploy_retry", what="the Retry button")
    await h.slack.click(prompt, "deploy_retry", user=OTHER)  # only the owner decides
    await eventually(lambda: any("Only the owner" in t for t in h.fake.ephemerals(OTHER)), what="refusal")
    (marks / "fail-verify-web-03").unlink()  # someone fixed web-03
    await h.slack.click(prompt, "deploy_retry", user=OWNER)
    await wait_state(h, ChangeState.TEST_PASSED)
    await h.deps.deployments.wait()  # the run's last steps (release, thread) are over
    assert steps(marks, "web-01") == ["apply", "verify"]  # the canary held: not deployed again
    assert steps(marks, "web-03") == ["apply", "verify", "apply", "verify"]
    assert all(steps(marks, x) == ["apply", "verify"] for x in ("web-04", "web-05", "web-06"))
    [dep] = (await show(h))["deployments"]
    assert [(r["name"], r["status"]) for r in dep["rings"]] == [
        ("canary", "succeeded"), ("half", "succeeded"), ("rest", "succeeded"),
    ]  # fmt: skip
    await h.slack.click(prompt, "deploy_retry", user=OWNER)  # the old button: nothing to retry any more
    await eventually(lambda: any("already decided" in t for t in h.fake.ephemerals(OWNER)), what="stale click")
