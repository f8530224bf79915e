"""The house rules that a grep can check: who talks to the Slack Web API, who imports what, module sizes."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BOT = ROOT / "bot"
STORAGE = ROOT / "storage"
# The Web API calls that post, change or publish something in Slack (and the file uploads).
SLACK_WRITES = re.compile(
    r"\b(chat_postMessage|chat_update|chat_postEphemeral|chat_delete|views_publish|views_open|views_update"
    r"|files_upload(_v2)?|files_upload_external|files_completeUploadExternal)\s*\("
)
ALLOWED = ("slack", "sandbox")  # bot/slack/ talks to Slack; bot/sandbox/ is the fake Slack and its page
MAX_LINES = 400
LONG_FOR_NOW: set[str] = set()  # no exemptions: split a module before it grows past the limit


def _modules() -> list[Path]:
    return sorted(BOT.rglob("*.py"))


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def test_only_bot_slack_calls_the_slack_web_api() -> None:
    offenders = []
    for path in _modules():
        rel = path.relative_to(BOT)
        if rel.parts[0] in ALLOWED:
            continue
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if SLACK_WRITES.search(line):
                offenders.append(f"bot/{rel}:{number}: {line.strip()}")
    assert offenders == [], "Slack Web API calls outside bot/slack/:\n" + "\n".join(offenders)


def test_the_grep_sees_a_slack_call() -> None:
    """The pattern above is not vacuous: it finds the calls bot/slack/ makes."""
    hits = [p for p in (BOT / "slack").glob("*.py") if SLACK_WRITES.search(p.read_text())]
    assert {p.name for p in hits} >= {"notify.py", "thread.py", "home.py", "outbox_sender.py"}


def test_slack_modules_import_neither_commands_nor_workflows() -> None:
    offenders = {
        f"bot/slack/{path.name}: {name}"
        for path in sorted((BOT / "slack").glob("*.py"))
        for name in _imports(path)
        if name.startswith(("bot.commands", "bot.workflows"))
    }
    assert offenders == set()


def test_scheduler_and_jobs_do_not_import_listeners() -> None:
    for path in (BOT / "scheduler.py", *sorted((BOT / "jobs").glob("*.py"))):
        assert not {n for n in _imports(path) if n.startswith("bot.commands")}, path.name


def test_listeners_do_not_import_storage() -> None:
    offenders = {
        f"bot/commands/{path.name}: {name}"
        for path in sorted((BOT / "commands").glob("*.py"))
        for name in _imports(path)
        if name == "storage" or name.startswith("storage.")
    }
    assert offenders == set()


def test_no_module_is_over_400_lines() -> None:
    paths = [*_modules(), *(p for p in sorted(STORAGE.rglob("*.py")) if "migrations" not in p.parts)]
    sizes = {str(path.relative_to(ROOT)): len(path.read_text().splitlines()) for path in paths}
    assert {name: n for name, n in sizes.items() if n > MAX_LINES and name not in LONG_FOR_NOW} == {}
    assert max(sizes.values()) > 100, "the walk found the modules"


def test_import_contracts_hold(tmp_path: Path) -> None:
    """import-linter's contracts in pyproject.toml: layers only go down, listeners and plugins stay in their rooms."""
    from importlinter import cli

    assert cli.lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True, no_logo=True) == 0


def test_the_layer_check_sees_an_upward_import(tmp_path: Path) -> None:
    """The contract is not vacuous: a copy of the tree in which storage imports bot breaks it."""
    for name in ("bot", "storage"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "storage" / "upward.py").write_text("from bot import config\n")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    run = subprocess.run(
        [sys.executable, "-c", "import sys; from importlinter import cli; sys.exit(cli.lint_imports(no_cache=True))"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 1, run.stdout + run.stderr
    assert "storage.upward -> bot.config" in run.stdout
