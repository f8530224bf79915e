"""Announcements by e-mail: a real SMTP server on loopback (aiosmtpd) receives what the outbox sends."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from conftest import OWNER, Harness, eventually
from icalendar import Calendar
from test_scheduling import all_windows, approved_change, command, fast_sender, schedule_config, set_clock

from bot.blocks.announcement import AnnouncementKind
from bot.jobs import run_window_sweep
from bot.workflows import announcements
from storage import changes, outbox
from storage.models import OutboxState, Window

LIST = "shop-users@example.com"
OWNER_MAIL = "owner@example.com"


@dataclass
class Inbox:
    """What the loopback SMTP server received: (recipients, parsed message) in order."""

    received: list[tuple[list[str], EmailMessage]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        parsed = message_from_bytes(bytes(envelope.original_content or b""), policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        with self.lock:
            self.received.append(([str(r) for r in envelope.rcpt_tos], parsed))
        return "250 OK"

    def to(self, address: str) -> list[EmailMessage]:
        with self.lock:
            return [m for rcpt, m in self.received if address in rcpt]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def smtp_port() -> int:
    return free_port()


@pytest.fixture
def inbox() -> Inbox:
    return Inbox()


@pytest.fixture
def smtp_server(smtp_port: int, inbox: Inbox) -> Iterator[Controller]:
    """Not started: a test starts it when the relay should accept (before that, connections are refused)."""
    controller = Controller(inbox, hostname="127.0.0.1", port=smtp_port)
    yield controller
    if getattr(controller, "_thread", None) is not None:
        controller.stop()


def mail_config(port: int, **systems: Any) -> Any:
    shop = {"announce_email": [LIST, OWNER], **systems}
    return schedule_config(
        systems={"web-shop": shop},
        smtp={"host": "127.0.0.1", "port": port, "starttls": False, "from": "patchwarden@example.com"},
        people={OWNER: {"email": OWNER_MAIL}},
    )


def kind_of(msg: EmailMessage) -> str:
    return str(msg["X-Patchwarden-Kind"])


def calendar_of(msg: EmailMessage) -> Calendar | None:
    for part in msg.walk():
        if part.get_content_type() == "text/calendar":
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            return Calendar.from_ical(payload)
    return None


async def announce_directly(h: Harness, kind: AnnouncementKind, *, extend: timedelta | None = None) -> None:
    window_id = (await all_windows(h))[-1].id
    async with h.deps.sessions.begin() as s:
        change = await changes.get(s, 1)
        window = await s.get(Window, window_id)
        assert change is not None and window is not None
        if extend is not None:
            window.end += extend
        await announcements.announce(s, config=h.config, change=change, window=window, kind=kind, now=h.clock.now())


async def test_every_kind_is_mailed_once_through_a_refused_relay_and_a_restart(
    harness_factory: Any, smtp_port: int, smtp_server: Controller, inbox: Inbox
) -> None:
    config = mail_config(smtp_port)
    h: Harness = await harness_factory(config)
    set_clock(h, "2026-12-03 10:00")
    await approved_change(h, title="Update <OpenSSL> & friends", expected_downtime="about 10 minutes")
    await command(h, "schedule CHG-1 prod 2026-12-06 02:00")
    # 1. the relay refuses the connection: nothing is lost, the rows wait for a retry
    result = await fast_sender(h).drain()
    assert result.retried == 2 and result.sent >= 1  # Slack got its post; both e-mails were released
    async with h.deps.sessions.begin() as s:
        mails = [m for m in await outbox.for_change(s, 1) if m.mail_to]
    assert {m.mail_to for m in mails} == {LIST, OWNER_MAIL}
    assert all(m.state is OutboxState.PENDING and "unreachable" in m.last_error for m in mails)
    # 2. the bot restarts (a new process on the same database) and the relay is back
    h2: Harness = await harness_factory(config, h.clock)
    smtp_server.start()
    h2.clock.advance(timedelta(minutes=1))
    sender = fast_sender(h2)
    await sender.drain()
    assert [kind_of(m) for m in inbox.to(LIST)] == ["booked"]
    # 3. the rest of the life of the booking
    await command(h2, "schedule CHG-1 prod 2026-12-13 02:00")  # rescheduled
    await sender.drain()
    [window] = [w for w in await all_windows(h2) if w.state.value == "booked"]
    h2.clock.advance(window.start - h2.clock.now() - timedelta(minutes=59))
    assert await run_window_sweep(h2.deps) == (1, 0)  # reminder
    for kind in (AnnouncementKind.STARTED, AnnouncementKind.COMPLETED, AnnouncementKind.ROLLED_BACK):
        await announce_directly(h2, kind)
    await announce_directly(h2, AnnouncementKind.EXTENDED, extend=timedelta(minutes=30))
    await command(h2, "unschedule CHG-1 prod the vendor withdrew the patch")  # cancelled
    await sender.drain()
    await sender.drain()  # nothing is sent twice
    expected = ["booked", "rescheduled", "reminder", "started", "completed", "rolled_back", "extended", "cancelled"]
    for address in (LIST, OWNER_MAIL):
        got = await eventually(lambda a=address: len(inbox.to(a)) >= len(expected) and inbox.to(a), what=address)
        assert [kind_of(m) for m in got] == expected
    assert len(inbox.received) == 2 * len(expected)
    # 4. each is multipart/alternative (plain + HTML), user text escaped in the HTML part
    booked = inbox.to(LIST)[0]
    alternative = next(p for p in booked.walk() if p.get_content_type() == "multipart/alternative")
    kinds = [p.get_content_type() for p in alternative.iter_parts()]
    assert kinds == ["text/plain", "text/html"]
    plain_part, html_part = alternative.iter_parts()
    assert "Update <OpenSSL> & friends" in plain_part.get_content()
    assert "2026-12-06 02:00 CET" in plain_part.get_content() and "about 10 minutes" in plain_part.get_content()
    assert "Update &lt;OpenSSL&gt; &amp; friends" in html_part.get_content()
    assert "<OpenSSL>" not in html_part.get_content()
    # 5. the calendar parts: REQUEST, REQUEST, ..., CANCEL with one UID, newer sequence each time
    calendars = [(kind_of(m), calendar_of(m)) for m in inbox.to(LIST)]
    invites = [(k, c) for k, c in calendars if c is not None]
    assert [k for k, _ in invites] == ["booked", "rescheduled", "extended", "cancelled"]
    methods = [str(c["METHOD"]) for _, c in invites]
    assert methods == ["REQUEST", "REQUEST", "REQUEST", "CANCEL"]
    events = [next(iter(c.walk("VEVENT"))) for _, c in invites]
    assert len({str(e["UID"]) for e in events}) == 1
    sequences = [int(e["SEQUENCE"]) for e in events]
    assert sequences == sorted(sequences) and sequences[0] < sequences[-1]
    assert events[0].decoded("DTSTART").isoformat().startswith("2026-12-06T01:00")  # 02:00 CET in UTC
    assert events[1].decoded("DTSTART").isoformat().startswith("2026-12-13T01:00")
    assert str(events[-1]["STATUS"]) == "CANCELLED"


async def test_unsubscribed_person_gets_no_maintenance_mail_but_emergencies(
    harness_factory: Any, smtp_port: int, smtp_server: Controller, inbox: Inbox
) -> None:
    smtp_server.start()
    h: Harness = await harness_factory(mail_config(smtp_port))
    now = set_clock(h, "2026-12-03 10:00")
    reply = await command(h, "unsubscribe web-shop", user=OWNER)
    assert "no more maintenance mail about *web-shop*" in reply["text"]
    assert "already" in (await command(h, "unsubscribe web-shop", user=OWNER))["text"]
    assert "No system is called that" in (await command(h, "unsubscribe nosuch", user=OWNER))["text"]
    await approved_change(h, change_class="emergency")
    await command(h, "schedule CHG-1 prod 2026-12-06 02:00")  # in a regular window: maintenance mail
    await fast_sender(h).drain()
    assert [kind_of(m) for m in inbox.to(LIST)] == ["booked"]
    assert inbox.to(OWNER_MAIL) == []
    # an emergency reaches everyone, opted out or not
    await command(h, "unschedule CHG-1 prod moving it up")
    when = (now + timedelta(hours=1)).strftime("%Y-%m-%d %H:%M")
    booked = await command(h, f"schedule CHG-1 prod {when} 1h --emergency payment outage")
    assert "booked" in booked["text"], booked["text"]
    await fast_sender(h).drain()
    owner_mail = inbox.to(OWNER_MAIL)
    assert [kind_of(m) for m in owner_mail] == ["booked"]
    assert "EMERGENCY" in str(owner_mail[0]["Subject"])
    # subscribing again restores maintenance mail
    assert "again" in (await command(h, "subscribe web-shop", user=OWNER))["text"]


async def test_check_config_rejects_mail_without_smtp_or_address() -> None:
    from bot.errors import ConfigError

    with pytest.raises(ConfigError, match="needs an smtp"):
        schedule_config(systems={"web-shop": {"announce_email": [LIST]}})
    with pytest.raises(ConfigError, match="has no people"):
        mail_config(1025, announce_email=["U0STAKE1"])
    with pytest.raises(ConfigError, match=r"smtp\.hostname: unknown key"):
        schedule_config(smtp={"hostname": "x", "from": "a@example.com"})
