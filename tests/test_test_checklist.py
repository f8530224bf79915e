"""Test scenarios and log review on the test result form (issue 12, item 3; BSI M 2.421)."""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner
from conftest import BASE_CONFIG, OWNER, Harness, eventually, make_config
from deploy_support import approved_for_test, book, in_thread, wait_state

from bot import jobs
from bot.__main__ import cli
from bot.errors import ConfigError
from bot.sandbox.fake_slack import Message
from storage import audit, reports
from storage.models import ChangeState

APP = """#!{python}
import sys
with open({log!r}, "a") as f:
    f.write("INFO started\\n")
    if sys.argv[1] == "apply":
        f.write("ERROR: disk full while migrating the cart table\\n")
print(sys.argv[1], "done")
print("WARN nothing to see" if sys.argv[1] == "apply" else "ok")
"""

SCENARIOS = [
    {"name": "login", "expected": "a customer can log in"},
    {"name": "checkout", "expected": "an order can be paid"},
]


def shell_env(tmp_path: Path) -> tuple[dict[str, Any], Path]:
    log = tmp_path / "app.log"
    script = tmp_path / "app.py"
    script.write_text(APP.format(python=sys.executable, log=str(log)))
    script.chmod(0o755)
    env = {
        "executor": "shell",
        "argv": [str(script), "apply"],
        "verify": {"argv": [str(script), "verify"]},
        "rollback": {"argv": [str(script), "rollback"]},
        "timeout": "1m",
    }
    return env, log


async def deployed_to_test(h: Harness) -> Message:
    card = await approved_for_test(h)
    await book(h, stage="test", start_in=timedelta(minutes=5))
    h.clock.advance(timedelta(minutes=6))
    await asyncio.gather(*await jobs.run_due_windows(h.deps))
    await wait_state(h, ChangeState.TEST_PASSED)
    return card


async def open_checklist(h: Harness, card: Message, button: str = "test_passed") -> dict[str, Any]:
    prompt = await in_thread(h, card, "test_problems")
    opened = len([p for p in h.fake.of("views.open") if p["view"]["callback_id"] == "test_checklist_form"])
    await h.slack.click(prompt, button, user=OWNER)
    return await h.opened_view("test_checklist_form", after=opened)


async def test_a_log_finding_from_the_real_test_run_requires_a_criticality(
    harness_factory: Any, tmp_path: Path
) -> None:
    env, log = shell_env(tmp_path)
    review = {"paths": [str(log)], "patterns": [r"^ERROR\b", r"Traceback"], "executor_output": True}
    system = {"environments": {"test": env}, "test_scenarios": SCENARIOS, "log_review": review}
    h: Harness = await harness_factory(make_config(systems={"web-shop": system}))
    card = await deployed_to_test(h)
    assert "ERROR: disk full" in log.read_text(), "the executor really ran the script"
    view = await open_checklist(h, card)
    shown = json.dumps(view["blocks"])
    assert "login" in shown and "a customer can log in" in shown
    assert "1 finding(s)" in shown and "disk full" in shown, "the finding from the named log is on the form"
    # every scenario as expected, but the log shows a malfunction: a criticality is required
    answers = {"scenario:0": "as_expected", "scenario:1": "as_expected"}
    status, body = await h.slack.submit(view, answers, user=OWNER)
    assert status == 200 and "criticality" in json.loads(body)["errors"]
    status, body = await h.slack.submit(view, {**answers, "criticality": "medium"}, user=OWNER)
    assert status == 200 and body in ("", "{}"), body
    await wait_state(h, ChangeState.TEST_FAILED)
    await in_thread(h, card, "test_risk_decision", what="risk decisions follow a finding")
    note = await in_thread(h, card, "Test report of CHG-1")
    assert "1 log finding" in note.text and "app.log:2" in note.text
    async with h.deps.sessions.begin() as s:
        (result,) = await reports.for_change(s, 1, kind="test_result")
        entries = [e for e in await audit.entries_since(s, None) if e.action in ("log_review", "test_result")]
    assert result.payload["result"] == "problems" and result.payload["criticality"] == "medium"
    assert [e.action for e in entries] == ["log_review", "test_result"]
    assert json.loads(entries[1].body)["details"]["scenarios"][0]["result"] == "as_expected"
    # the contract: changes show --json
    config_file = tmp_path / "patchwarden.yaml"
    data = yaml.safe_load(yaml.safe_dump(BASE_CONFIG))
    data["systems"]["web-shop"].update(system)
    config_file.write_text(yaml.safe_dump(data))
    cli_env = {"PATCHWARDEN_DATABASE_URL": str(h.deps.settings.database_url), "PATCHWARDEN_CONFIG": str(config_file)}
    shown_cli = await asyncio.to_thread(CliRunner().invoke, cli, ["changes", "show", "CHG-1", "--json"], env=cli_env)
    assert shown_cli.exit_code == 0, shown_cli.output
    out = json.loads(shown_cli.output)
    assert out["test_scenarios"] == [
        {"name": "login", "result": "as_expected", "note": ""},
        {"name": "checkout", "result": "as_expected", "note": ""},
    ]
    assert [(f["source"], f["line"]) for f in out["log_findings"]] == [(str(log), 2)]


