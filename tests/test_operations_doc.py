"""The operations runbook names only commands that exist: each `patchwarden ...` in it answers --help."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner
from conftest import REPO

from bot.__main__ import cli

DOC = REPO / "docs" / "operations.md"
WORD = re.compile(r"^[a-z][a-z-]*$")


def commands_named() -> list[tuple[str, ...]]:
    """Every `patchwarden a b ...` in the runbook, cut at the first option or argument."""
    found: set[tuple[str, ...]] = set()
    for match in re.finditer(r"patchwarden((?: [a-z][a-z-]*)+)", DOC.read_text(encoding="utf-8")):
        words = tuple(w for w in match.group(1).split() if WORD.match(w))
        if words:
            found.add(words)
    return sorted(found)


def test_the_runbook_covers_what_the_issue_asks() -> None:
    text = DOC.read_text(encoding="utf-8").lower()
    for topic in (
        "install",
        "upgrade",
        "backup and restore",
        "key rotation",
        "slack is down",
        "bot was down",
        "database is lost",
        "published heads",
        "sqlite",
        "postgresql",
        "audit key",
    ):
        assert topic in text, topic
    assert len(commands_named()) >= 10


@pytest.mark.parametrize("words", commands_named(), ids=" ".join)
def test_every_named_command_exists(words: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli, [*_command_path(words), "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage: " in result.output


def _command_path(words: tuple[str, ...]) -> list[str]:
    """The longest prefix of ``words`` that is a command (the rest are arguments, like a file name)."""
    path: list[str] = []
    group = cli
    for word in words:
        sub = getattr(group, "commands", {}).get(word)
        if sub is None:
            if not path:
                pytest.fail(f"`patchwarden {' '.join(words)}`: no command {word!r}")
            break
        path.append(word)
        group = sub
    return path
