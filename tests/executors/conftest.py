"""Fixtures shared by the executor tests: requests, scripts and per-plugin options."""

from __future__ import annotations

import stat
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bot.executors.base import DeploymentRequest


@pytest.fixture
def request_() -> DeploymentRequest:
    """A valid deployment request."""
    return DeploymentRequest(run_id="run-1", change_key="CHG-12", stage="test", system="shop", targets=("web1",))


@pytest.fixture
def make_script(tmp_path: Path) -> Callable[[str, str], Path]:
    """Write an executable script into tmp_path and return its path."""

    def make(name: str, body: str) -> Path:
        path = tmp_path / name
        path.write_text(body)
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
        return path

    return make


@pytest.fixture
def playbook_files(tmp_path: Path) -> dict[str, Path]:
    """A tiny inventory (localhost, local connection, group ``shop``) and playbooks for the ansible tests."""
    inventory = tmp_path / "hosts.ini"
    inventory.write_text(f"[shop]\nlocalhost ansible_connection=local ansible_python_interpreter={sys.executable}\n")
    marker = tmp_path / "deployed.txt"
    ok = tmp_path / "patch.yml"
    ok.write_text(
        f"""
- hosts: all
  gather_facts: false
  tasks:
    - name: write the marker
      ansible.builtin.copy:
        dest: "{marker}"
        content: "{{{{ patchwarden_change }}}} {{{{ release }}}}\\n"
    - name: report a change
      ansible.builtin.command: "true"
      changed_when: true
"""
    )
    failing = tmp_path / "fail.yml"
    failing.write_text(
        """
- hosts: all
  gather_facts: false
  tasks:
    - name: fail on purpose
      ansible.builtin.fail:
        msg: broken on purpose
"""
    )
    slow = tmp_path / "slow.yml"
    pid = tmp_path / "sleep.pid"
    slow.write_text(
        f"""
- hosts: all
  gather_facts: false
  tasks:
    - name: hang
      ansible.builtin.shell: echo $$ > {pid}.tmp && mv {pid}.tmp {pid} && exec sleep 60
"""
    )
    return {"inventory": inventory, "ok": ok, "fail": failing, "slow": slow, "marker": marker, "pid": pid}


@pytest.fixture
def plugin_options(
    make_script: Callable[[str, str], Path], playbook_files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> dict[str, dict[str, Any]]:
    """Minimal valid options (no verify, no rollback) for every built-in plugin."""
    monkeypatch.setenv("PW_TEST_WEBHOOK_SECRET", "s3cret")
    script = make_script("deploy.sh", "#!/bin/sh\necho deployed\n")
    return {
        "dry-run": {"verify": False, "rollback": False},
        "shell": {"argv": [str(script), "test"], "timeout": "1m"},
        "webhook": {"url": "http://127.0.0.1:9/deploy", "secret_env": "PW_TEST_WEBHOOK_SECRET"},
        "ansible": {
            "playbook": str(playbook_files["ok"]),
            "inventory": str(playbook_files["inventory"]),
            "limit": "shop",
        },
    }
