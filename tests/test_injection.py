"""Shell injection through every user-typed field reaches no command line.

The deploy script records its argv and its environment exactly as exec() received them; the test asserts
they are the configured argv and the fixed PATCHWARDEN_* values, and that no marker file appears.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from conftest import OPS1, OWNER, SEC1, eventually, make_config
from deploy_support import Script, approved_for_test, in_thread, wait_state

from storage.models import ChangeState


def payloads(marker: Path) -> list[str]:
    return [
        f"x; touch {marker}",
        f"$(touch {marker})",
        f"`touch {marker}`",
        f"a | touch {marker} && touch {marker}",
        f"'\"; touch {marker}; echo \"'",
        f"\ntouch {marker}\n",
    ]


async def test_user_text_never_reaches_a_command_line(harness_factory: Any, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = payloads(marker)
    script = Script(tmp_path)
    script.fail("verify-test")  # so apply, verify and rollback all run
    config = make_config(
        systems={
            "web-shop": {"environments": {"test": script.environment("test"), "prod": script.environment("prod")}}
        },
        policy={"on_failed_verify": "rollback"},
    )
    h = await harness_factory(config)
    card = await approved_for_test(
        h,
        change_class="emergency",
        title=f"T {evil[0]}"[:200],
        details=" ".join(evil),
        technical=evil[1],
        rollback_plan=evil[2],
        expected_downtime=evil[3][:100],
        advisory_ref=evil[4][:200],
    )
    # /patch arguments: refused before anything runs
    for text in (f"CHG-1 test; touch {marker}", f"CHG-1 $(touch {marker}) test", f"CHG-1 test --nowx {evil[1]}"):
        await h.slack.command(f"deploy {text}", user=OPS1)
    # the --now reason is free text; it is audited and shown escaped, never passed on
    await h.slack.command(f"deploy CHG-1 test --now {evil[1]} {evil[0]}", user=OPS1)
    await wait_state(h, ChangeState.TEST_FAILED)
    prompt = await in_thread(h, card, "test_problems")
    await h.slack.click(prompt, "test_problems", user=OWNER)
    view = await h.opened_view("test_problems_form")
    await h.slack.submit(view, {"criticality": "high", "description": " ".join(evil)}, user=OWNER)
    risk = await in_thread(h, card, "test_risk_decision")
    await h.slack.click(risk, "test_risk_decision", user=SEC1)
    view = await h.opened_view("test_risk_form")
    await h.slack.submit(view, {"decision": "stop", "reasoning": " ".join(evil)}, user=SEC1)
    await wait_state(h, ChangeState.FAILED)

    calls = script.calls()
    assert [c["argv"][1:] for c in calls] == [["apply", "test"], ["verify", "test"], ["rollback", "test"]]
    for call in calls:
        assert call["argv"] == [str(script.path), call["argv"][1], "test"]
        env = dict(item.split("=", 1) for item in call["env"])
        patchwarden = {k: v for k, v in env.items() if k.startswith("PATCHWARDEN_")}
        assert set(env) - set(patchwarden) <= {"PATH", "LANG"}
        per_step = (
            "PATCHWARDEN_RUN_ID",
            "PATCHWARDEN_ARTIFACTS",
            "PATCHWARDEN_ARTIFACT_DIR",
            "PATCHWARDEN_INVENTORY_OUT",
            "PATCHWARDEN_REBOOT",  # a file path in the run directory (issue 11: reboots)
        )
        assert {k: v for k, v in patchwarden.items() if k not in per_step} == {
            "PATCHWARDEN_CHANGE": "CHG-1",
            "PATCHWARDEN_STAGE": "test",
            "PATCHWARDEN_SYSTEM": "web-shop",
            "PATCHWARDEN_TARGETS": "",
        }
        # the per-step artifact folder and manifest are paths patchwarden made, never typed text
        folder = Path(patchwarden["PATCHWARDEN_ARTIFACT_DIR"]).parent
        assert re.fullmatch(r"patchwarden-CHG-1-test-web-shop-[0-9a-f]{10}-\w+", folder.name)
        assert patchwarden["PATCHWARDEN_ARTIFACTS"] == str(folder / "artifacts.json")
        assert patchwarden["PATCHWARDEN_INVENTORY_OUT"] == str(folder / "inventory.json")
        assert re.fullmatch(r"CHG-1-test-web-shop-[0-9a-f]{10}", patchwarden["PATCHWARDEN_RUN_ID"])
        for key in ("PATH", "LANG"):
            assert env.get(key) == os.environ.get(key) or key not in env
    assert not marker.exists()
    # the refused /patch arguments ran nothing and left no deployment behind
    await eventually(lambda: len(h.fake.responses) >= 4, what="replies to every command")
    assert not marker.exists()
