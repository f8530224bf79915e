"""E-mail to system users: composing announcements (plain + HTML + ``.ics``) and handing them to SMTP.

Mail travels through the same outbox as Slack posts (``storage.outbox`` rows with ``mail_to`` set), so
it is queued in the event's transaction, sent once, retried and paced. All mail shares one pacing lane.
"""

from __future__ import annotations

LANE = "smtp"  # the outbox ``channel`` of every e-mail row: one pacing lane for the relay
