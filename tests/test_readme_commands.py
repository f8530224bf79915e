"""The README's two set-up commands, verbatim, from a fresh clone (issue 13, "Must show").

Slow (a fresh venv and two installs): runs when ``PATCHWARDEN_TEST_FRESH_CLONE=1``, which ``.ci/run`` sets.
The consistency checks (exactly two commands, ``.ci/run`` runs the second verbatim) always run.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FRESH = os.environ.get("PATCHWARDEN_TEST_FRESH_CLONE") == "1"


def readme_commands() -> list[str]:
    """The shell blocks of the README's "Two commands on a fresh machine" section."""
    text = (REPO / "README.md").read_text()
    section = text.split("## Two commands on a fresh machine", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```sh\n(.*?)```", section, flags=re.S)]


def test_readme_has_exactly_two_commands_each_with_its_own_venv_and_ci_runs_the_second() -> None:
    install_and_run, test = readme_commands()
    for command in (install_and_run, test):
        assert "\n" not in command and command.startswith("python3 -m venv .venv && .venv/bin/pip install")
    assert install_and_run.endswith(".venv/bin/patchwarden serve") and test.endswith(".venv/bin/pytest")
    ci = (REPO / ".ci" / "run").read_text()
    assert f'TEST_COMMAND="{test}"' in ci


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("fresh") / "patchwarden"
    subprocess.run(["git", "clone", "-q", str(REPO), str(target)], check=True, timeout=120)
    return target


def clean_env() -> dict[str, str]:
    # PYTEST_: the outer run's xdist worker variables and options are not the fresh clone's
    drop = ("SLACK_", "VIRTUAL_ENV", "PATCHWARDEN_DATABASE_URL", "PATCHWARDEN_CONFIG", "PYTEST_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    path = [p for p in env.get("PATH", "").split(os.pathsep) if ".venv" not in p]  # not our venv's python
    return env | {"PATH": os.pathsep.join(path), "PYTHONUNBUFFERED": "1", "PORT": "0"}


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.skipif(not FRESH, reason="set PATCHWARDEN_TEST_FRESH_CLONE=1 (.ci/run does)")
def test_readme_commands_work_verbatim_from_a_fresh_clone(clone: Path) -> None:
    install_and_run, test = readme_commands()
    proc = subprocess.Popen(
        ["bash", "-c", install_and_run],
        cwd=clone,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # Ctrl-C goes to the whole process group, as in a terminal
    )
    assert proc.stdout is not None
    deadline, lines = time.monotonic() + 600, []
    try:
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                break
            lines.append(line)
            if "open http://127.0.0.1:" in line:
                break
        assert any("open http://127.0.0.1:" in line for line in lines), (lines, proc.stderr.read())
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    collected = subprocess.run(
        ["bash", "-c", test],
        cwd=clone,
        env=clean_env() | {"PYTEST_ADDOPTS": "--collect-only -q"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert collected.returncode == 0, collected.stdout[-3000:] + collected.stderr[-3000:]
    assert re.search(r"(\d{3,}) tests collected", collected.stdout), collected.stdout[-2000:]
