"""The fake Slack's files: registered files (downloadable with the bot token) and the
external upload flow that replaced files.upload.

Facts followed (docs.slack.dev files.getUploadURLExternal / files.completeUploadExternal,
and slack-sdk's `files_upload_v2`):
1. files.getUploadURLExternal(filename, length[, alt_txt, snippet_type]) -> upload_url,
   file_id. `length` 0 or missing: `missing_argument`; alt_txt over 1,000 chars:
   `alt_txt_too_large`; a snippet over 1 MB: `snippet_too_large`; over Slack's 1 GB per
   file: `file_upload_size_restricted`. Tier 4.
2. POST the bytes to upload_url, raw (what slack-sdk does) or as a multipart form; 200
   "OK - <length>" when they arrived. Here a body of another length than announced is a
   400 and the upload must be sent again.
3. files.completeUploadExternal(files=[{"id", "title"}], channel_id | channels, thread_ts,
   initial_comment, blocks — ignored when initial_comment is set) shares the files in one
   message; an id without uploaded bytes is `file_not_found`, an unknown channel
   `invalid_channel`. Without a channel the files stay private. Tier 4.
"""

from __future__ import annotations

import json
import mimetypes
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from aiohttp import web

from tests.fakes.slack_history import Call, Message, api_err, api_ok

MAX_FILE_BYTES = 1024**3  # Slack: 1 GB per file
MAX_SNIPPET_BYTES = 1024**2  # snippets: 1 MB
MAX_ALT_TXT = 1_000


@dataclass
class Upload:
    """An upload ticket from files.getUploadURLExternal."""

    file_id: str
    filename: str
    length: int
    alt_txt: str | None = None
    snippet_type: str | None = None
    data: bytes | None = None
    completed: bool = False


