"""Impossible policies are caught at config time (issue 13): check-config names the system and stage."""

from __future__ import annotations

from pathlib import Path

import yaml
from click.testing import CliRunner
from conftest import BASE_CONFIG, OWNER, SEC1

from bot import policy_check
from bot.__main__ import cli
from bot.config import parse_config
from bot.sandbox import demo


def config_with(**groups: list[str]) -> dict[str, object]:
    data = yaml.safe_load(yaml.safe_dump(BASE_CONFIG))
    data["groups"].update(groups)
    return data


def test_an_owners_own_change_with_one_security_member_is_reported_naming_system_and_stage(tmp_path: Path) -> None:
    data = config_with(security=[SEC1])
    found = policy_check.check(parse_config(data, source="test"))
    assert {(w.system, w.stage, w.requester, w.problem) for w in found} >= {("web-shop", "prod", OWNER, "never")}
    assert all(w.stage == "prod" for w in found)  # test only needs the owner: never stuck but for the owner
    path = tmp_path / "patchwarden.yaml"
    path.write_text(yaml.safe_dump(data))
    result = CliRunner().invoke(cli, ["check-config", str(path)], env={})
    assert result.exit_code == 0, result.output
    assert f"warning: system web-shop, stage prod: a change requested by {OWNER} can never be approved" in (
        result.output
    )
    assert "policy warning(s)" in result.output


def test_the_shipped_example_the_test_config_and_the_demo_have_no_impossible_stage() -> None:
    from datetime import date

    assert policy_check.check(parse_config(yaml.safe_load(yaml.safe_dump(BASE_CONFIG)), source="t")) == []
    example = Path(__file__).resolve().parents[1] / "examples" / "patchwarden.yaml"
    assert policy_check.check(parse_config(yaml.safe_load(example.read_text()), source="example")) == []
    assert policy_check.check(demo.demo_config(date.today())) == []


def test_a_stage_that_can_get_stuck_reminding_nobody_is_reported() -> None:
    # prod: one of the CAB, then the owner; the owner's own change falls back to security (SEC1 alone).
    # If SEC1 approves first, the CAB requirement takes SEC1, and the owner's requirement is left with
    # nobody to fill it or to be reminded; had the other CAB member approved first, it completes.
    data = config_with(security=[SEC1], cab=[SEC1, "U0XAVIER"])
    data["policy"]["stages"]["prod"] = [{"group": "cab"}, {"role": "owner"}]  # type: ignore[index]
    found = policy_check.check(parse_config(data, source="test"))
    stuck = [w for w in found if w.requester == OWNER and w.stage == "prod"]
    assert [w.problem for w in stuck] == ["nobody"], found
    assert "reminders going to nobody" in str(stuck[0]) and "web-shop" in str(stuck[0])
