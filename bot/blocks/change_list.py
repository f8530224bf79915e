"""The ``/patch list`` reply: one page of changes, and the command for the next page while there is one."""

from __future__ import annotations

from collections.abc import Sequence

from bot.blocks.common import escape
from bot.views import state_label
from storage.models import Change

PER_PAGE = 30


def change_list_text(rows: Sequence[Change], *, scope: str, page: int, total: int, per_page: int = PER_PAGE) -> str:
    """Every change is reachable: the head says which of how many are shown, the tail names the next page."""
    if total == 0:
        return f"No changes ({scope})."
    pages = -(-total // per_page)
    if not rows:
        return f"*Changes ({scope})*: there are {total}, on {pages} page(s); page {page} is past the end."
    first = (page - 1) * per_page + 1
    head = f"*Changes ({scope})*: {first}–{first + len(rows) - 1} of {total}" + (
        f" (page {page} of {pages})" if pages > 1 else ""
    )
    lines = [f"• *{c.key}* {escape(c.title)} — {state_label(c.state)} ({', '.join(c.systems)})" for c in rows]
    if page < pages:
        lines.append(f"Next {min(per_page, total - page * per_page)}: `/patch list {scope} {page + 1}`")
    return "\n".join([head, *lines])
