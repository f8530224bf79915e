"""Unicode hygiene for text people typed or feeds sent, before any renderer or read model sees it."""

from __future__ import annotations

import re

# Bidi overrides/isolates and zero-width characters: invisible, they make a title read as something else.
_INVISIBLE = re.compile("[\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff\u061c\u180e]")


def strip_invisible(text: str) -> str:
    """Remove bidi-override and zero-width characters (display spoofing) from ``text``."""
    return _INVISIBLE.sub("", text)
