"""The fake Slack's files API: ``files_upload_v2`` gets an upload URL, POSTs the bytes, then completes."""

from __future__ import annotations

import itertools
import json
from typing import Any

from aiohttp import web

from bot.sandbox.fake_model import Message


class FakeFiles:
    """Mixed into ``FakeSlack``: uploaded files by id, shared as messages when the upload completes."""

    files: dict[str, dict[str, Any]]  # file id -> {name, title, length, content}
    messages: dict[str, Message]
    url: str
    _ts: itertools.count[int]

    def _next_ts(self) -> str:
        raise NotImplementedError

    async def _files_getUploadURLExternal(self, p: dict[str, Any]) -> web.Response:
        if not p.get("filename") or not str(p.get("length", "")).isdigit():
            return web.json_response({"ok": False, "error": "invalid_arguments"})
        file_id = f"F{next(self._ts):08d}"
        self.files[file_id] = {"name": p["filename"], "length": int(p["length"]), "content": None}
        return web.json_response({"ok": True, "file_id": file_id, "upload_url": f"{self.url}/upload/{file_id}"})

    async def _upload(self, request: web.Request) -> web.Response:
        entry = self.files.get(request.match_info["file_id"])
        if entry is None:
            return web.Response(status=404, text="unknown upload")
        entry["content"] = await request.read()
        return web.Response(text=f"OK - {len(entry['content'])}")

    async def _files_completeUploadExternal(self, p: dict[str, Any]) -> web.Response:
        items = p.get("files")
        items = json.loads(items) if isinstance(items, str) else items or []
        shared = []
        for item in items:
            entry = self.files.get(item.get("id", ""))
            if entry is None or entry["content"] is None:
                return web.json_response({"ok": False, "error": "file_not_found"})
            entry["title"] = item.get("title") or entry["name"]
            shared.append(
                {
                    "id": item["id"],
                    "name": entry["name"],
                    "title": entry["title"],
                    "url_private": f"{self.url}/files/{item['id']}",
                }
            )
        channel = p.get("channel_id")
        if channel:
            ts = self._next_ts()
            self.messages[ts] = Message(channel, ts, p.get("initial_comment", ""), [], p.get("thread_ts"), files=shared)
        return web.json_response({"ok": True, "files": shared})

    async def _file(self, request: web.Request) -> web.Response:
        entry = self.files.get(request.match_info["file_id"])
        if entry is None or entry["content"] is None:
            return web.Response(status=404, text="no such file")
        kind = "image/png" if entry["name"].endswith(".png") else "application/octet-stream"
        return web.Response(body=entry["content"], content_type=kind)
