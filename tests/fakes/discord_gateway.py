"""The fake Discord's gateway: HELLO, IDENTIFY -> READY + GUILD_CREATE, RESUME -> RESUMED.

Tests can drop every connection (close code 4000, which clients may resume), refuse new
connections for a while (the upgrade is answered 503, as during a gateway outage), make
RESUME fail with INVALID_SESSION (`d: false`, so the client must IDENTIFY afresh), and
send any frame, well-formed or not. Mixed into FakeDiscord, which provides the users, the
guild payloads and the URLs.

Sharding, as Discord does it: `GET /gateway/bot` (FakeDiscord routes it here) answers the
gateway URL, `gateway_shards` (the recommended count) and a `session_start_limit` with
`max_concurrency`. An IDENTIFY with `shard: [id, count]` gets a READY carrying that `shard`
and the guilds whose shard is `id` ((guild_id >> 22) % count), and from then on only the
events of those guilds (events without a guild, such as DMs, go to shard 0). An id outside
0..count-1 is closed with 4010 (Invalid shard), as is a second live session of a shard
already connected (Discord's docs do not say what it does then; here it makes overlapping
DISCORD_SHARD_IDS fail loudly); a session over `max_guilds_per_session` guilds is closed with
4011 (Sharding required). A connection without `shard` sees every guild, as before.
`delivered` records which shard each event went to; `connected_shards()` the live ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

TOKEN = "fake-discord-bot-token"
APP_ID = "900000000000000002"
BOT_ID = "900000000000000001"
GUILD = "800000000000000001"

# None: a connection that sent no `shard` in its IDENTIFY (it sees every guild).
Shard = tuple[int, int] | None


def shard_of(guild_id: str | int, count: int) -> int:
    """The shard Discord sends a guild's events to."""
    return (int(guild_id) >> 22) % count


def guild_of(event: str, data: Any) -> str | None:
    """The guild an event belongs to; None for DMs and payloads that name none."""
    if not isinstance(data, dict):
        return None
    gid = data.get("id") if event in ("GUILD_CREATE", "GUILD_UPDATE", "GUILD_DELETE") else None
    gid = gid or data.get("guild_id")
    return str(gid) if gid else None


def _valid_shard(shard: Any) -> bool:
    return (
        isinstance(shard, list)
        and len(shard) == 2
        and all(isinstance(n, int) and not isinstance(n, bool) for n in shard)
        and shard[1] >= 1
        and 0 <= shard[0] < shard[1]
    )


