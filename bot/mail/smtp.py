"""Handing one message to the SMTP relay with ``aiosmtplib``; errors become ``MailError`` (temporary or not).

A refused or dropped connection, a timeout and 4xx replies are temporary (the outbox retries later); a 5xx
reply to the sender or recipient is permanent. The password is read from the environment variable the
configuration names, at send time, and never logged.
"""

from __future__ import annotations

import os

import aiosmtplib

from bot.config import Smtp
from bot.errors import MailError


async def send(settings: Smtp, *, to: str, message: str) -> None:
    """Send ``message`` (a whole RFC 5322 text) to ``to`` through the relay; raises ``MailError``."""
    password = os.environ.get(settings.password_env, "") if settings.password_env else None
    if settings.password_env and not password:
        raise MailError(f"the SMTP password variable {settings.password_env} is not set", temporary=True)
    try:
        await aiosmtplib.send(
            message.encode("utf-8"),
            sender=settings.sender,
            recipients=[to],
            hostname=settings.host,
            port=settings.port,
            start_tls=settings.starttls,
            username=settings.username,
            password=password if settings.username else None,
            timeout=settings.timeout,
        )
    except aiosmtplib.SMTPResponseException as exc:
        # SMTPRecipientsRefused etc. carry codes too; 4xx = try again later, 5xx = the relay says never
        raise MailError(f"SMTP {exc.code}: {exc.message[:200]}", temporary=exc.code < 500) from exc
    except aiosmtplib.SMTPRecipientsRefused as exc:
        codes = [err.code for err in exc.recipients]
        raise MailError(f"SMTP refused the recipient ({codes})", temporary=all(c < 500 for c in codes)) from exc
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        raise MailError(f"SMTP relay unreachable: {type(exc).__name__}: {exc}", temporary=True) from exc
