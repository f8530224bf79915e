"""App Home: published when a person opens the tab, and again whenever a change involving them moves."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncApp

from bot.deps import Deps
from bot.workflows import home


def register(app: AsyncApp, deps: Deps) -> None:
    """Publish Home when a person opens the tab."""

    @app.event("app_home_opened")
    async def handle_home_opened(event: dict[str, Any]) -> None:
        if event.get("tab", "home") == "home" and event.get("user"):
            await home.refresh_home(deps, str(event["user"]))
