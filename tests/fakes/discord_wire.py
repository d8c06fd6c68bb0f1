"""Wire-level helpers of the fake Discord: JSON answers, Discord's error bodies, uploads.

Uploads follow Discord's "Uploading Files": a `multipart/form-data` body with `payload_json`
and `files[n]` parts. The part's own content type is kept unless it says nothing
(`application/octet-stream`, which discord.py always sends): Discord then tells the type
from the file, here from its name. Size limits (413, code 40005 "Request entity too large"):
each file at most 10 MiB (Discord's default since January 2025; boost tier 2 guilds 50 MiB,
tier 3 100 MiB, as in discord.py 2.7's `Guild._PREMIUM_GUILD_LIMITS`), and the whole request
at most 25 MiB (Create Message's documented maximum request size).
"""

from __future__ import annotations

import json
import mimetypes
import re
import struct
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from aiohttp import BodyPartReader, web

CHANNEL = "700000000000000001"
MAX_CONTENT = 2000
MAX_THREAD_NAME = 100
MIB = 1024 * 1024
FILE_LIMITS = {0: 10 * MIB, 1: 10 * MIB, 2: 50 * MIB, 3: 100 * MIB}  # by premium tier
MAX_REQUEST = 25 * MIB
OCTET = "application/octet-stream"

# Message flags (https://discord.com/developers/docs/resources/message#message-object-message-flags)
SUPPRESS_EMBEDS = 1 << 2
EPHEMERAL = 1 << 6
LOADING = 1 << 7
SUPPRESS_NOTIFICATIONS = 1 << 12
# What a create may set (SUPPRESS_EMBEDS, SUPPRESS_NOTIFICATIONS, IS_VOICE_MESSAGE,
# IS_COMPONENTS_V2); an edit may only toggle SUPPRESS_EMBEDS.
CREATE_FLAGS = SUPPRESS_EMBEDS | SUPPRESS_NOTIFICATIONS | (1 << 13) | (1 << 15)

_FILES_FIELD = re.compile(r"files\[(\d+)\]$")


@dataclass
class Upload:
    """One `files[n]` part of a multipart request."""

    index: int
    filename: str
    data: bytes
    content_type: str


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    # discord.py wants exactly application/json (no charset) to parse the body.
    h = {"Content-Type": "application/json", **(headers or {})}
    return web.Response(body=json.dumps(data).encode(), status=status, headers=h)


