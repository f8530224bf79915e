"""The calendar part of an announcement e-mail: an iTIP (RFC 5546) ``REQUEST`` or ``CANCEL``.

One UID per change and stage (a rescheduled booking is a new window row, but for the reader's calendar it
is the same event moving), and a SEQUENCE that grows with time, so calendar apps apply each update
in order and a cancellation removes the event they already have.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from icalendar import Calendar, Event, vCalAddress, vText

UID_DOMAIN = "patchwarden"


class Method(StrEnum):
    REQUEST = "REQUEST"
    CANCEL = "CANCEL"


def uid_for(change_id: int, stage: str) -> str:
    """The event UID shared by every invitation about one change's stage."""
    return f"change-{change_id}-{stage}@{UID_DOMAIN}"


def invitation(
    *,
    method: Method,
    uid: str,
    summary: str,
    description: str,
    start: datetime,
    end: datetime,
    now: datetime,
    organizer: str,
    attendee: str,
    location: str,
) -> bytes:
    """One VEVENT in a VCALENDAR with ``METHOD``; times in UTC (every calendar converts to local time)."""
    cal = Calendar.new(prodid="-//patchwarden//maintenance announcement//EN")
    cal.add("method", method.value)
    event = Event.new(uid=uid, summary=summary[:250], description=description, start=start, end=end, stamp=now)
    event.add("sequence", int(now.timestamp()))  # grows with every update; calendars keep the newest
    event.add("status", "CANCELLED" if method is Method.CANCEL else "CONFIRMED")
    event.add("location", location)
    event.add("transp", "OPAQUE")
    org = vCalAddress(f"mailto:{organizer}")
    org.params["cn"] = vText("patchwarden")
    event.add("organizer", org)
    who = vCalAddress(f"mailto:{attendee}")
    who.params["role"] = vText("OPT-PARTICIPANT")
    who.params["rsvp"] = vText("FALSE")
    event.add("attendee", who)
    cal.add_component(event)
    return bytes(cal.to_ical())