class GatewayMixin:
    """Gateway state and handlers; FakeDiscord calls `_init_gateway()` in its __init__."""

    users: dict[str, dict[str, Any]]
    gateway_url: str

    if TYPE_CHECKING:  # provided by FakeDiscord

        @property
        def guild_ids(self) -> list[str]: ...

    def _guild(self, gid: str) -> dict[str, Any]:
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
        # Set to an unset Event: READY waits for it (a gateway slow to connect every shard).
        self.hold_ready: asyncio.Event | None = None
        # Sharding (see the module docstring).
        self.gateway_shards = 1  # the count GET /gateway/bot recommends
        self.max_concurrency = 1  # IDENTIFYs allowed per 5 s (not enforced)
        self.max_guilds_per_session: int | None = None  # more: 4011 Sharding required
        self.delivered: list[tuple[Shard, str, str | None]] = []  # (shard, event, guild)
        self.refusals: list[tuple[Any, int]] = []  # (the `shard` asked for, close code)
        self._shard_of: dict[web.WebSocketResponse, Shard] = {}  # identified or resumed
        self._session_shard: dict[str, Shard] = {}
        self._latest: dict[Shard, str] = {}  # each shard's newest session (RESUME continues it)

    # -- what tests do -----------------------------------------------------------

    async def drop_connections(
        self, *, refuse_for: float = 0.0, shards: Collection[int] | None = None
    ) -> None:
        """Close every gateway connection (4000: resumable), or only the sessions of the
        shard ids in `shards`, and refuse new connections for a while."""
        self.refuse_until = time.monotonic() + refuse_for
        self.identified.clear()
        self.resumed.clear()
        for ws in list(self._all_sockets):
            shard = self._shard_of.get(ws)
            if shards is not None and (shard is None or shard[0] not in shards):
                continue
            with contextlib.suppress(Exception):
                await ws.close(code=4000, message=b"Unknown error")

    async def send_raw(self, frame: str) -> None:
        """Send a text frame as is to every identified connection (for hostile payloads)."""
        for ws in list(self._sockets):
            with contextlib.suppress(ConnectionResetError):
                await ws.send_str(frame)

    async def dispatch(self, event: str, data: Any) -> None:
        """Send one event to every identified gateway connection that should see it: an
        unsharded one, or the shard of the event's guild (shard 0 for events of none)."""
        guild = guild_of(event, data)
        for ws in list(self._sockets):
            shard = self._shard_of.get(ws)
            if shard is not None and (shard_of(guild, shard[1]) if guild else 0) != shard[0]:
                continue
            self.delivered.append((shard, event, guild))
            with contextlib.suppress(ConnectionResetError):
                await self._send(ws, event, data)

    def connected_shards(self) -> list[tuple[int, int]]:
        """The [id, count] of every live sharded session."""
        return sorted(s for ws, s in self._shard_of.items() if s is not None and not ws.closed)

    def gateway_bot(self) -> dict[str, Any]:
        """What `GET /gateway/bot` answers."""
        return {
            "url": self.gateway_url,
            "shards": self.gateway_shards,
            "session_start_limit": {
                "total": 1000,
                "remaining": max(0, 1000 - self.identifies),
                "reset_after": 14_400_000,
                "max_concurrency": self.max_concurrency,
            },
        }

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
            self._shard_of.pop(ws, None)
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
            return await self._identify(ws, d)
        elif op == 6:
            session = d.get("session_id")
            shard = self._session_shard.get(session)
            if not self.resume_ok or session is None or self._latest.get(shard) != session:
                # Discord waits 1-5 s before INVALID_SESSION; the client then re-IDENTIFYs.
                await ws.send_str(json.dumps({"op": 9, "d": False}))
                return True
            self._shard_of[ws] = shard
            self._sockets.append(ws)
            self.resumes += 1
            await self._send(ws, "RESUMED", {"_trace": ["fake-gateway"]})
            self.resumed.set()
        return True

    async def _refuse(self, ws: web.WebSocketResponse, asked: Any, code: int, why: str) -> bool:
        self.refusals.append((asked, code))
        await ws.close(code=code, message=why.encode())
        return False

    async def _identify(self, ws: web.WebSocketResponse, d: dict[str, Any]) -> bool:
        """READY and the session's guilds; False when the connection is refused."""
        asked = d.get("shard")
        shard: Shard = None
        if asked is not None:
            if not _valid_shard(asked):
                return await self._refuse(ws, asked, 4010, "Invalid shard.")
            shard = (asked[0], asked[1])
            if shard in self.connected_shards():
                return await self._refuse(ws, asked, 4010, "Invalid shard.")
        guilds = [g for g in self.guild_ids if shard is None or shard_of(g, shard[1]) == shard[0]]
        if self.max_guilds_per_session is not None and len(guilds) > self.max_guilds_per_session:
            return await self._refuse(ws, asked, 4011, "Sharding required.")
        self.identifies += 1
        self.session_id = f"fake-session-{next(self._sessions)}"
        self._session_shard[self.session_id] = shard
        self._latest[shard] = self.session_id
        self._shard_of[ws] = shard
        self._sockets.append(ws)
        ready: dict[str, Any] = {
            "v": 10,
            "user": self.users[BOT_ID],
            "guilds": [{"id": g, "unavailable": True} for g in guilds],
            "session_id": self.session_id,
            "resume_gateway_url": self.gateway_url,
            "application": {"id": APP_ID, "flags": 0},
            "private_channels": [],
            "relationships": [],
        }
        if shard is not None:
            ready["shard"] = list(shard)
        if self.hold_ready is not None:
            await self.hold_ready.wait()
        await self._send(ws, "READY", ready)
        for g in guilds:
            await self._send(ws, "GUILD_CREATE", self._guild(g))
        self.identified.set()
        return True
