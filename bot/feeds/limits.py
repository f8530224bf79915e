"""Limits for hostile documents: every feed document is parsed in isolation, bounded in size and depth.

A feed is as strong as its worst document. One record nested 100,000 deep (``RecursionError``), a zip
whose headers lie about sizes (``BadZipFile`` on a CRC mismatch, or a size that refuses the whole
archive) must cost that one document, never the poll: the caller quarantines it and goes on, and the
cursor moves.

1. :func:`load_json` refuses more than ``max_bytes``, invalid JSON, and nesting deeper than ``max_depth``
   (measured without recursion, after the C parser; its own recursion guard is turned into a refusal).
2. :func:`zip_members` decompresses each member on its own, bounded by ``member_limit`` whatever its
   header claims, and stops at ``total_limit`` bytes actually decompressed; a broken member is returned
   as a :class:`~bot.errors.FeedError` in place of its bytes.
"""

from __future__ import annotations

import io
import json
import zipfile
import zlib
from collections.abc import Iterator
from typing import Any

from bot.errors import FeedError

MAX_DEPTH = 64  # OSV, KEV and CSAF documents nest about ten deep; product trees a few more
MAX_DOCUMENT_BYTES = 64 * 1024 * 1024


def depth(value: Any) -> int:
    """The nesting depth of a parsed JSON value (a scalar is 0), measured without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        level += 1
        deepest = max(deepest, level)
        stack.extend((child, level) for child in children if isinstance(child, dict | list))
    return deepest


def load_json(raw: bytes | str, *, where: str, max_bytes: int = MAX_DOCUMENT_BYTES, max_depth: int = MAX_DEPTH) -> Any:
    """Parse one JSON document within the limits; raise ``FeedError`` (naming ``where``) otherwise."""
    if len(raw) > max_bytes:
        raise FeedError(f"{where}: {len(raw)} bytes exceed the {max_bytes}-byte document limit")
    try:
        data = json.loads(raw)
    except RecursionError as exc:
        raise FeedError(f"{where}: nested deeper than {max_depth} levels") from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FeedError(f"{where}: not valid JSON: {exc}") from exc
    if depth(data) > max_depth:
        raise FeedError(f"{where}: nested deeper than {max_depth} levels")
    return data


def zip_members(
    data: bytes, *, where: str, suffix: str = ".json", member_limit: int, total_limit: int
) -> Iterator[tuple[str, bytes | FeedError]]:
    """``(name, bytes)`` per member ending in ``suffix`` (sorted), or ``(name, FeedError)`` for a bad one.

    Raises ``FeedError`` only if ``data`` is not a zip at all.
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError) as exc:
        raise FeedError(f"{where}: not a readable zip file") from exc
    total = 0
    with archive:
        infos = sorted(
            (i for i in archive.infolist() if not i.is_dir() and i.filename.endswith(suffix)),
            key=lambda i: i.filename,
        )
        for info in infos:
            name = info.filename
            if total > total_limit:
                yield name, FeedError(f"{where}: more than {total_limit} bytes decompressed; member not read")
                continue
            try:
                with archive.open(info) as member:
                    raw = member.read(member_limit + 1)  # the header's size is not trusted
            except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, ValueError, OSError) as exc:
                yield name, FeedError(f"{name}: broken zip member ({type(exc).__name__})")
                continue
            if len(raw) > member_limit:
                yield name, FeedError(f"{name}: larger than the {member_limit}-byte document limit")
                continue
            total += len(raw)
            yield name, raw