class FilesMixin:
    """Files of `FakeSlack` (which sets the attributes)."""

    calls: list[Call]
    files: dict[str, tuple[dict[str, Any], bytes]]
    uploads: dict[str, Upload]
    messages: dict[tuple[str, str], Message]
    base_url: str
    bot_user: str
    bot_id: str
    _file_seq: int
    # From FakeSlack / HistoryMixin:
    next_ts: Callable[[], str]
    channel_known: Callable[[str], bool]
    _store: Callable[[Message], Message]
    # From OAuthMixin:
    bot_in: Callable[[str], str]
    bot_id_in: Callable[[str], str]

    def _new_file_id(self) -> str:
        while True:
            self._file_seq += 1
            fid = f"F{self._file_seq:04d}"
            if fid not in self.files and fid not in self.uploads:
                return fid

    def _file_info(
        self, fid: str, name: str, size: int, mimetype: str, title: str | None = None
    ) -> dict[str, Any]:
        url = f"{self.base_url}/files/{fid}/{quote(name, safe='')}"
        return {
            "id": fid,
            "name": name,
            "title": title or name,
            "mimetype": mimetype,
            "filetype": (name.rsplit(".", 1)[-1].lower() if "." in name else "binary"),
            "size": size,
            "url_private": url,
            "url_private_download": url,
        }

    def add_file(
        self,
        name: str,
        data: bytes,
        *,
        mimetype: str = "application/octet-stream",
        check_file_info: bool = False,
    ) -> dict[str, Any]:
        """Register a downloadable file; returns its file object (as a message carries it)."""
        fid = self._new_file_id()
        info = self._file_info(fid, name, len(data), mimetype)
        self.files[fid] = (info, data)
        if check_file_info:
            return {"id": fid, "file_access": "check_file_info"}
        return dict(info)

    def attach_file(
        self,
        message: Message,
        name: str,
        data: bytes,
        mimetype: str = "application/octet-stream",
    ) -> dict[str, Any]:
        """Register a file and put it on `message` (e.g. a seeded one), as a user's upload."""
        info = self.add_file(name, data, mimetype=mimetype)
        message.files.append(info)
        if message.subtype is None and message.user != self.bot_in(message.channel):
            message.subtype = "file_share"
        return info

    def uploaded(self, file_id: str) -> bytes:
        """The bytes an upload (or add_file) left for `file_id`."""
        if file_id in self.files:
            return self.files[file_id][1]
        data = self.uploads[file_id].data
        if data is None:
            raise KeyError(file_id)
        return data

    # -- handlers ---------------------------------------------------------------

    async def _files_getUploadURLExternal(self, args: dict[str, Any]) -> web.Response:
        filename = str(args.get("filename") or "")
        if not filename:
            return api_err("invalid_arguments")
        try:
            length = int(str(args.get("length") or 0))
        except ValueError:
            return api_err("invalid_arguments")
        if length <= 0:
            return api_err("missing_argument")
        alt_txt = args.get("alt_txt")
        if alt_txt is not None and len(str(alt_txt)) > MAX_ALT_TXT:
            return api_err("alt_txt_too_large")
        snippet_type = args.get("snippet_type")
        if snippet_type and length > MAX_SNIPPET_BYTES:
            return api_err("snippet_too_large")
        if length > MAX_FILE_BYTES:
            return api_err("file_upload_size_restricted")
        fid = self._new_file_id()
        self.uploads[fid] = Upload(
            fid,
            filename,
            length,
            None if alt_txt is None else str(alt_txt),
            None if not snippet_type else str(snippet_type),
        )
        return api_ok(upload_url=f"{self.base_url}/upload/v1/{fid}", file_id=fid)

    async def _upload(self, request: web.Request) -> web.Response:
        """The upload URL: raw bytes, or a multipart form with the file in any field."""
        upload = self.uploads.get(request.match_info["id"])
        self.calls.append(
            Call("files.upload_url", {"id": request.match_info["id"]}, time.monotonic())
        )
        if upload is None or upload.completed:
            return web.Response(status=404, text="Not Found", content_type="text/plain")
        data: bytes | None = None
        if request.content_type.startswith("multipart/"):
            form = await request.post()
            for value in form.values():
                if isinstance(value, web.FileField):
                    data = value.file.read()
                    break
                if isinstance(value, (str, bytes)) and data is None:
                    data = value.encode() if isinstance(value, str) else value
        else:
            data = await request.read()
        if data is None or len(data) != upload.length:
            got = 0 if data is None else len(data)
            return web.Response(
                status=400,
                text=f"length mismatch: announced {upload.length}, got {got}",
                content_type="text/plain",
            )
        upload.data = data
        return web.Response(text=f"OK - {len(data)}", content_type="text/plain")

    def _mimetype(self, upload: Upload) -> str:
        if upload.snippet_type:
            return "text/plain"
        return mimetypes.guess_type(upload.filename)[0] or "application/octet-stream"

    async def _files_completeUploadExternal(self, args: dict[str, Any]) -> web.Response:
        raw = args.get("files")
        try:
            items = json.loads(raw) if isinstance(raw, str) else raw
        except json.JSONDecodeError:
            return api_err("invalid_arguments")
        if not isinstance(items, list) or not items:
            return api_err("invalid_arguments")
        tickets: list[tuple[Upload, str | None]] = []
        for item in items:
            if not isinstance(item, dict) or not item.get("id"):
                return api_err("invalid_arguments")
            upload = self.uploads.get(str(item["id"]))
            if upload is None or upload.data is None or upload.completed:
                return api_err("file_not_found")
            tickets.append((upload, item.get("title")))
        channels = [str(args["channel_id"])] if args.get("channel_id") else []
        if args.get("channels"):
            channels += [c for c in str(args["channels"]).split(",") if c]
        for channel in channels:
            if not self.channel_known(channel):
                return api_err("invalid_channel")
        infos = []
        for upload, title in tickets:
            assert upload.data is not None
            info = self._file_info(
                upload.file_id,
                upload.filename,
                len(upload.data),
                self._mimetype(upload),
                str(title) if title else None,
            )
            if upload.alt_txt:
                info["alt_txt"] = upload.alt_txt
            upload.completed = True
            self.files[upload.file_id] = (info, upload.data)
            infos.append(info)
        comment = str(args.get("initial_comment") or "")
        blocks = [] if comment else list(args.get("blocks") or [])
        thread_ts = str(args["thread_ts"]) if args.get("thread_ts") else None
        shares: dict[str, list[dict[str, Any]]] = {}
        for channel in channels:
            m = Message(
                channel,
                self.next_ts(),
                self.bot_in(channel),
                comment,
                thread_ts,
                blocks,
                self.bot_id_in(channel),
                files=[dict(i) for i in infos],
                subtype="file_share",
            )
            m.history.append(m.visible())
            self._store(m)
            shares[channel] = [{"ts": m.ts, **({"thread_ts": thread_ts} if thread_ts else {})}]
        out = []
        for info in infos:
            shown = dict(info)
            shown["channels"] = [c for c in channels if c.startswith("C")]
            shown["groups"] = [c for c in channels if c.startswith("G")]
            shown["ims"] = [c for c in channels if c.startswith("D")]
            if shares:
                shown["shares"] = {"public": shares}
            out.append(shown)
        return api_ok(files=out)
