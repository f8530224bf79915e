"""The command line and startup: config validation, secrets, migrations, health, changes JSON, usage errors."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result
from conftest import BASE_CONFIG, OWNER, REQ, Harness, eventually

from bot.__main__ import cli
from bot.errors import IllegalTransitionError
from bot.workflows import lifecycle
from storage import changes
from storage.models import ChangeState


def run_cli(args: list[str], env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, args, env=env or {})


def write_config(tmp_path: Path, data: dict[str, object]) -> Path:
    path = tmp_path / "patchwarden.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_check_config_accepts_the_issue_example_and_the_documented_example(tmp_path: Path) -> None:
    result = run_cli(["check-config", str(write_config(tmp_path, BASE_CONFIG))])
    assert result.exit_code == 0, result.output
    assert "OK: 1 system(s)" in result.output
    example = Path(__file__).resolve().parents[1] / "examples" / "patchwarden.yaml"
    assert run_cli(["check-config", str(example)]).exit_code == 0


def test_check_config_names_each_bad_key_path(tmp_path: Path) -> None:
    data = yaml.safe_load(yaml.safe_dump(BASE_CONFIG))
    data["policy"]["aproval_ttl"] = "72h"  # typo: must not silently do nothing
    data["systems"]["web-shop"]["timezone"] = "Mars/Olympus"
    data["policy"]["stages"]["prod"][1]["group"] = "secops"
    result = run_cli(["check-config", str(write_config(tmp_path, data))])
    assert result.exit_code == 2  # a set-up error (issue 14)
    assert "policy.aproval_ttl: unknown key" in result.output
    assert "systems.web-shop.timezone" in result.output and "Mars/Olympus" in result.output
    data["policy"].pop("aproval_ttl")
    data["systems"]["web-shop"]["timezone"] = "UTC"
    result = run_cli(["check-config", str(write_config(tmp_path, data))])
    assert "policy.stages.prod.1.group: group 'secops' is not defined" in result.output


def test_check_config_refuses_unknown_executor(tmp_path: Path) -> None:
    data = yaml.safe_load(yaml.safe_dump(BASE_CONFIG))
    data["systems"]["web-shop"]["environments"]["prod"] = {"executor": "teleport-magic"}
    result = run_cli(["check-config", str(write_config(tmp_path, data))])
    assert result.exit_code == 2  # a set-up error (issue 14)
    assert "systems.web-shop.environments.prod" in result.output and "teleport-magic" in result.output


@pytest.mark.parametrize("missing", ["SLACK_SIGNING_SECRET", "SLACK_BOT_TOKEN"])
def test_serve_names_a_missing_or_empty_secret(tmp_path: Path, missing: str) -> None:
    env = {
        "SLACK_BOT_TOKEN": "xoxb-1",
        "SLACK_SIGNING_SECRET": "s3cret",
        "PATCHWARDEN_CONFIG": str(write_config(tmp_path, BASE_CONFIG)),
    }
    env[missing] = "  "
    result = run_cli(["serve", "--port", "0"], env)
    assert result.exit_code == 2  # a set-up error (issue 14)
    assert missing in result.output and "s3cret" not in result.output and "xoxb-1" not in result.output


def test_serve_refuses_a_database_not_at_head(tmp_path: Path) -> None:
    env = {
        "SLACK_BOT_TOKEN": "xoxb-1",
        "SLACK_SIGNING_SECRET": "s3cret",
        "PATCHWARDEN_CONFIG": str(write_config(tmp_path, BASE_CONFIG)),
        "PATCHWARDEN_DATABASE_URL": f"sqlite:///{tmp_path}/empty.db",
        "PATCHWARDEN_AUDIT_KEY_FILE": str(tmp_path / "audit.key"),
    }
    result = run_cli(["serve", "--port", "0"], env)
    assert result.exit_code == 2  # a set-up error (issue 14)
    assert "patchwarden db upgrade" in result.output and "empty database" in result.output


def test_db_upgrade_from_nothing_then_current_is_head(tmp_path: Path) -> None:
    env = {"PATCHWARDEN_DATABASE_URL": f"sqlite:///{tmp_path}/new.db"}
    assert run_cli(["db", "upgrade"], env).exit_code == 0
    out = run_cli(["db", "current"], env).output
    current, head = out.split("current:")[1].split("head:")
    assert current.strip() == head.strip() != "None"


async def test_healthz_reports_database(harness: Harness) -> None:
    url = harness.endpoint.replace("/slack/events", "/healthz")
    async with harness.http.get(url) as resp:
        assert resp.status == 200 and (await resp.json())["database"] == "ok"
    original = harness.deps.engine  # left open: background jobs may hold one of its connections right now
    broken_url = (
        original.url.set(database="/nonexistent/dir/x.db")
        if original.url.get_backend_name() == "sqlite"
        else original.url.set(port=1)
    )
    from storage import db

    broken = db.create_engine(broken_url.render_as_string(hide_password=False))
    object.__setattr__(harness.deps, "engine", broken)
    try:
        async with harness.http.get(url) as resp:
            assert resp.status == 503 and (await resp.json())["database"] == "unreachable"
    finally:
        # put the original back, so the harness's teardown closes its connections before the loop closes
        object.__setattr__(harness.deps, "engine", original)
        await broken.dispose()


async def test_changes_show_json_and_unknown_id(harness: Harness, tmp_path: Path) -> None:
    card = await harness.request_change()
    await harness.slack.approve(card, user=OWNER)
    await eventually(lambda: "Approved for test" in str(harness.latest(card).blocks))
    env = {
        "PATCHWARDEN_DATABASE_URL": str(harness.deps.settings.database_url),
        "PATCHWARDEN_CONFIG": str(write_config(tmp_path, BASE_CONFIG)),
    }
    result = await asyncio.to_thread(run_cli, ["changes", "show", "CHG-1", "--json"], env)
    data = json.loads(result.output)
    assert data["id"] == "CHG-1" and data["state"] == "approved_for_test"
    assert data["approvals"][0] | {"time": None} == data["approvals"][0] | {
        "stage": "test",
        "user": OWNER,
        "decision": "approve",
        "stale": False,
        "time": None,
    }
    assert [h["action"] for h in data["history"]][:2] == ["created", "transition"]
    assert "windows" in data and "deployments" in data
    listing = json.loads((await asyncio.to_thread(run_cli, ["changes", "list", "--json"], env)).output)
    assert listing[0]["id"] == "CHG-1"
    missing = await asyncio.to_thread(run_cli, ["changes", "show", "CHG-99", "--json"], env)
    assert missing.exit_code == 1 and "CHG-99" in missing.output


async def test_unknown_subcommand_and_unknown_system_get_usage(harness: Harness) -> None:
    status, body = await harness.slack.command("deploi CHG-1 prod", user=REQ)
    assert status == 200 and "`deploi` is not a /patch command" in body and "/patch request" in body
    await harness.slack.command("request shopp", user=REQ)
    reply = await eventually(lambda: harness.fake.responses, what="ephemeral reply")
    assert "`shopp` is not a known system" in reply[-1]["text"] and "`web-shop`" in reply[-1]["text"]
    await harness.slack.command("status CHG-x", user=REQ)
    await eventually(lambda: len(harness.fake.responses) == 2)
    assert "is not a change id" in harness.fake.responses[-1]["text"]
    assert harness.fake.of("views.open") == []


async def test_illegal_transition_raises_and_changes_nothing(harness: Harness) -> None:
    await harness.request_change()
    with pytest.raises(IllegalTransitionError) as err:
        async with harness.deps.sessions.begin() as s:
            change = await lifecycle.load(s, 1, lock=True)
            await lifecycle.transition(
                s, config=harness.config, change=change, to=ChangeState.COMPLETED, actor=REQ, now=harness.clock.now()
            )
    assert "cannot become *completed*" in err.value.user_message
    async with harness.deps.sessions.begin() as s:
        change = await changes.get(s, 1)
        assert change is not None and change.state is ChangeState.PENDING_TEST_APPROVAL


def test_manifest_matches_registered_listeners() -> None:
    manifest = yaml.safe_load((Path(__file__).resolve().parents[1] / "slack-app-manifest.yaml").read_text())
    commands = [c["command"] for c in manifest["features"]["slash_commands"]]
    assert commands == ["/patch"]
    events = manifest["settings"]["event_subscriptions"]["bot_events"]
    assert "app_home_opened" in events and manifest["features"]["app_home"]["home_tab_enabled"] is True
    scopes = set(manifest["oauth_config"]["scopes"]["bot"])
    assert {"commands", "chat:write", "chat:write.public", "files:write"} <= scopes


async def test_posts_are_not_retried_on_5xx_but_updates_are(harness: Harness) -> None:
    """A 5xx after Slack accepted a post would duplicate it if retried; an update is safe to repeat."""
    from slack_sdk.errors import SlackApiError

    client = harness.deps.client
    harness.fake.fail("chat.postMessage", status=500)
    with pytest.raises(SlackApiError):
        await client.chat_postMessage(channel="C0APPROVALS", text="hello")
    assert len(harness.fake.of("chat.postMessage")) == 1
    ok = await client.chat_postMessage(channel="C0APPROVALS", text="hello")
    harness.fake.fail("chat.update", status=500)
    await client.chat_update(channel="C0APPROVALS", ts=ok["ts"], text="edited")
    assert len(harness.fake.of("chat.update")) == 2