def error(
    status: int, code: int, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    """Discord's error body: `{"code": ..., "message": ...}`."""
    return json_response({"code": code, "message": message}, status, headers)


def invalid_form(field: str, text: str, headers: dict[str, str] | None = None) -> web.Response:
    """400 with code 50035 and the per-field `errors` object Discord adds."""
    body = {
        "code": 50035,
        "message": "Invalid Form Body",
        "errors": {field: {"_errors": [{"code": "BASE_TYPE_BAD", "message": text}]}},
    }
    return json_response(body, 400, headers)


def too_large() -> web.Response:
    return error(413, 40005, "Request entity too large")


def missing_access() -> web.Response:
    return error(403, 50001, "Missing Access")


def missing_permissions() -> web.Response:
    return error(403, 50013, "Missing Permissions")


def content_error(text: str, headers: dict[str, str] | None = None) -> web.Response | None:
    """The 400 Discord gives for content over 2,000 characters, else None."""
    if len(text) > MAX_CONTENT:
        return invalid_form(
            "content", f"Must be {MAX_CONTENT} or fewer in length.", headers=headers
        )
    return None


async def read_body(request: web.Request) -> tuple[Any, list[Upload]]:
    """The JSON body (or `payload_json`) and the uploaded files of a request."""
    if not request.content_type.startswith("multipart/"):
        raw = await request.read()
        return (json.loads(raw) if raw else None), []
    payload: Any = {}
    files: list[Upload] = []
    reader = await request.multipart()
    async for part in reader:
        if not isinstance(part, BodyPartReader):
            continue
        if part.name == "payload_json":
            payload = json.loads(await part.text())
            continue
        match = _FILES_FIELD.match(part.name or "")
        index = int(match.group(1)) if match else len(files)
        data = bytes(await part.read())
        ctype = part.headers.get("Content-Type", OCTET).split(";")[0].strip()
        files.append(Upload(index, part.filename or "file", data, ctype))
    return payload, files


def upload_error(files: list[Upload], limit: int) -> web.Response | None:
    """413 when one file is over `limit` or all of them over the request maximum."""
    if any(len(f.data) > limit for f in files) or sum(len(f.data) for f in files) > MAX_REQUEST:
        return too_large()
    return None


def content_type_of(upload: Upload) -> str | None:
    """The attachment's media type as Discord reports it."""
    if upload.content_type and upload.content_type != OCTET:
        return upload.content_type
    guessed, _ = mimetypes.guess_type(upload.filename)
    return guessed


def image_size(data: bytes) -> tuple[int, int] | None:
    """Width and height of a PNG (Discord reports them for images)."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR" and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return int(width), int(height)
    return None


def attachment_meta(payload: Any, index: int) -> dict[str, Any]:
    """The `attachments` entry of a request that describes `files[index]`."""
    for item in (payload or {}).get("attachments") or []:
        if isinstance(item, dict) and str(item.get("id")) == str(index):
            return item
    return {}


class RateLimitMixin:
    """Discord's per-route buckets and global limit, as 429s with Discord's headers."""

    channel_limit: int
    channel_window: float
    global_limit: int | None
    global_window: float
    forced_429: deque[float]
    _writes: dict[str, deque[float]]
    _global: deque[float]

    def _limited(self, key: str | None) -> web.Response | None:
        """Count one write against the buckets; a 429 response when over a limit."""
        now = time.monotonic()
        if self.forced_429:
            retry = self.forced_429.popleft()
            return self._too_many(retry, key or "forced", False)
        if self.global_limit is not None:
            g = self._global
            while g and g[0] <= now - self.global_window:
                g.popleft()
            if len(g) >= self.global_limit:
                return self._too_many(g[0] + self.global_window - now, "global", True)
            g.append(now)
        if key is None:
            return None
        w = self._writes.setdefault(key, deque())
        while w and w[0] <= now - self.channel_window:
            w.popleft()
        if len(w) >= self.channel_limit:
            return self._too_many(w[0] + self.channel_window - now, key, False)
        w.append(now)
        return None

    def _ratelimit_headers(self, key: str) -> dict[str, str]:
        now = time.monotonic()
        w = self._writes.get(key, deque())
        reset_after = (w[0] + self.channel_window - now) if w else self.channel_window
        return {
            "X-RateLimit-Limit": str(self.channel_limit),
            "X-RateLimit-Remaining": str(max(0, self.channel_limit - len(w))),
            "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
            "X-RateLimit-Reset-After": f"{max(reset_after, 0.001):.3f}",
            # One hash per route, as Discord sends: the channel is the major parameter.
            "X-RateLimit-Bucket": "messages-bucket",
        }

    def _too_many(self, retry: float, key: str, is_global: bool) -> web.Response:
        retry = max(retry, 0.001)
        headers = {
            "Retry-After": f"{retry:.3f}",
            "Via": "1.1 google",
            "X-RateLimit-Limit": str(self.channel_limit),
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset-After": f"{retry:.3f}",
            # One hash per route, as Discord sends: the channel is the major parameter.
            "X-RateLimit-Bucket": "messages-bucket",
            "X-RateLimit-Scope": "user",
        }
        if is_global:
            headers["X-RateLimit-Global"] = "true"
        body = {"message": "You are being rate limited.", "retry_after": retry, "global": is_global}
        return json_response(body, 429, headers)
