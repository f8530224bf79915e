"""The sandbox page in a real browser (Debian's chromium, headless, driven by Playwright for Python).

Plays the loop by clicking as different people: the requester fills the form (an inline error first),
the owner approves from the card, the operator books a proposed test window, the owner's Home tab shows
it, and the calendar picture renders. (Deploying needs the booked window to arrive, or an emergency
change; the sandbox runs on the real clock, so the browser test stops at the booking.) Screenshots go to
``test-artifacts/`` (gitignored) so a failed CI run can be looked at.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from bot.sandbox import demo
from bot.sandbox.server import Sandbox, start_sandbox
from storage import windows

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
            page.on("dialog", lambda dialog: dialog.accept())  # the Approve button's confirm dialog

            async def shot(name: str) -> None:
                await page.screenshot(path=str(ARTIFACTS / f"sandbox-{name}.png"), full_page=True)

            await page.goto(f"{sandbox.url}?user={demo.DANA}&channel={demo.OPS}")
            await expect(page.locator("#banner")).to_contain_text("SANDBOX")
            await expect(page.locator("#who")).to_have_value(demo.DANA)
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
            timeline = page.get_by_test_id("timeline")
            await expect(timeline).to_contain_text("CHG-1 · Update jQuery to 3.5.0")
            await shot("03-card")

            # the owner (Alice) approves the test stage from the card
            await page.select_option("#who", demo.ALICE)
            await expect(page.locator("#role")).to_contain_text("owner of web-shop")
            await timeline.locator('button[data-action-id="change_approve"]').first.click()
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

            async def skip_to_window(stage: str) -> None:
                """Skip sandbox time to just after the booked window of ``stage`` opens (what the page's
                skip-ahead buttons send, with the exact number of hours)."""
                async with sandbox.deps.sessions.begin() as s:
                    booked = [w for w in await windows.for_change(s, 1) if w.stage == stage]
                hours = (booked[-1].start - sandbox.deps.clock.now()).total_seconds() / 3600 + 0.05
                answer = await page.evaluate(
                    "async ([user, hours]) => (await fetch('/api/clock', {method: 'POST', headers: "
                    "{'Content-Type': 'application/json', 'X-Sandbox-Token': "
                    "document.querySelector('meta[name=\"pw-token\"]').content}, "
                    "body: JSON.stringify({user, hours})})).json()",
                    [demo.OLGA, hours],
                )
                assert answer["ok"], answer

            # time passes: the test window opens, the dry-run deployment runs, results land in the thread
            await skip_to_window("test")
            await page.locator(f'a[data-channel="{demo.APPROVALS}"]').click()
            await expect(timeline).to_contain_text("Deploying CHG-1 to test")
            await page.select_option("#who", demo.ALICE)
            await timeline.locator('button[data-action-id="test_passed"]').first.click()
            await timeline.locator('button[data-action-id="test_acknowledge"]').first.click()
            await expect(timeline).to_contain_text("Pending prod approval")
            await shot("08-test-passed")

            # production needs the owner and security; the approvals come from the card
            await timeline.locator('button[data-action-id="change_approve"]').first.click()
            await page.select_option("#who", demo.SAM)
            await timeline.locator('button[data-action-id="change_approve"]').first.click()
            await expect(timeline).to_contain_text("Approved for prod")

            # the operator books production (≥ 24 h notice); the shop's users are told in their channel
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

            # the production window opens: deployed, verified, completed, and the users hear it is over
            await skip_to_window("prod")
            await page.locator(f'a[data-channel="{demo.APPROVALS}"]').click()
            await expect(timeline).to_contain_text("Completed", timeout=20_000)
            await shot("10-completed")
        finally:
            await browser.close()
