"""A broken configuration, key or database gives one line naming the cause and exit code 2, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result
from conftest import BASE_CONFIG

from bot.__main__ import cli

ENV_BASE = {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s3cret"}


def run_cli(args: list[str], env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, args, env=env or {})


def _good_yaml() -> str:
    return yaml.safe_dump(BASE_CONFIG)


def _assert_one_line_exit_2(result: Result, needle: str) -> None:
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0], result.output


@pytest.mark.parametrize(
    ("name", "content", "needle"),
    [
        ("duplicate", _good_yaml() + "policy:\n  version: 2\n", "given twice"),
        ("negative-ttl", _good_yaml().replace("approval_ttl: 72h", "approval_ttl: -5"), "negative"),
        ("range", _good_yaml().replace("approval_ttl: 72h", "approval_ttl: 99999999999d"), "out of range"),
        ("deep", _good_yaml() + "extra: " + "[" * 5000 + "]" * 5000 + "\n", "nested"),
    ],
)
def test_check_config_refuses_hostile_files(tmp_path: Path, name: str, content: str, needle: str) -> None:
    path = tmp_path / f"{name}.yaml"
    path.write_text(content)
    _assert_one_line_exit_2(run_cli(["check-config", str(path)]), needle)


def test_duplicate_nested_key_is_refused(tmp_path: Path) -> None:
    text = _good_yaml().replace("self_approval: false", "self_approval: false\n  self_approval: true")
    path = tmp_path / "dup.yaml"
    path.write_text(text)
    _assert_one_line_exit_2(run_cli(["check-config", str(path)]), "'self_approval' is given twice")


def test_invalid_utf8_and_a_directory_are_one_line_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"slack: \xff\xfe\n")
    _assert_one_line_exit_2(run_cli(["check-config", str(bad)]), "not UTF-8")
    _assert_one_line_exit_2(run_cli(["check-config", str(tmp_path)]), "is a directory")


def test_serve_with_a_bad_audit_key_or_an_exposed_key_file(tmp_path: Path) -> None:
    config = tmp_path / "patchwarden.yaml"
    config.write_text(_good_yaml())
    env = {**ENV_BASE, "PATCHWARDEN_CONFIG": str(config), "PATCHWARDEN_DATABASE_URL": f"sqlite:///{tmp_path}/x.db"}
    result = run_cli(["serve", "--port", "0"], {**env, "PATCHWARDEN_AUDIT_KEY": "not-base64!"})
    _assert_one_line_exit_2(result, "PATCHWARDEN_AUDIT_KEY")
    key = tmp_path / "audit.key"
    key.write_text("AAAA\n")
    key.chmod(0o644)
    result = run_cli(["serve", "--port", "0"], {**env, "PATCHWARDEN_AUDIT_KEY_FILE": str(key)})
    _assert_one_line_exit_2(result, "readable by others")


def test_an_unreachable_database_is_one_line(tmp_path: Path) -> None:
    env = {"PATCHWARDEN_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"}
    _assert_one_line_exit_2(run_cli(["db", "upgrade"], env), "database does not answer")
    config = tmp_path / "patchwarden.yaml"
    config.write_text(_good_yaml())
    key = tmp_path / "audit.key"
    env = {**ENV_BASE, **env, "PATCHWARDEN_CONFIG": str(config), "PATCHWARDEN_AUDIT_KEY_FILE": str(key)}
    _assert_one_line_exit_2(run_cli(["serve", "--port", "0"], env), "database does not answer")
