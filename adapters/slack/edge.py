"""The Events API door: size, signature and shape are checked before Bolt sees a byte.

Bolt parses a body (and reads its headers) before it checks the signature, so a forged
request with a body it cannot parse used to raise inside Bolt: HTTP 500 and a traceback
for anyone on the internet. Here the order is: size (413), signature and 5-minute window
(401, constant-time compare), then JSON / form parsing (400) and the envelope's shape
(a Slack event that does not fit is logged once and acknowledged, so Slack does not retry).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import parse_qs

from aiohttp import web

from adapters.slack.shape import envelope_problem, event_label

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024  # Slack's largest payloads (modals, long messages) are far smaller
MAX_AGE_S = 5 * 60  # Slack's replay window
READ_CHUNK = 64 * 1024

Dispatch = Callable[[str, Mapping[str, str], str], Awaitable[web.Response]]


class Rejected(Exception):
    """A request refused before Bolt: `status` is the HTTP answer, `reason` what is logged."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def signature_ok(*, secret: str, timestamp: str, body: bytes, signature: str, now: float) -> bool:
    """Slack's v0 signature over `v0:{timestamp}:{body}`, and a timestamp within 5 minutes."""
    if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
        return False
    if abs(now - int(timestamp)) > MAX_AGE_S:
        return False
    base = b"v0:" + timestamp.encode() + b":" + body
    expected = "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    # compare_digest needs ASCII str on both sides; a non-ASCII header cannot match anyway.
    return signature.isascii() and hmac.compare_digest(expected, signature)


async def read_body(request: web.Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The raw body, refusing more than `limit` bytes (declared or actually sent)."""
    declared = request.content_length
    if declared is not None and declared > limit:
        raise Rejected(413, f"body of {declared} bytes declared")
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.read(READ_CHUNK):
        size += len(chunk)
        if size > limit:
            raise Rejected(413, f"body over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def parse(body: bytes, content_type: str) -> dict[str, Any]:
    """The payload as Bolt will see it: a JSON object, or a form (with a JSON `payload`)."""
    try:
        text = body.decode("utf-8")
        if content_type == "application/x-www-form-urlencoded":
            form = {k: v[0] for k, v in parse_qs(text, keep_blank_values=True).items()}
            payload: Any = json.loads(form["payload"]) if "payload" in form else form
        else:
            payload = json.loads(text)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise Rejected(400, f"unparseable body: {type(exc).__name__}") from None
    if not isinstance(payload, dict):
        raise Rejected(400, f"payload is a {type(payload).__name__}, not an object")
    return payload


async def check(request: web.Request, *, secret: str) -> tuple[str, dict[str, Any]]:
    """The verified body and its payload; raises Rejected with the status to answer."""
    body = await read_body(request)
    ok = signature_ok(
        secret=secret,
        timestamp=request.headers.get("X-Slack-Request-Timestamp", ""),
        body=body,
        signature=request.headers.get("X-Slack-Signature", ""),
        now=time.time(),
    )
    if not ok:
        raise Rejected(401, "missing, forged or stale signature")
    return body.decode("utf-8", errors="replace"), parse(body, request.content_type)


def events_handler(*, secret: str, dispatch: Dispatch) -> Callable[..., Awaitable[web.Response]]:
    """An aiohttp handler for /slack/events that lets only well-formed, signed requests
    through to `dispatch(body, headers, query)` (Bolt, which re-checks the signature)."""

    async def handle(request: web.Request) -> web.Response:
        try:
            body, payload = await check(request, secret=secret)
        except Rejected as exc:
            # Probes and forgeries are routine on a public URL: one line, no traceback.
            log.info("slack: refused a request (%d): %s", exc.status, exc.reason)
            return web.Response(status=exc.status, text=exc.reason)
        problem = envelope_problem(payload)
        if problem is not None:
            status, reason = problem
            # Signed, yet not a shape we can use. An event is acknowledged (200) so Slack
            # does not retry it; anything else is a bad request.
            log.warning("slack: dropped %s: %s", event_label(payload), reason)
            return web.Response(status=status)
        return await dispatch(body, request.headers, request.query_string)

    return handle
