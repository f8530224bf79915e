"""One error hierarchy. Every error carries a message fit to show a person (in Slack or the CLI).

Library errors are wrapped with ``raise ... from exc`` so tracebacks stay in the logs; the bolt error
handler and the CLI only ever show ``user_message``.
"""

from __future__ import annotations


class PatchwardenError(Exception):
    """Base of every error patchwarden raises on purpose."""

    def __init__(self, message: str, *, user_message: str | None = None) -> None:
        super().__init__(message)
        self.user_message = user_message or message


class ConfigError(PatchwardenError):
    """The configuration file or environment is invalid; startup must stop."""


class MissingSecretError(ConfigError):
    """A required secret (token, signing secret) is missing or empty."""


class DatabaseNotReadyError(PatchwardenError):
    """The database is unreachable or its schema is not at the migration head."""


class UsageError(PatchwardenError):
    """A command was typed wrongly; the message includes the usage."""


class InputError(PatchwardenError):
    """A form field or argument holds an invalid value.

    ``field_errors`` maps a form block id to the message shown inline under that field.
    """

    def __init__(self, message: str, *, field_errors: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.field_errors = field_errors or {}


class NotFoundError(PatchwardenError):
    """The named change, system, advisory or window does not exist."""


class PermissionDeniedError(PatchwardenError):
    """The person may not do this (not eligible, self-approval, not an operator)."""


class IllegalTransitionError(PatchwardenError):
    """The lifecycle does not allow this step from the change's current state."""


class ConflictError(PatchwardenError):
    """Someone else changed the same record first; nothing was written."""


class AlreadyDoneError(PatchwardenError):
    """The request repeats one already recorded (double click, repeated command)."""


class AuditChainError(PatchwardenError):
    """The update control log failed verification."""


class SchedulingError(PatchwardenError):
    """A maintenance window was refused by a scheduling rule."""


class ExecutorError(PatchwardenError):
    """An executor failed, timed out or was misconfigured."""


class FeedError(PatchwardenError):
    """An advisory feed could not be read or a document was malformed."""


class VerificationError(PatchwardenError):
    """A hash or signature check failed (artifact, advisory document, checkpoint)."""


class CredentialError(PatchwardenError):
    """A just-in-time credential could not be issued or revoked; the run must not start without it."""


class PortInUseError(PatchwardenError):
    """The port to listen on is taken by another process; the CLI says which and exits 2."""

    def __init__(self, port: int) -> None:
        super().__init__(
            f"port {port} in use",
            user_message=f"Port {port} is already in use (another sandbox or bot?): stop it, or pick another "
            "port with --port, e.g. --port 3001.",
        )
        self.port = port


class OutboundRefusedError(PatchwardenError):
    """The outbound-URL policy refuses a URL (internal address, credentials, cross-origin redirect)."""


class MailError(PatchwardenError):
    """An e-mail could not be handed to the SMTP relay. ``temporary`` errors are retried, others are not."""

    def __init__(self, message: str, *, temporary: bool) -> None:
        super().__init__(message)
        self.temporary = temporary