async def test_a_deviating_scenario_needs_a_note_and_a_criticality(harness_factory: Any) -> None:
    h: Harness = await harness_factory(make_config(systems={"web-shop": {"test_scenarios": SCENARIOS}}))
    card = await deployed_to_test(h)
    view = await open_checklist(h, card, button="test_problems")
    _, body = await h.slack.submit(view, {"scenario:0": "as_expected"}, user=OWNER)
    assert "scenario:1" in json.loads(body)["errors"], "every scenario must be answered"
    _, body = await h.slack.submit(view, {"scenario:0": "as_expected", "scenario:1": "deviates"}, user=OWNER)
    errors = json.loads(body)["errors"]
    assert "note:1" in errors and "criticality" in errors
    values = {"scenario:0": "as_expected", "scenario:1": "deviates", "note:1": "payment takes 40 s"}
    _, body = await h.slack.submit(view, {**values, "criticality": "low"}, user=OWNER)
    assert body in ("", "{}"), body
    await wait_state(h, ChangeState.TEST_FAILED)
    async with h.deps.sessions.begin() as s:
        (result,) = await reports.for_change(s, 1, kind="test_result")
    assert result.payload["description"] == "checkout deviates: payment takes 40 s"
    assert result.payload["scenarios"][1] == {
        "system": "web-shop",
        "name": "checkout",
        "expected": "an order can be paid",
        "result": "deviates",
        "note": "payment takes 40 s",
    }


async def test_all_scenarios_as_expected_is_a_pass(harness_factory: Any) -> None:
    h: Harness = await harness_factory(make_config(systems={"web-shop": {"test_scenarios": SCENARIOS}}))
    card = await deployed_to_test(h)
    view = await open_checklist(h, card)
    assert "Log review" not in json.dumps(view["blocks"]), "no log review configured: none shown"
    await h.slack.submit(view, {"scenario:0": "as_expected", "scenario:1": "as_expected"}, user=OWNER)
    await in_thread(h, card, "test_acknowledge", what="acknowledge prompt after a pass")
    await eventually(lambda: any("passed its test" in t for t in h.fake.ephemerals(OWNER)), what="passed")


def test_log_review_and_scenarios_are_checked_by_check_config() -> None:
    for bad, needle in [
        ({"log_review": {"patterns": ["(unclosed"]}}, "not a valid regular expression"),
        ({"log_review": {"paths": ["relative.log"], "patterns": ["x"]}}, "must be absolute"),
        ({"log_review": {"patterns": ["x"], "executor_output": False}}, "nothing would be read"),
        ({"log_review": {"patterns": ["x"], "grep": 1}}, "unknown key"),
        ({"log_review": {"patterns": [r"^(\w+\s?)*$"]}}, "like (a+)+, is refused"),
        ({"log_review": {"patterns": ["E" * 201]}}, "1 to 200 characters"),
        ({"test_scenarios": [{"name": "a", "expected": "b"}, {"name": "a", "expected": "c"}]}, "unique"),
    ]:
        try:
            make_config(systems={"web-shop": bad})
        except ConfigError as exc:
            assert needle in str(exc), exc
        else:
            raise AssertionError(f"accepted {bad}")
