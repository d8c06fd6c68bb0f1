"""The fake Discord's gateway: HELLO, IDENTIFY -> READY + GUILD_CREATE, RESUME -> RESUMED.

Tests can drop every connection (close code 4000, which clients may resume), refuse new
connections for a while (the upgrade is answered 503, as during a gateway outage), make
RESUME fail with INVALID_SESSION (`d: false`, so the client must IDENTIFY afresh), and
send any frame, well-formed or not. Mixed into FakeDiscord, which provides the users, the
guild payload and the URLs.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from typing import Any

from aiohttp import WSMsgType, web

TOKEN = "fake-discord-bot-token"
APP_ID = "900000000000000002"
BOT_ID = "900000000000000001"
GUILD = "800000000000000001"


class GatewayMixin:
    """Gateway state and handlers; FakeDiscord calls `_init_gateway()` in its __init__."""

    users: dict[str, dict[str, Any]]
    gateway_url: str

    def _guild(self) -> dict[str, Any]:
        raise NotImplementedError

    def _init_gateway(self) -> None:
        self._sockets: list[web.WebSocketResponse] = []
        self._all_sockets: set[web.WebSocketResponse] = set()
        self._seq = 0
        self._sessions = itertools.count(1)
        self.session_id = ""
        self.identified = asyncio.Event()  # set on every READY sent
        self.resumed = asyncio.Event()  # set on every RESUMED sent
        self.identifies = 0
        self.resumes = 0  # RESUMEs answered with RESUMED
        self.refused = 0  # connection attempts refused while the gateway is "down"
        self.refuse_until = 0.0  # time.monotonic() before which connections are refused
        self.resume_ok = True  # False: RESUME gets INVALID_SESSION (d: false)

    # -- what tests do -----------------------------------------------------------

    async def drop_connections(self, *, refuse_for: float = 0.0) -> None:
        """Close every gateway connection (4000: resumable) and refuse new ones for a while."""
        self.refuse_until = time.monotonic() + refuse_for
        self.identified.clear()
        self.resumed.clear()
        for ws in list(self._all_sockets):
            with contextlib.suppress(Exception):
                await ws.close(code=4000, message=b"Unknown error")

    async def send_raw(self, frame: str) -> None:
        """Send a text frame as is to every identified connection (for hostile payloads)."""
        for ws in list(self._sockets):
            with contextlib.suppress(ConnectionResetError):
                await ws.send_str(frame)

    async def dispatch(self, event: str, data: Any) -> None:
        """Send one event to every identified gateway connection."""
        for ws in list(self._sockets):
            with contextlib.suppress(ConnectionResetError):
                await self._send(ws, event, data)

    async def _close_gateway(self) -> None:
        for ws in list(self._all_sockets):
            with contextlib.suppress(Exception):
                await ws.close()

    # -- the protocol ------------------------------------------------------------

    async def _send(self, ws: web.WebSocketResponse, event: str, data: Any) -> None:
        self._seq += 1
        await ws.send_str(json.dumps({"op": 0, "t": event, "s": self._seq, "d": data}))

    async def _gateway(self, request: web.Request) -> web.StreamResponse:
        if time.monotonic() < self.refuse_until:
            self.refused += 1
            return web.Response(status=503, text="gateway unavailable")
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._all_sockets.add(ws)
        await ws.send_str(json.dumps({"op": 10, "d": {"heartbeat_interval": 41250}}))
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                payload = json.loads(msg.data)
                if not await self._on_op(ws, payload.get("op"), payload.get("d")):
                    break
        finally:
            self._all_sockets.discard(ws)
            if ws in self._sockets:
                self._sockets.remove(ws)
        return ws

    async def _on_op(self, ws: web.WebSocketResponse, op: Any, d: Any) -> bool:
        """Answer one client frame; False when the connection is to end."""
        if op == 1:
            await ws.send_str(json.dumps({"op": 11}))
        elif op in (2, 6) and (d or {}).get("token") != TOKEN:
            await ws.close(code=4004, message=b"Authentication failed.")
            return False
        elif op == 2:
            await self._identify(ws)
        elif op == 6:
            if not self.resume_ok or d.get("session_id") != self.session_id:
                # Discord waits 1-5 s before INVALID_SESSION; the client then re-IDENTIFYs.
                await ws.send_str(json.dumps({"op": 9, "d": False}))
                return True
            self._sockets.append(ws)
            self.resumes += 1
            await self._send(ws, "RESUMED", {"_trace": ["fake-gateway"]})
            self.resumed.set()
        return True

    async def _identify(self, ws: web.WebSocketResponse) -> None:
        self.identifies += 1
        self.session_id = f"fake-session-{next(self._sessions)}"
        self._sockets.append(ws)
        await self._send(
            ws,
            "READY",
            {
                "v": 10,
                "user": self.users[BOT_ID],
                "guilds": [{"id": GUILD, "unavailable": True}],
                "session_id": self.session_id,
                "resume_gateway_url": self.gateway_url,
                "application": {"id": APP_ID, "flags": 0},
                "private_channels": [],
                "relationships": [],
            },
        )
        await self._send(ws, "GUILD_CREATE", self._guild())
        self.identified.set()
