"""The shell executor against real scripts: exit codes, timeouts, cancellation, environment, argv."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from bot.errors import ConfigError
from bot.executors import shell
from bot.executors.base import ArtifactInfo, DeploymentRequest, Step, TargetStatus
from bot.executors.shell import ShellExecutor

from .helpers import Recorder, process_gone, wait_for

MakeScript = Callable[[str, str], Path]

# Records its argv and environment as JSON, so tests see exactly what the process received.
# The real interpreter, not `env python3`: a pyenv shim on PATH would add its own variables to what is recorded.
RECORDER = (
    f"#!{sys.executable}\n"
    + """import json, os, sys
listed = json.load(open(os.environ["PATCHWARDEN_ARTIFACTS"]))
copy = open(listed[0]["path"]).read() if listed else None
writable = bool(os.stat(listed[0]["path"]).st_mode & 0o222) if listed else None
with open(os.path.join(os.path.dirname(sys.argv[0]), "seen.json"), "w") as fh:
    json.dump({"argv": sys.argv, "env": dict(os.environ), "cwd": os.getcwd(), "artifacts": listed,
               "copy": copy, "writable": writable}, fh)
print("hello from the script")
print("to stderr", file=sys.stderr)
"""
)

# Starts a grandchild that would outlive a naive kill, records both pids, then hangs.
HANGING = """#!/bin/sh
sleep 300 &
echo "$$ $!" > "$(dirname "$0")/pids"
echo started
wait
"""


@pytest.fixture(autouse=True)
def _fast_kill(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shell, "KILL_GRACE", 0.5)


async def test_success_streams_and_captures_output(make_script: MakeScript, request_: DeploymentRequest) -> None:
    script = make_script("deploy.py", RECORDER)
    progress = Recorder()
    result = await ShellExecutor({"argv": [str(script), "test"]}).apply(request_, progress=progress)
    assert result.ok, result.output
    assert result.step is Step.APPLY
    assert "exited with code 0" in result.summary
    assert "hello from the script" in result.output and "to stderr" in result.output
    assert "hello from the script" in progress.text
    assert [(t.target, t.status) for t in result.targets] == [("web1", TargetStatus.CHANGED)]


async def test_a_non_zero_exit_code_fails(make_script: MakeScript, request_: DeploymentRequest) -> None:
    script = make_script("deploy.sh", "#!/bin/sh\necho 'disk full' >&2\nexit 3\n")
    result = await ShellExecutor({"argv": [str(script)]}).apply(request_)
    assert not result.ok
    assert "exited with code 3" in result.summary
    assert "disk full" in result.output
    assert result.targets[0].status is TargetStatus.FAILED


async def test_a_missing_program_fails_cleanly(tmp_path: Path, request_: DeploymentRequest) -> None:
    result = await ShellExecutor({"argv": [str(tmp_path / "nope.sh")]}).apply(request_)
    assert not result.ok
    assert "cannot start" in result.summary


async def test_timeout_kills_the_whole_process_group(make_script: MakeScript, request_: DeploymentRequest) -> None:
    script = make_script("hang.sh", HANGING)
    started = time.monotonic()
    result = await ShellExecutor({"argv": [str(script)], "timeout": 1}).apply(request_)
    assert time.monotonic() - started < 1 + shell.KILL_GRACE + 3
    assert not result.ok and result.timed_out
    assert "started" in result.output  # partial output survives the timeout
    leader, grandchild = (int(p) for p in (script.parent / "pids").read_text().split())
    assert await wait_for(lambda: process_gone(leader) and process_gone(grandchild), within=5)


async def test_cancellation_kills_the_process_group_and_reraises(
    make_script: MakeScript, request_: DeploymentRequest
) -> None:
    script = make_script("hang.sh", HANGING)
    pids = script.parent / "pids"
    task = asyncio.create_task(ShellExecutor({"argv": [str(script)]}).apply(request_))
    assert await wait_for(lambda: pids.exists() and len(pids.read_text().split()) == 2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    leader, grandchild = (int(p) for p in pids.read_text().split())
    assert await wait_for(lambda: process_gone(leader) and process_gone(grandchild), within=5)


async def test_only_allow_listed_environment_reaches_the_child(
    make_script: MakeScript, request_: DeploymentRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-very-secret")
    monkeypatch.setenv("DEPLOY_REGION", "eu-1")
    script = make_script("deploy.py", RECORDER)
    artifact = tmp_path / "fix.deb"
    artifact.write_bytes(b"the verified patch")
    digest = hashlib.sha256(b"the verified patch").hexdigest()
    info = ArtifactInfo(name="fix.deb", path=artifact, sha256=digest, signer="vendor", size=18)
    request = request_.model_copy(update={"artifacts": (info,)})
    executor = ShellExecutor({"argv": [str(script)], "env_allow": ["PATH", "DEPLOY_REGION"], "cwd": str(tmp_path)})
    result = await executor.apply(request)
    assert result.ok, result.output
    seen = json.loads((tmp_path / "seen.json").read_text())
    env = seen["env"]
    assert "SLACK_BOT_TOKEN" not in env
    assert "xoxb-very-secret" not in json.dumps(seen)
    assert env["DEPLOY_REGION"] == "eu-1"
    assert env["PATCHWARDEN_CHANGE"] == "CHG-12"
    assert env["PATCHWARDEN_STAGE"] == "test"
    assert env["PATCHWARDEN_SYSTEM"] == "shop"
    assert env["PATCHWARDEN_RUN_ID"] == "run-1"
    assert env["PATCHWARDEN_TARGETS"] == "web1"
    listed = seen["artifacts"]
    assert [(a["name"], a["sha256"], a["signer"]) for a in listed] == [("fix.deb", digest, "vendor")]
    assert Path(listed[0]["path"]).parent == Path(env["PATCHWARDEN_ARTIFACT_DIR"]) != artifact.parent
    assert seen["copy"] == "the verified patch" and seen["writable"] is False
    assert not await asyncio.to_thread(os.path.exists, env["PATCHWARDEN_ARTIFACT_DIR"]), "copies removed afterwards"
    assert set(env) - {"PATH", "DEPLOY_REGION", "LC_CTYPE"} == {
        "PATCHWARDEN_CHANGE",
        "PATCHWARDEN_STAGE",
        "PATCHWARDEN_SYSTEM",
        "PATCHWARDEN_RUN_ID",
        "PATCHWARDEN_TARGETS",
        "PATCHWARDEN_ARTIFACTS",
        "PATCHWARDEN_ARTIFACT_DIR",
        "PATCHWARDEN_INVENTORY_OUT",
        "PATCHWARDEN_REBOOT",
    }
    assert Path(seen["cwd"]) == tmp_path
    assert env["PATH"] == os.environ["PATH"]


async def test_argv_is_used_verbatim_and_never_through_a_shell(
    make_script: MakeScript, request_: DeploymentRequest, tmp_path: Path
) -> None:
    pwned = tmp_path / "pwned"
    hostile = f"$(touch {pwned}); rm -rf x"
    script = make_script("deploy.py", RECORDER)
    # Even a hostile-looking configured argument stays one inert argv element: no shell ever parses it.
    argv = [str(script), "test", hostile, "`id`"]
    result = await ShellExecutor({"argv": argv}).apply(request_)
    assert result.ok, result.output
    seen = json.loads((tmp_path / "seen.json").read_text())
    assert seen["argv"] == argv
    assert not pwned.exists()
    # And text typed by a person (a change title) has no way in: the request refuses it in every field.
    with pytest.raises(ValueError):
        request_.model_copy(update={}).model_validate({**request_.model_dump(), "change_key": hostile})
    assert hostile not in json.dumps(seen["env"])


async def test_verify_and_rollback_run_their_own_commands(make_script: MakeScript, request_: DeploymentRequest) -> None:
    check = make_script("check.sh", '#!/bin/sh\necho checked "$1"\n')
    undo = make_script("rollback.sh", "#!/bin/sh\necho undone\nexit 1\n")
    executor = ShellExecutor(
        {
            "argv": [str(check)],
            "verify": {"argv": [str(check), "test"]},
            "rollback": {"argv": [str(undo)], "timeout": "30s"},
        }
    )
    verified = await executor.verify(request_)
    assert verified.ok and "checked test" in verified.output
    assert verified.targets[0].status is TargetStatus.OK
    rolled = await executor.rollback(request_)
    assert not rolled.ok and "undone" in rolled.output
    assert executor.timeout_for(Step.ROLLBACK).total_seconds() == 30
    assert executor.timeout_for(Step.APPLY).total_seconds() == 15 * 60


async def test_plan_shows_the_command_without_running_it(
    make_script: MakeScript, request_: DeploymentRequest, tmp_path: Path
) -> None:
    script = make_script("deploy.py", RECORDER)
    result = await ShellExecutor({"argv": [str(script), "prod env"]}).plan(request_)
    assert result.ok
    assert result.summary == f"would run: {script} 'prod env'"
    assert not (tmp_path / "seen.json").exists()


async def test_plan_command_runs_when_configured(make_script: MakeScript, request_: DeploymentRequest) -> None:
    script = make_script("deploy.sh", '#!/bin/sh\necho "would patch $PATCHWARDEN_SYSTEM"\n')
    result = await ShellExecutor({"argv": [str(script)], "plan": {"argv": [str(script), "--check"]}}).plan(request_)
    assert result.ok and "would patch shop" in result.output


async def test_output_of_a_background_child_does_not_block(
    make_script: MakeScript, request_: DeploymentRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shell, "DRAIN_GRACE", 0.2)
    script = make_script("daemon.sh", "#!/bin/sh\nsleep 5 &\necho done\n")
    started = time.monotonic()
    result = await ShellExecutor({"argv": [str(script)]}).apply(request_)
    assert time.monotonic() - started < 3
    assert result.ok and "done" in result.output


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"argv": []}, "argv"),
        ({"argv": [""]}, "argv"),
        ({"argv": ["./x"], "env_allow": ["PATCHWARDEN_CHANGE"]}, "env_allow"),
        ({"argv": ["./x"], "env_allow": ["BAD NAME"]}, "env_allow"),
        ({"argv": "./deploy.sh test"}, "argv"),
        ({"argv": ["./x"], "cwd": "/no/such/dir"}, "cwd"),
        ({"argv": ["./x"], "verify": {"argv": ["./c"], "shell": True}}, "verify.shell"),
    ],
)
def test_bad_options_name_the_field(options: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError, match=rf"systems\.shop\.environments\.test\.{field}"):
        ShellExecutor(options, key_path="systems.shop.environments.test")
