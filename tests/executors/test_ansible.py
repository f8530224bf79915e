"""The ansible executor running a real ansible-playbook against localhost (connection=local)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from bot.errors import ConfigError
from bot.executors.ansible import AnsibleExecutor, host_results, playbook_binary
from bot.executors.base import DeploymentRequest, Step, TargetStatus

from .helpers import Recorder, process_gone, wait_for

pytestmark = pytest.mark.skipif(playbook_binary() is None, reason="ansible-core is not installed")


@pytest.fixture
def request_() -> DeploymentRequest:
    """The request's targets narrow the run (``limit`` ∩ targets): here the one host of the inventory."""
    return DeploymentRequest(run_id="run-1", change_key="CHG-12", stage="test", system="shop", targets=("localhost",))


async def test_targets_outside_the_limit_reach_no_host(playbook_files: dict[str, Path]) -> None:
    request = DeploymentRequest(run_id="run-2", change_key="CHG-12", stage="test", system="shop", targets=("web9",))
    executor = _executor(playbook_files)
    assert executor.limit_for(request) == "web9,&shop"
    result = await executor.apply(request)
    assert not result.ok and not (playbook_files["ok"].parent / "deployed.txt").exists()
    with pytest.raises(Exception, match="compound limit"):
        _executor(playbook_files, limit="shop:!db").limit_for(request)


def _executor(files: dict[str, Path], which: str = "ok", **extra: object) -> AnsibleExecutor:
    options = {
        "playbook": str(files[which]),
        "inventory": str(files["inventory"]),
        "limit": "shop",
        "extravars": {"release": "2.4.1"},
        **extra,
    }
    return AnsibleExecutor(options, key_path="systems.shop.environments.prod")


async def test_playbook_run_reports_per_host_results(
    playbook_files: dict[str, Path], request_: DeploymentRequest
) -> None:
    progress = Recorder()
    result = await _executor(playbook_files).apply(request_, progress=progress)
    assert result.ok, result.output
    assert [(t.target, t.status) for t in result.targets] == [("localhost", TargetStatus.CHANGED)]
    assert "changed=2" in result.targets[0].detail and "failed=0" in result.targets[0].detail
    assert playbook_files["marker"].read_text() == "CHG-12 2.4.1\n"  # config and request extravars arrived
    assert "report a change" in result.output
    assert "PLAY RECAP" in progress.text


async def test_a_failing_task_fails_the_host(playbook_files: dict[str, Path], request_: DeploymentRequest) -> None:
    executor = _executor(playbook_files, rollback={"playbook": str(playbook_files["fail"])})
    result = await executor.rollback(request_)
    assert not result.ok
    assert [(t.target, t.status) for t in result.targets] == [("localhost", TargetStatus.FAILED)]
    assert "broken on purpose" in result.output


async def test_limit_outside_the_inventory_runs_nothing(
    playbook_files: dict[str, Path], request_: DeploymentRequest
) -> None:
    result = await _executor(playbook_files, limit="billing").apply(request_)
    assert not result.ok
    assert result.targets == ()
    assert not playbook_files["marker"].exists()


async def test_timeout_stops_the_playbook(playbook_files: dict[str, Path], request_: DeploymentRequest) -> None:
    started = time.monotonic()
    result = await _executor(playbook_files, "slow", timeout=3).apply(request_)
    assert not result.ok and result.timed_out
    assert time.monotonic() - started < 10
    assert playbook_files["pid"].exists(), "the slow task did not start within the timeout"
    assert await wait_for(lambda: process_gone(int(playbook_files["pid"].read_text())), within=5)


async def test_cancellation_stops_the_playbook_and_reraises(
    playbook_files: dict[str, Path], request_: DeploymentRequest
) -> None:
    hanging = asyncio.Event()

    async def progress(text: str) -> None:
        if "hang" in text:
            hanging.set()

    task = asyncio.create_task(_executor(playbook_files, "slow").apply(request_, progress=progress))
    async with asyncio.timeout(15):
        await hanging.wait()
    started = time.monotonic()
    assert await wait_for(playbook_files["pid"].exists)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started < 5
    # The command ansible started on the host is gone too, not just ansible-playbook.
    assert await wait_for(lambda: process_gone(int(playbook_files["pid"].read_text())), within=5)


async def test_plan_describes_without_running(playbook_files: dict[str, Path], request_: DeploymentRequest) -> None:
    result = await _executor(playbook_files).plan(request_)
    assert result.ok and "shop" in result.summary
    assert not playbook_files["marker"].exists()
    assert _executor(playbook_files).has_step(Step.VERIFY) is False


async def test_check_plan_runs_in_check_mode(playbook_files: dict[str, Path], request_: DeploymentRequest) -> None:
    result = await _executor(playbook_files, check_plan=True).plan(request_)
    assert result.ok, result.output
    assert [t.target for t in result.targets] == ["localhost"]
    assert not playbook_files["marker"].exists()  # --check changed nothing


def test_host_results_map_the_recap() -> None:
    stats = {
        "ok": {"a": 2, "b": 1, "c": 1},
        "changed": {"b": 1},
        "failures": {"c": 1},
        "dark": {"d": 1},
        "skipped": {"e": 1},
    }
    assert [(t.target, t.status) for t in host_results(stats)] == [
        ("a", TargetStatus.OK),
        ("b", TargetStatus.CHANGED),
        ("c", TargetStatus.FAILED),
        ("d", TargetStatus.UNREACHABLE),
        ("e", TargetStatus.SKIPPED),
    ]
    assert host_results(None) == ()


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"limit": "-e@/etc/passwd"}, "limit"),
        ({"extravars": {"patchwarden_change": "CHG-1"}}, "extravars"),
        ({"extravars": {'a", "b': 1}}, "extravars"),
        ({"playbook": "/no/such/playbook.yml"}, "playbook"),
        ({"verify": {"playbook": "/no/such/check.yml"}}, "verify.playbook"),
    ],
)
def test_bad_options_name_the_field(playbook_files: dict[str, Path], extra: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError, match=rf"systems\.shop\.environments\.prod\.{field}"):
        _executor(playbook_files, **extra)


async def test_a_reboot_required_fact_and_the_credential_env_reach_the_result(
    playbook_files: dict[str, Path], tmp_path: Path
) -> None:
    seen = tmp_path / "seen.txt"
    play = tmp_path / "reboot.yml"
    play.write_text(
        f"""
- hosts: all
  gather_facts: false
  tasks:
    - name: the credential the run got
      ansible.builtin.shell: echo "$PATCHWARDEN_SSH_CERT {{{{ ansible_ssh_private_key_file }}}}" > {seen}
    - name: the patch needs a reboot
      ansible.builtin.set_fact:
        reboot_required: true
        cacheable: true
"""
    )
    cred = {"PATCHWARDEN_SSH_KEY": "/run/k/id_ed25519", "PATCHWARDEN_SSH_CERT": "/run/k/id_ed25519-cert.pub"}
    request = DeploymentRequest(
        run_id="run-3", change_key="CHG-12", stage="test", system="shop", targets=("localhost",), credential_env=cred
    )
    files = {**playbook_files, "reboot": play}
    result = await _executor(files, "reboot").apply(request)
    assert result.ok, result.output
    assert result.reboot_required and not result.rebooted
    assert seen.read_text().split() == ["/run/k/id_ed25519-cert.pub", "/run/k/id_ed25519"]
    plain = await _executor(playbook_files).apply(
        DeploymentRequest(run_id="run-4", change_key="CHG-12", stage="test", system="shop", targets=("localhost",))
    )
    assert plain.ok and not plain.reboot_required
