"""Publishing App Home tabs. Failures are logged, never raised: Home is a convenience view."""

from __future__ import annotations

import logging

from slack_sdk.errors import SlackApiError

from bot.blocks import home as home_blocks
from bot.deps import Deps

log = logging.getLogger(__name__)


async def publish(deps: Deps, data: home_blocks.HomeData) -> None:
    """Publish the Home tab of ``data.user``."""
    try:
        await deps.client.views_publish(user_id=data.user, view=home_blocks.home_view(deps.config, data))
    except SlackApiError as exc:
        log.warning("home of %s not published: %s", data.user, exc.response.get("error"))
