"""The sandbox page in a real browser (Debian's chromium, headless, driven by Playwright for Python).

Plays the whole loop by clicking as different people: the welcome post, the requester fills the form
(an inline error first), the requester's own Approve click is refused at once (no dialog), the owner
approves from the card after confirming what she approves, the operator books a proposed test window, the
owner's Home tab shows it, the calendar picture renders, **Jump to the next window** opens the test window
and deploys, the owner records the result, owner and security approve production, the operator books it,
and **+1 day** then **+1 week** play the production window: one announcement of each kind, in order, and
no "missed" notice. Screenshots go to ``test-artifacts/`` (gitignored) so a failed CI run can be looked at.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from bot.sandbox import demo
from bot.sandbox.server import Sandbox, start_sandbox

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def ensure_chromium() -> Path:
    """Debian's chromium, installed with apt when missing and we are root (as in CI)."""
    if not CHROMIUM.exists() and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], check=False, env=env, timeout=600)
    if not CHROMIUM.exists():
        pytest.fail("chromium is missing: run `apt-get install -y chromium` (bash .ci/run does this as root)")
    return CHROMIUM


@pytest_asyncio.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    box = await start_sandbox(port=0)
    yield box
    await box.stop()


async def test_browser_plays_request_approve_schedule_home_and_calendar(sandbox: Sandbox) -> None:
    from playwright.async_api import async_playwright, expect

    executable = ensure_chromium()
    ARTIFACTS.mkdir(exist_ok=True)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(executable), args=ARGS, headless=True)
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(10_000)
            dialogs: list[str] = []  # no static confirm dialog on Approve any more: the bot asks eligible people

            async def no_dialog(dialog: Any) -> None:
                dialogs.append(dialog.message)
                await dialog.dismiss()

            page.on("dialog", no_dialog)

            async def approve() -> None:
                """Click Approve on the card and press Approve in the confirmation the bot opens."""
                await timeline.locator('button[data-action-id="change_approve"]').first.click()
                modal = page.get_by_test_id("modal")
                await expect(modal).to_contain_text("Approvals so far")
                await page.get_by_test_id("modal-submit").click()
                await expect(page.locator("#modal-backdrop")).to_be_hidden()

            async def shot(name: str) -> None:
                await page.screenshot(path=str(ARTIFACTS / f"sandbox-{name}.png"), full_page=True)

            await page.goto(f"{sandbox.url}?user={demo.DANA}&channel={demo.OPS}")
            await expect(page.locator("#banner")).to_contain_text("SANDBOX")
            await expect(page.locator("#who")).to_have_value(demo.DANA)
            # the welcome post says what to try first and as whom, and offers Reset
            timeline = page.get_by_test_id("timeline")
            await expect(timeline).to_contain_text("Welcome to the patchwarden sandbox")
            await expect(timeline).to_contain_text("/patch request web-shop")
            await expect(timeline.locator('button[data-action-id="sandbox_reset"]')).to_be_visible()
            await expect(page.get_by_test_id("policy-note")).to_contain_text("announce_notice: 1h")
            await expect(page.get_by_test_id("skip-next-window")).to_be_visible()
            await shot("01-start")

            # the requester (Dana) types the command; the form opens; a missing title is shown inline
            box = page.get_by_test_id("message-box")
            await box.fill("/patch request web-shop")
            await box.press("Enter")
            modal = page.get_by_test_id("modal")
            await expect(modal).to_contain_text("Request a change")
            await page.get_by_test_id("modal-submit").click()
            await expect(modal.locator('.input[data-block-id="title"] .error')).not_to_be_empty()
            await shot("02-inline-error")
            await modal.locator('.input[data-block-id="title"] input').fill("Update jQuery to 3.5.0")
            await modal.locator('.input[data-block-id="rollback_plan"] textarea').fill("Redeploy the old image")
            await page.get_by_test_id("modal-submit").click()
            await expect(page.locator("#modal-backdrop")).to_be_hidden()

            # the card appears in #patch-approvals with the Approve button
            await page.locator(f'a[data-channel="{demo.APPROVALS}"]').click()
            await expect(timeline).to_contain_text("CHG-1 · Update jQuery to 3.5.0")
            # polling does not re-render an unchanged timeline (text stays selectable)
            # (the old page re-rendered on every poll, as the clock changed: never 4 quiet polls in a row)
            for _ in range(10):
                renders, polls = await page.evaluate("[S.renders, S.polls]")
                await page.wait_for_function(f"S.polls >= {polls + 4}")
                if await page.evaluate("S.renders") == renders:
                    break
            else:
                raise AssertionError("the timeline re-rendered on every poll although nothing changed")
            await shot("03-card")

            # the requester (still Dana) may not approve her own change: told at once, and no dialog opens
            await timeline.locator('button[data-action-id="change_approve"]').first.click()
            await expect(timeline).to_contain_text("you cannot approve it")
            await expect(page.locator("#modal-backdrop")).to_be_hidden()

            # the owner (Alice) approves the test stage from the card
            await page.select_option("#who", demo.ALICE)
            await expect(page.locator("#role")).to_contain_text("owner of web-shop")
            await approve()
            await expect(timeline).to_contain_text("Approved for test")
            await expect(timeline).to_contain_text("is approved for test")
            await expect(timeline.locator('button[data-action-id="change_approve"]')).to_have_count(0)
            await shot("04-approved")

            # the operator (Olga) asks for free windows in #ops and books the first one with a click
            await page.select_option("#who", demo.OLGA)
            await page.locator(f'a[data-channel="{demo.OPS}"]').click()
            await box.fill("/patch schedule CHG-1 test")
            await box.press("Enter")
            await timeline.locator('button[data-action-id="schedule_book_1"]').click()
            await expect(timeline).to_contain_text("The test window of CHG-1 is booked for")
            await shot("05-booked")

            # Alice's Home: nothing pending any more, the booked window and the demo's overdue advisories
            await page.select_option("#who", demo.ALICE)
            await page.get_by_test_id("home-tab").click()
            home = page.get_by_test_id("home")
            await expect(home).to_contain_text("Overdue advisories")
            await expect(home).to_contain_text("Nothing waits for your approval")
            await expect(home).to_contain_text("CHG-1 test on web-shop (booked)")
            await expect(page.locator("#composer")).to_be_hidden()  # no message box into a "# home" channel
            await shot("06-home")

            # the calendar picture arrives in #ops and really renders
            await page.locator(f'a[data-channel="{demo.OPS}"]').click()
            await box.fill("/patch calendar web-shop")
            await box.press("Enter")
            image = page.get_by_test_id("file-image").first
            await expect(image).to_be_visible()
            await page.wait_for_function(
                "() => { const i = document.querySelector('[data-testid=file-image]'); "
                "return i && i.complete && i.naturalWidth > 0; }"
            )
            width = await image.evaluate("i => i.naturalWidth")
            assert width >= 800
            await shot("07-calendar")

            async def press(testid: str) -> None:
                """Press a sandbox-time button and wait until the skip has played (the buttons re-enable)."""
                button = page.get_by_test_id(testid)
                await button.click()
                await expect(button).to_be_enabled(timeout=60_000)

            # time passes with the sidebar's button: the test window opens, the dry-run deploys
            await press("skip-next-window")
            await page.locator(f'a[data-channel="{demo.APPROVALS}"]').click()
            await expect(timeline).to_contain_text("Deploying CHG-1 to test")
            await page.select_option("#who", demo.ALICE)
            await timeline.locator('button[data-action-id="test_passed"]').first.click()
            await timeline.locator('button[data-action-id="test_acknowledge"]').first.click()
            await expect(timeline).to_contain_text("Pending prod approval")
            await shot("08-test-passed")

            # production needs the owner and security; the approvals come from the card
            await approve()
            await page.select_option("#who", demo.SAM)
            await approve()
            await expect(timeline).to_contain_text("Approved for prod")

            # the operator books production; the shop's users are told in their channel
            await page.select_option("#who", demo.OLGA)
            await page.locator(f'a[data-channel="{demo.OPS}"]').click()
            await box.fill("/patch schedule CHG-1 prod")
            await box.press("Enter")
            proposals = timeline.locator("div.msg", has_text="Book the prod window")
            await proposals.locator('button[data-action-id="schedule_book_1"]').click()
            await expect(timeline).to_contain_text("The prod window of CHG-1 is booked for")
            await page.select_option("#who", demo.DANA)
            await page.locator(f'a[data-channel="{demo.SHOP_USERS}"]').click()
            await expect(timeline).to_contain_text("CHG-1")
            await shot("09-announced")

            # a day passes over the production window, then a week over the next ones: it deploys once,
            # is announced once of each kind in order, and nothing is "missed" or moved by nobody
            await press("skip-1d")
            await press("skip-1w")
            await page.locator(f'a[data-channel="{demo.APPROVALS}"]').click()
            await expect(timeline).to_contain_text("Completed", timeout=20_000)
            await expect(timeline).not_to_contain_text("missed")
            await expect(timeline).not_to_contain_text("moved the")
            await shot("10-completed")
            await page.locator(f'a[data-channel="{demo.SHOP_USERS}"]').click()
            await expect(timeline).to_contain_text("Maintenance completed")
            shop = await timeline.locator("div.msg").all_inner_texts()
            kinds = ("Planned maintenance", "Reminder", "Maintenance has started", "Maintenance completed")
            seen = [k for text in shop for k in kinds if k in text]
            assert seen == list(kinds), shop
            assert not any("missed" in text for text in shop)
            # the clock shows its zone; a window time in the announcement is rendered, with its zone
            await expect(page.get_by_test_id("clock")).to_contain_text("(")
            assert "<!date" not in "".join(shop) and "*" not in "".join(shop)  # bold around dates is rendered
            await page.locator(f'a[data-channel="{demo.APPROVALS}"]').click()
            everything = "\n".join(await timeline.locator("div.msg").all_inner_texts())
            assert not re.findall(r":[a-z_]{3,}:", everything), re.findall(r":[a-z_]{3,}:", everything)
            await shot("11-shop-users")
            assert dialogs == [], dialogs
        finally:
            await browser.close()
