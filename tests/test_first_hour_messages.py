"""What a newcomer reads after each step is right (issue 13, "Messages and cards")."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from conftest import OPS1, OWNER, SEC1, Harness, eventually, make_config
from deploy_support import approved_for_test, book, in_thread, wait_state
from test_deploy import deploy_cmd

from bot.sandbox.fake_slack import Message
from storage import changes, windows
from storage.models import ChangeClass, ChangeState, WindowState


def card_text(h: Harness, card: Message) -> str:
    return json.dumps(h.latest(card).blocks)


async def test_request_submission_answers_where_typed_with_the_id_and_a_link_to_the_card(harness: Harness) -> None:
    card = await harness.request_change(user="U0REQ1")
    reply = await eventually(
        lambda: [m for m in harness.fake.messages.values() if m.ephemeral_to == "U0REQ1" and "CHG-1" in m.text],
        what="the requester's answer",
    )
    assert reply[0].channel == "C0OPS"  # where /patch request was typed (the driver's default channel)
    assert f"/archives/{card.channel}/p{card.ts.replace('.', '')}|its card>" in reply[0].text


async def test_card_waits_for_the_owner_before_saying_test_passed_and_dry_run_lines_agree(harness: Harness) -> None:
    h = harness
    card = await approved_for_test(h)
    async with h.deps.sessions.begin() as s:  # an emergency, so it may deploy now without a window
        change = await changes.get(s, 1)
        assert change is not None
        change.change_class = ChangeClass.EMERGENCY
    assert "Deploying CHG-1" in await deploy_cmd(h, "CHG-1 test --now disk <full> & failing")
    await wait_state(h, ChangeState.TEST_PASSED)
    await eventually(lambda: "waiting for the owner" in card_text(h, card), what="card refreshed")
    assert "Test passed" not in card_text(h, card)
    # the emergency --now run is on the card's Deployments line: outside a window, with the escaped reason
    deployments_line = next(b for b in h.latest(card).blocks if "*Deployments*" in json.dumps(b))
    line = deployments_line["text"]["text"]
    assert "outside a window" in line and "disk &lt;full&gt; &amp; failing" in line and "<full>" not in line
    # no dry-run line says "changed" next to "nothing was changed"
    for m in h.thread(card):
        text = m.text + json.dumps(m.blocks)
        assert not ("changed" in text.replace("nothing was changed", "") and "nothing was changed" in text), text
    # the owner records the result: now the card says it passed
    results = await in_thread(h, card, "test_passed", what="result buttons")
    await h.slack.click(results, "test_passed", user=OWNER)
    await eventually(lambda: "Test passed" in card_text(h, card), what="result on the card")


async def test_status_of_a_completed_change_still_shows_who_approved_and_when_the_windows_were(
    harness: Harness,
) -> None:
    h = harness
    await approved_for_test(h)
    await book(h, stage="test", start_in=timedelta(hours=2))
    async with h.deps.sessions.begin() as s:  # fast-forward: the window was held and the change completed
        change = await changes.get(s, 1)
        assert change is not None
        change.state = ChangeState.COMPLETED
        for w in await windows.for_change(s, 1):
            w.state = WindowState.DONE
    before = len(h.fake.responses)
    await h.slack.command("status CHG-1", user=SEC1)
    reply = await eventually(lambda: h.fake.responses[before:], what="status reply")
    blocks = json.dumps(reply[-1]["blocks"])
    assert f"Test approved by <@{OWNER}> <!date^" in blocks
    assert "Test window held: <!date^" in blocks


async def test_reject_is_refused_before_the_reason_is_asked(harness_factory: Any) -> None:
    two = {"test": [{"role": "owner"}, {"group": "security"}], "prod": [{"role": "owner"}, {"group": "security"}]}
    h: Harness = await harness_factory(make_config(policy={"stages": two}))
    card = await h.request_change()
    await h.slack.approve(card, user=OWNER)  # one of two requirements: still pending
    await eventually(lambda: any(m.ephemeral_to == OWNER for m in h.fake.messages.values()), what="approved")
    opened = len(h.fake.of("views.open"))

    def told(user: str, needle: str) -> Any:
        return [m for m in h.fake.messages.values() if m.ephemeral_to == user and needle in m.text]

    await h.slack.click(h.latest(card), "change_reject", user=OWNER)
    await eventually(lambda: told(OWNER, "already decided"), what="already decided")
    await h.slack.click(h.latest(card), "change_reject", user=OPS1)
    await eventually(lambda: told(OPS1, "not an approver"), what="not an approver")
    assert len(h.fake.of("views.open")) == opened  # no reason form was opened for either
    await h.slack.click(h.latest(card), "change_reject", user=SEC1)  # an approver who has not decided: asked
    await h.opened_view("change_reject_reason", after=0)


async def test_request_form_refuses_past_dates_endless_downtime_and_a_missing_rollback_plan(harness: Harness) -> None:
    h = harness
    await h.slack.command("request web-shop", user="U0REQ1")
    view = await h.opened_view("change_request")
    yesterday = (h.clock.now() - timedelta(days=2)).date().isoformat()
    form = {
        "title": "Update OpenSSL",
        "details": "Fixes a CVE",
        "planned_test": yesterday,
        "expected_downtime": "forever and a day",
        "rollback_plan": "  ",
    }
    status, body = await h.slack.submit(view, form, user="U0REQ1")
    errors = json.loads(body)["errors"]
    assert set(errors) == {"planned_test", "expected_downtime", "rollback_plan"}, errors
    assert "passed" in errors["planned_test"] and "7 days" in errors["expected_downtime"]
    form |= {"planned_test": None, "expected_downtime": "3 weeks", "rollback_plan": "Reinstall"}
    status, body = await h.slack.submit(view, form, user="U0REQ1")
    assert set(json.loads(body)["errors"]) == {"expected_downtime"}
    form |= {"expected_downtime": "about 10 minutes"}
    status, body = await h.slack.submit(view, form, user="U0REQ1")
    assert status == 200 and body in ("", "{}"), body
    rollback = next(b for b in view["blocks"] if b.get("block_id") == "rollback_plan")
    assert not rollback.get("optional") and "Required" in rollback["hint"]["text"]


def test_report_colours_mean_their_outcome_and_counts_have_whole_steps() -> None:
    from bot.render import report

    rows = [
        report.SystemReport(
            system="web-shop",
            open_advisories=1,
            overdue_advisories=0,
            remediated_advisories=0,
            mean_days_to_remediate=None,
            changes={"open": 0, "cancelled": 1, "completed": 2, "expired": 0, "failed": 0, "rejected": 0},
        )
    ]
    fig = report.chart_figure(rows)
    chg = fig.axes[1]
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import to_rgba

    colours = {c.get_label(): c.patches[0].get_facecolor() for c in chg.containers}
    assert colours["completed"] == to_rgba("#5cb85c") and colours["cancelled"] == to_rgba("#999999")
    FigureCanvasAgg(fig).draw()
    for axis in fig.axes:
        assert all(float(t).is_integer() for t in axis.get_xticks()), axis.get_xticks()
