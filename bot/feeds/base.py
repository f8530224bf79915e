"""The feed plugin contract, and the parsing helpers every feed shares (timestamps, content hashes).

Format semantics live in the advisory domain: OSV in :mod:`bot.advisories.osv`, severity in
:mod:`bot.advisories.severity`, CSAF in :mod:`bot.feeds.csaf_map`.

A feed is a class registered under the entry point group ``patchwarden.feeds``; the entry point name is
the feed name used as the key under ``feeds:`` in the configuration. Installed is not enabled: only the
feeds named in the configuration are created (see :mod:`bot.feeds.registry`).

Contract for implementers:

* ``name`` is the entry point name; ``Options`` a pydantic model (subclass :class:`FeedOptions`, which
  forbids unknown keys and carries the per-feed ``proxy`` / ``ca_bundle``).
* ``_poll(cursor=...)`` reads whatever is new since ``cursor`` and returns a :class:`FeedBatch`. It must be
  all-or-nothing per document: a document that cannot be verified or parsed goes into ``quarantined`` with
  a reason and is *not* in ``advisories``; the poll goes on. Transient failures (network, 5xx after retries)
  raise ``FeedError`` so the caller keeps the old cursor and retries the whole poll later.
* The returned ``cursor`` is opaque state the caller persists and passes back; the caller stores it only
  after it has stored the batch, so a crash between the two re-reads, never skips.
* Plugins get frozen models and an :class:`~bot.feeds.http.HttpSettings`; they never see a database
  session or a Slack client.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from bot.advisories.model import Advisory
from bot.config import Duration, format_duration
from bot.errors import ConfigError, FeedError
from bot.feeds.http import HttpSettings

log = logging.getLogger(__name__)


class Quarantined(BaseModel):
    """A document that was refused: which feed, which document (id, path or URL), and why."""

    model_config = ConfigDict(frozen=True)

    source: str
    document: str
    reason: str


class ExploitScore(BaseModel):
    """An exploit-prediction score of one CVE (FIRST EPSS): probability and percentile, both 0..1."""

    model_config = ConfigDict(frozen=True)

    cve: str
    epss: float
    percentile: float
    score_date: str  # YYYY-MM-DD


class FeedBatch(BaseModel):
    """The result of one poll: accepted advisories, refused documents, and the cursor for the next poll.

    ``scores`` (EPSS) is a complete snapshot when not empty: it replaces the stored scores.
    """

    model_config = ConfigDict(frozen=True)

    advisories: tuple[Advisory, ...] = ()
    quarantined: tuple[Quarantined, ...] = ()
    cursor: dict[str, str] = {}
    scores: tuple[ExploitScore, ...] = ()
    unchanged: int = 0  # documents the feed skipped because they are byte-identical to the last poll's


class FeedOptions(BaseModel):
    """Options every feed accepts; feeds subclass this. Unknown keys are configuration errors."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    proxy: str | None = None
    ca_bundle: Path | None = None
    poll_timeout: Duration = timedelta(minutes=30)  # a hung provider must not stall the poller forever


class Feed(ABC):
    """Base class of every advisory feed plugin (see the module docstring for the contract)."""

    name: ClassVar[str]
    Options: ClassVar[type[FeedOptions]]

    def __init__(self, options: Mapping[str, Any], *, key_path: str, http: HttpSettings) -> None:
        """Validate ``options`` with ``Options``; raise ``ConfigError`` naming ``key_path`` on any error."""
        self.key_path = key_path
        try:
            self.options = self.Options.model_validate(dict(options))
        except ValidationError as exc:
            details = "; ".join(
                f"{'.'.join([key_path, *(str(p) for p in err['loc'])])}: "
                + ("unknown key" if err["type"] == "extra_forbidden" else err["msg"])
                for err in exc.errors()
            )
            raise ConfigError(f"invalid feed options: {details}") from exc
        overrides: dict[str, Any] = {}
        if self.options.proxy is not None:
            overrides["proxy"] = self.options.proxy
        if self.options.ca_bundle is not None:
            overrides["ca_bundle"] = self.options.ca_bundle
        self.http = http.model_copy(update=overrides)
        self._check()

    def _check(self) -> None:  # noqa: B027 - optional hook, deliberately a no-op by default
        """Hook for checks beyond the Options model (raise ``ConfigError``); runs at startup."""

    async def poll(self, *, cursor: Mapping[str, str]) -> FeedBatch:
        """Read what is new since ``cursor`` within ``poll_timeout``; errors become a safe ``FeedError``."""
        try:
            async with asyncio.timeout(self.options.poll_timeout.total_seconds()):
                return await self._poll(cursor=dict(cursor))
        except FeedError:
            raise
        except TimeoutError as exc:
            raise FeedError(
                f"feed {self.name}: poll timed out after {format_duration(self.options.poll_timeout)}"
            ) from exc
        except Exception as exc:
            log.exception("feed %s: poll failed", self.name)
            raise FeedError(
                f"feed {self.name}: poll failed ({type(exc).__name__})",
                user_message=f"The advisory feed {self.name} failed; see the bot's log for details.",
            ) from exc

    @abstractmethod
    async def _poll(self, *, cursor: dict[str, str]) -> FeedBatch:
        """Fetch and parse; return accepted advisories, quarantined documents and the next cursor."""


# --- shared parsing helpers ----------------------------------------------------------------------
