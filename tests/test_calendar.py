"""The calendar picture (/patch calendar) and the iCalendar feed (GET /calendar.ics)."""

from __future__ import annotations

import struct
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from conftest import OWNER, Harness, eventually, make_config
from icalendar import Calendar

from bot.render import calendar_image
from storage.models import Window, WindowState

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CONFIG = {
    "systems": {
        "web-shop": {
            "maintenance_windows": [{"rrule": "FREQ=WEEKLY;BYDAY=TU,TH;BYHOUR=22", "duration": "2h"}],
            "blackouts": [{"start": "2030-12-20T00:00:00", "end": "2031-01-02T00:00:00", "reason": "Xmas sales"}],
        },
        "erp": {"owner": OWNER, "timezone": "America/New_York"},
    },
    "blackouts": [{"start": "2030-06-01T00:00:00", "end": "2030-06-02T00:00:00", "reason": "DC move"}],
}


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_MAGIC, "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


async def book(h: Harness, *, start: datetime, hours: int = 2, systems: list[str] | None = None) -> None:
    async with h.deps.sessions.begin() as s:
        s.add(
            Window(
                change_id=1,
                stage="test",
                systems=systems or ["web-shop"],
                start=start,
                end=start + timedelta(hours=hours),
                state=WindowState.BOOKED,
                booked_by=OWNER,
                booked_at=h.clock.now(),
            )
        )


async def test_calendar_png_changes_when_a_window_is_booked(harness_factory) -> None:  # type: ignore[no-untyped-def]
    h: Harness = await harness_factory(make_config(**CONFIG))
    await h.request_change()
    start = datetime(2030, 5, 27, tzinfo=UTC)
    systems = ["erp", "web-shop"]
    before = calendar_image.render(h.config, systems=systems, windows=[], start=start)
    width, height = png_size(before)
    assert width >= 800 and height >= 200
    await book(h, start=datetime(2030, 5, 28, 20, tzinfo=UTC))
    from storage import overview

    async with h.deps.sessions.begin() as s:
        windows = await overview.windows_between(s, start=start, end=start + timedelta(weeks=4))
    assert len(windows) == 1
    after = calendar_image.render(h.config, systems=systems, windows=windows, start=start)
    assert png_size(after) == (width, height) and after != before

    # the slash command uploads the picture to the channel it was typed in
    status, _ = await h.slack.command("calendar web-shop", user=OWNER, channel="C0OPS")
    assert status == 200
    shared = await eventually(lambda: [m for m in h.fake.channel_messages("C0OPS") if m.files], what="calendar posted")
    file_id = shared[0].files[0]["id"]
    assert h.fake.files[file_id]["content"][:8] == PNG_MAGIC
    assert "maintenance calendar of web-shop" in shared[0].text
    status, _ = await h.slack.command("calendar nope", user=OWNER, channel="C0OPS")
    assert status == 200
    await eventually(
        lambda: any("not a known system" in r.get("text", "") for r in h.fake.responses), what="usage error"
    )


async def test_ics_feed_holds_windows_and_blackouts_in_their_zones(harness_factory) -> None:  # type: ignore[no-untyped-def]
    h: Harness = await harness_factory(make_config(**CONFIG))
    await h.request_change()
    start = h.clock.now().replace(microsecond=0) + timedelta(days=3)
    await book(h, start=start)
    await book(h, start=start + timedelta(days=1), systems=["web-shop", "erp"])  # two zones: UTC
    base = h.endpoint.removesuffix("/slack/events")

    async with h.http.get(f"{base}/calendar/web-shop.ics") as resp:
        assert resp.status == 200 and resp.content_type == "text/calendar"
        cal = Calendar.from_ical(await resp.read())
    events = {str(e["UID"]): e for e in cal.walk("VEVENT")}
    assert {"window-1@patchwarden", "window-2@patchwarden"} <= set(events)
    one = events["window-1@patchwarden"]
    assert "CHG-1 test: Update OpenSSL" in str(one["SUMMARY"])
    assert one.start == start and one.end == start + timedelta(hours=2)
    assert one.start.tzinfo is not None and str(one.start.tzinfo) == "Europe/Berlin"
    assert one["DTSTART"].params["TZID"] == "Europe/Berlin"
    assert str(events["window-2@patchwarden"].start.tzinfo) == "UTC"
    assert "Europe/Berlin" in {str(tz["TZID"]) for tz in cal.walk("VTIMEZONE")}
    blackouts = [e for e in cal.walk("VEVENT") if str(e["UID"]).startswith("blackout-")]
    xmas = next(e for e in blackouts if "Xmas sales" in str(e["SUMMARY"]))
    assert xmas.start == datetime(2030, 12, 20, tzinfo=ZoneInfo("Europe/Berlin"))
    move = next(e for e in blackouts if "DC move" in str(e["SUMMARY"]))
    assert move.start == datetime(2030, 6, 1, tzinfo=UTC) and str(move.start.tzinfo) == "UTC"

    async with h.http.get(f"{base}/calendar/erp.ics") as resp:
        erp = Calendar.from_ical(await resp.read())
    uids = {str(e["UID"]) for e in erp.walk("VEVENT")}
    assert "window-2@patchwarden" in uids and "window-1@patchwarden" not in uids
    assert not any("Xmas" in str(e["SUMMARY"]) for e in erp.walk("VEVENT"))

    async with h.http.get(f"{base}/calendar.ics") as resp:
        everything = Calendar.from_ical(await resp.read())
    assert len([e for e in everything.walk("VEVENT") if "DC move" in str(e["SUMMARY"])]) == 1  # no duplicates
    async with h.http.get(f"{base}/calendar/unknown.ics") as resp:
        assert resp.status == 404


async def test_calendar_feed_can_require_a_secret_token(harness_factory: Any) -> None:
    from pydantic import SecretStr

    h = await harness_factory()
    object.__setattr__(h.deps, "settings", h.deps.settings.model_copy(update={"calendar_token": SecretStr("s3cret")}))
    # the routes read the token when the web app is built: build one for this harness's deps
    from aiohttp import web

    from bot.render import ical
    from bot.sandbox.fake_slack import bound_port

    app = web.Application()
    app.add_routes(ical.routes(h.deps))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{bound_port(site)}"
    try:
        async with h.http.get(f"{base}/calendar.ics") as resp:
            assert resp.status == 404
        async with h.http.get(f"{base}/calendar.ics?token=wrong") as resp:
            assert resp.status == 404
        async with h.http.get(f"{base}/calendar.ics?token=s3cret") as resp:
            assert resp.status == 200 and (await resp.read()).startswith(b"BEGIN:VCALENDAR")
    finally:
        await runner.cleanup()
