"""A fake Discord on 127.0.0.1: REST (v10) and a JSON gateway, enough for discord.py.

discord.py logs in (`GET /users/@me`), opens the gateway (HELLO -> IDENTIFY -> READY ->
GUILD_CREATE; RESUME -> RESUMED; drops and outages: see discord_gateway.py) and then
receives what the test dispatches: MESSAGE_CREATE, THREAD_CREATE, INTERACTION_CREATE. Every
REST call is recorded (message writes keep their `allowed_mentions` in the call's body).
Limits are Discord's: 2,000 characters of content (400 with code 50035 above it), thread
names up to 100, and message writes per channel limited to `channel_limit` in a sliding
`channel_window` (Discord does not publish the numbers; about 5 per 5 s is what bots meet),
plus an optional global limit. Over a limit: 429 with a JSON `retry_after`, `Retry-After`
and the X-RateLimit headers (and the `Via` header, without which discord.py takes a 429 for
a Cloudflare ban). Thread creation and typing are not counted per channel (Discord limits
them separately and loosely).

Also: history paging and seeding (discord_history.py), roles and permission overwrites
enforced for the bot (discord_perms.py), interactions and their webhooks
(discord_interactions.py), uploads with Discord's size limits (discord_wire.py), DM channels
(`POST /users/@me/channels`; `closed_dms` users refuse DMs with 403 50007) and message
`flags` (SUPPRESS_EMBEDS kept on create and edit; suppressed messages have no embeds).

Guilds: GUILD, plus any `add_guild` makes before the bot connects (for sharding tests: a
guild's shard follows its id, see discord_gateway.py). Every guild has the same members and
roles (the @everyone role takes the guild's id); permissions are worked out from GUILD's.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.discord_gateway import APP_ID, BOT_ID, GUILD, TOKEN, GatewayMixin, shard_of
from tests.fakes.discord_history import HistoryMixin, now_iso
from tests.fakes.discord_interactions import Interaction, InteractionsMixin, is_ephemeral
from tests.fakes.discord_messages import MessagesMixin
from tests.fakes.discord_perms import (
    ADMIN_ROLE,
    ALL_PERMISSIONS,
    BOT_ROLE,
    CREATE_PUBLIC_THREADS,
    EVERYONE_PERMISSIONS,
    READ_MESSAGE_HISTORY,
    THREAD_TYPES,
    VIEW_CHANNEL,
    PermissionsMixin,
)
from tests.fakes.discord_wire import (
    CHANNEL,
    FILE_LIMITS,
    MAX_CONTENT,
    MAX_THREAD_NAME,
    RateLimitMixin,
    Upload,
    error,
    invalid_form,
    json_response,
    missing_access,
    missing_permissions,
    read_body,
    upload_error,
)

__all__ = [
    "ADMIN_ROLE",
    "ALL_PERMISSIONS",
    "APP_ID",
    "BOT_ID",
    "BOT_ROLE",
    "CHANNEL",
    "EVERYONE_PERMISSIONS",
    "GUILD",
    "MAX_CONTENT",
    "MAX_THREAD_NAME",
    "TOKEN",
    "Call",
    "FakeDiscord",
    "Interaction",
    "is_ephemeral",
    "shard_of",
]


@dataclass
class Call:
    """One REST request as the fake saw it."""

    method: str
    path: str
    body: Any
    status: int
    at: float
    route: str = ""
    query: dict[str, str] = field(default_factory=dict)


def _user(uid: str, name: str, *, bot: bool = False) -> dict[str, Any]:
    return {
        "id": uid,
        "username": name,
        "global_name": name.title(),
        "discriminator": "0",
        "avatar": None,
        "bot": bot,
        "public_flags": 0,
    }


class FakeDiscord(
    GatewayMixin,
    RateLimitMixin,
    MessagesMixin,
    PermissionsMixin,
    HistoryMixin,
    InteractionsMixin,
):
    """REST + gateway. Users, channels and messages live in plain dicts the tests read."""

    def __init__(
        self,
        *,
        channel_limit: int = 5,
        channel_window: float = 5.0,
        global_limit: int | None = 50,
        global_window: float = 1.0,
    ) -> None:
        self.channel_limit = channel_limit
        self.channel_window = channel_window
        self.global_limit = global_limit
        self.global_window = global_window
        self.calls: list[Call] = []
        self.users: dict[str, dict[str, Any]] = {BOT_ID: _user(BOT_ID, "gemini", bot=True)}
        self.member_roles: dict[str, list[str]] = {}
        self.channels: dict[str, dict[str, Any]] = {}
        self.thread_members: dict[str, set[str]] = {}  # thread id -> user ids in it
        self.messages: dict[str, dict[str, dict[str, Any]]] = {}
        self.files: dict[str, bytes] = {}
        self.commands: dict[str, list[dict[str, Any]]] = {}
        self.forced_429: deque[float] = deque()
        self.can_create_threads = True
        self.owner_id = "1"  # nobody here: no one gets the owner's every permission
        self.premium_tier = 0  # boost tier: the upload limit follows it
        self.closed_dms: set[str] = set()  # users who do not accept DMs from the bot
        self.guild_names: dict[str, str] = {GUILD: "Fake Guild"}
        self._writes: dict[str, deque[float]] = {}
        self._global: deque[float] = deque()
        self._init_gateway()
        self._init_permissions()
        self._init_history()
        self._init_interactions()
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.add_channel(CHANNEL, "general")

    # -- set-up --------------------------------------------------------------

    def add_user(self, uid: str, name: str, *, roles: list[str] | None = None) -> dict[str, Any]:
        """A guild member."""
        self.users[uid] = _user(uid, name)
        self.member_roles[uid] = list(roles or [])
        return self.users[uid]

    @property
    def guild_ids(self) -> list[str]:
        return list(self.guild_names)

    def add_guild(self, gid: str, name: str) -> None:
        """Another guild the bot is in (before it connects), with the same members."""
        self.guild_names[gid] = name

    def add_channel(self, cid: str, name: str, *, guild: str = GUILD) -> dict[str, Any]:
        """A guild text channel (before connect; after it, `create_channel`)."""
        ch = {
            "id": cid,
            "type": 0,
            "name": name,
            "guild_id": guild,
            "position": len(self.channels),
            "permission_overwrites": [],
            "nsfw": False,
            "parent_id": None,
            "topic": None,
            "last_message_id": None,
            "rate_limit_per_user": 0,
        }
        self.channels[cid] = ch
        self.messages.setdefault(cid, {})
        return ch

    async def create_channel(self, cid: str, name: str) -> dict[str, Any]:
        """A guild text channel made while the bot is connected: CHANNEL_CREATE."""
        ch = self.add_channel(cid, name)
        await self.dispatch("CHANNEL_CREATE", ch)
        return ch

    def upload_limit(self, channel_id: str) -> int:
        """Largest file the bot may upload there (bytes)."""
        if not self.channels.get(channel_id, {}).get("guild_id"):
            return FILE_LIMITS[0]
        return FILE_LIMITS.get(self.premium_tier, FILE_LIMITS[0])

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v10"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    @property
    def cdn(self) -> str:
        return f"http://127.0.0.1:{self.port}/attachments"

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/gateway", self._gateway)
        app.router.add_get("/attachments/{fid}/{name}", self._download)
        app.router.add_route("*", "/api/v10/{path:.*}", self._rest)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def close(self) -> None:
        await self._close_gateway()
        if self._runner is not None:
            await self._runner.cleanup()

    # -- gateway ---------------------------------------------------------------

    def _guild(self, gid: str) -> dict[str, Any]:
        members = [{**self._member(uid), "user": u} for uid, u in self.users.items()]
        roles = [{**r, "id": gid} if r["id"] == GUILD else r for r in self._guild_roles()]
        mine = [c for c in self.channels.values() if c.get("guild_id") == gid]
        return {
            "id": gid,
            "name": self.guild_names[gid],
            "owner_id": self.owner_id,
            "unavailable": False,
            "member_count": len(members),
            "large": False,
            "features": [],
            "emojis": [],
            "stickers": [],
            "roles": roles,
            "members": members,
            "channels": [c for c in mine if c["type"] == 0],
            "threads": [c for c in mine if c["type"] in THREAD_TYPES],
            "presences": [],
            "voice_states": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
            "premium_tier": self.premium_tier,
            "preferred_locale": "en-US",
            "system_channel_flags": 0,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "nsfw_level": 0,
        }

    # -- what users do ---------------------------------------------------------

    def _member(self, uid: str) -> dict[str, Any]:
        return {
            "roles": self.member_roles.get(uid, []),
            "joined_at": "2026-01-01T00:00:00+00:00",
            "deaf": False,
            "mute": False,
            "flags": 0,
            "nick": None,
        }

    def _thread(self, tid: str, parent: str, name: str, owner: str) -> dict[str, Any]:
        thread = {
            "id": tid,  # Discord gives a thread made from a message that message's id
            "type": 11,
            "name": name,
            "guild_id": self.channels.get(parent, {}).get("guild_id", GUILD),
            "parent_id": parent,
            "owner_id": owner,
            "message_count": 0,
            "member_count": 1,
            "rate_limit_per_user": 0,
            "flags": 0,
            "thread_metadata": {
                "archived": False,
                "auto_archive_duration": 1440,
                "archive_timestamp": now_iso(),
                "locked": False,
            },
        }
        self.channels[tid] = thread
        self.messages.setdefault(tid, {})
        self.thread_members.setdefault(tid, set()).add(owner)
        return thread

    async def user_thread(self, root: dict[str, Any], name: str, owner: str) -> dict[str, Any]:
        """A thread a person made from a message (the bot is not in it yet)."""
        thread = self._thread(root["id"], root["channel_id"], name, owner)
        await self.dispatch("THREAD_CREATE", {**thread, "newly_created": True})
        return thread

    def threads(self) -> list[dict[str, Any]]:
        return [c for c in self.channels.values() if c["type"] == 11]

    def count_429(self) -> int:
        return sum(1 for c in self.calls if c.status == 429)

    # -- REST: routes ------------------------------------------------------------

    async def _rest(self, request: web.Request) -> web.StreamResponse:
        path = "/" + request.match_info["path"]
        body, files = await read_body(request)
        call = Call(request.method, path, body, 200, time.monotonic(), query=dict(request.query))
        self.calls.append(call)
        if request.headers.get("Authorization") != f"Bot {TOKEN}" and not path.startswith(
            ("/interactions/", "/webhooks/")
        ):
            call.status = 401
            return json_response({"message": "401: Unauthorized", "code": 0}, 401)
        resp = upload_error(files, self.upload_limit(self._channel_of(path)))
        if resp is None:
            try:
                resp = await self._route(request.method, path, body, files, call)
            except KeyError as exc:
                resp = json_response({"message": f"Unknown {exc}", "code": 10003}, 404)
        call.status = resp.status
        return resp

    def _channel_of(self, path: str) -> str:
        """The channel a request writes to (for its upload limit), or ''."""
        parts = path.strip("/").split("/")
        if parts[0] == "channels" and len(parts) > 1:
            return parts[1]
        if parts[0] in ("webhooks", "interactions") and len(parts) > 2:
            inter = self.interactions.get(parts[2])
            return inter.channel_id if inter else ""
        return ""

    async def _route(
        self, method: str, path: str, body: Any, files: list[Upload], call: Call
    ) -> web.Response:
        parts = path.strip("/").split("/")
        if path == "/users/@me":
            return json_response(self.users[BOT_ID])
        if path == "/users/@me/channels" and method == "POST":
            return self._create_dm(body, call)
        if parts[0] == "users" and len(parts) == 2 and method == "GET":
            user = self.users.get(parts[1])
            return json_response(user) if user else error(404, 10013, "Unknown User")
        if path == "/oauth2/applications/@me":
            return json_response(
                {
                    "id": APP_ID,
                    "name": "gemini",
                    "description": "",
                    "icon": None,
                    "bot_public": True,
                    "bot_require_code_grant": False,
                    "verify_key": "00",
                    "flags": 0,
                    "owner": _user("1", "owner"),
                }
            )
        if path == "/gateway":
            return json_response({"url": self.gateway_url})
        if path == "/gateway/bot":
            return json_response(self.gateway_bot())
        if parts[0] == "applications" and method == "PUT" and parts[-1] == "commands":
            scope = parts[3] if len(parts) == 5 else "global"
            saved = [
                {"description": "", **c, "id": self.snowflake(), "application_id": APP_ID}
                for c in body
            ]
            self.commands[scope] = saved
            call.route = "commands"
            return json_response(saved)
        if parts[0] == "applications" and method == "GET" and parts[-1] == "commands":
            return json_response(self.commands.get(parts[3] if len(parts) == 5 else "global", []))
        if parts[0] == "interactions":
            return await self._interaction_callback(parts, body, files, call)
        if parts[0] == "webhooks":
            return await self._webhook(method, parts, body, files, call)
        if parts[0] == "channels":
            return await self._channels(method, parts, body, files, call)
        return json_response({"message": "404: Not Found", "code": 0}, 404)

    def _create_dm(self, body: Any, call: Call) -> web.Response:
        call.route = "dm"
        uid = str((body or {}).get("recipient_id") or "")
        if uid not in self.users or uid == BOT_ID:
            return error(400, 50033, "Invalid Recipient(s)")
        return json_response(self.channels[self.open_dm(uid)])

    async def _channels(
        self, method: str, parts: list[str], body: Any, files: list[Upload], call: Call
    ) -> web.Response:
        cid = parts[1]
        ch = self.channels.get(cid)
        if ch is None:
            return error(404, 10003, "Unknown Channel")
        rest = parts[2:]
        if len(rest) == 2 and rest[0] == "thread-members" and method == "GET":
            if rest[1] not in self.thread_members.get(cid, set()):
                return error(404, 10007, "Unknown Member")
            return json_response(
                {"id": cid, "user_id": rest[1], "join_timestamp": now_iso(), "flags": 0}
            )
        in_guild = bool(ch.get("guild_id"))
        if in_guild and not self.permissions(BOT_ID, cid) & VIEW_CHANNEL:
            return missing_access()
        if not rest and method == "GET":
            return json_response(ch)
        if rest == ["typing"]:
            call.route = "typing"
            limited = self._limited(None)
            return limited or web.Response(status=204)
        if len(rest) == 3 and rest[0] == "messages" and rest[2] == "threads":
            return await self._start_thread(cid, rest[1], body, call)
        if rest == ["messages"] and method == "GET":
            call.route = "history"
            return self._history(cid, call.query)
        if rest and rest[0] == "messages":
            if method == "GET":
                if in_guild and not self.permissions(BOT_ID, cid) & READ_MESSAGE_HISTORY:
                    return missing_access()
                msg = self.messages[cid].get(rest[1])
                if msg is None:
                    return error(404, 10008, "Unknown Message")
                return json_response(self.public(msg))
            call.route = "write"
            limited = self._limited(cid)
            if limited:
                return limited
            headers = self._ratelimit_headers(cid)
            if method == "POST" and len(rest) == 1:
                return await self._post_message(cid, body, files, headers)
            msg = self.messages[cid].get(rest[1]) if len(rest) > 1 else None
            if msg is None:
                return error(404, 10008, "Unknown Message", headers)
            if method == "PATCH":
                if msg["author"]["id"] != BOT_ID:
                    return error(403, 50005, "Cannot edit a message authored by another user")
                bad = self._edit(msg, body, files, headers=headers)
                return bad or json_response(self.public(msg), 200, headers)
            if method == "DELETE":
                self.messages[cid].pop(rest[1])
                return web.Response(status=204, headers=headers)
        return json_response({"message": "404: Not Found", "code": 0}, 404)

    async def _start_thread(self, cid: str, mid: str, body: Any, call: Call) -> web.Response:
        call.route = "thread"
        if not self.can_create_threads or not self.can(BOT_ID, cid, CREATE_PUBLIC_THREADS):
            return missing_permissions()
        name = str((body or {}).get("name", ""))
        if not name or len(name) > MAX_THREAD_NAME:
            return invalid_form("name", f"Must be between 1 and {MAX_THREAD_NAME} in length.")
        limited = self._limited(None)
        if limited:
            return limited
        source = self.messages[cid][mid]
        thread = self._thread(source["id"], cid, name, BOT_ID)
        await self.dispatch("THREAD_CREATE", {**thread, "newly_created": True})
        return json_response(thread)
