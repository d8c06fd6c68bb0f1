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
"""

from __future__ import annotations

import itertools
import json
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.discord_gateway import APP_ID, BOT_ID, GUILD, TOKEN, GatewayMixin

CHANNEL = "700000000000000001"
ADMIN_ROLE = "600000000000000001"
MAX_CONTENT = 2000
MAX_THREAD_NAME = 100
EVERYONE_PERMISSIONS = str((1 << 10) | (1 << 11) | (1 << 16) | (1 << 35) | (1 << 38))
ALL_PERMISSIONS = str((1 << 41) - 1)


@dataclass
class Call:
    """One REST request as the fake saw it."""

    method: str
    path: str
    body: Any
    status: int
    at: float
    route: str = ""


@dataclass
class Interaction:
    """An interaction the fake sent and the answers the bot gave to it."""

    id: str
    token: str
    channel_id: str
    callbacks: list[dict[str, Any]] = field(default_factory=list)
    original: dict[str, Any] | None = None
    followups: list[dict[str, Any]] = field(default_factory=list)


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


def _now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000000+00:00", time.gmtime())


class FakeDiscord(GatewayMixin):
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
        self.messages: dict[str, dict[str, dict[str, Any]]] = {}
        self.files: dict[str, bytes] = {}
        self.commands: dict[str, list[dict[str, Any]]] = {}
        self.interactions: dict[str, Interaction] = {}
        self.forced_429: deque[float] = deque()
        self.can_create_threads = True
        self._ids = itertools.count(1)
        self._writes: dict[str, deque[float]] = {}
        self._global: deque[float] = deque()
        self._init_gateway()
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.add_channel(CHANNEL, "general")

    # -- set-up --------------------------------------------------------------

    def snowflake(self) -> str:
        """A new id, increasing like Discord's."""
        return str(1_000_000_000_000_000_000 + next(self._ids))

    def add_user(self, uid: str, name: str, *, roles: list[str] | None = None) -> dict[str, Any]:
        """A guild member."""
        self.users[uid] = _user(uid, name)
        self.member_roles[uid] = list(roles or [])
        return self.users[uid]

    def add_channel(self, cid: str, name: str) -> dict[str, Any]:
        """A guild text channel."""
        ch = {
            "id": cid,
            "type": 0,
            "name": name,
            "guild_id": GUILD,
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

    def _guild(self) -> dict[str, Any]:
        members = [{**self._member(uid), "user": u} for uid, u in self.users.items()]
        bot_perms = ALL_PERMISSIONS if self.can_create_threads else EVERYONE_PERMISSIONS
        roles = [
            {
                "id": GUILD,
                "name": "@everyone",
                "permissions": bot_perms if self.can_create_threads else EVERYONE_PERMISSIONS,
                "position": 0,
                "color": 0,
                "hoist": False,
                "managed": False,
                "mentionable": False,
                "flags": 0,
            },
            {
                "id": ADMIN_ROLE,
                "name": "gemini-admins",
                "permissions": EVERYONE_PERMISSIONS,
                "position": 1,
                "color": 0,
                "hoist": False,
                "managed": False,
                "mentionable": True,
                "flags": 0,
            },
        ]
        return {
            "id": GUILD,
            "name": "Fake Guild",
            "owner_id": "1",
            "unavailable": False,
            "member_count": len(members),
            "large": False,
            "features": [],
            "emojis": [],
            "stickers": [],
            "roles": roles,
            "members": members,
            "channels": [c for c in self.channels.values() if c["type"] == 0],
            "threads": [c for c in self.channels.values() if c["type"] == 11],
            "presences": [],
            "voice_states": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
            "premium_tier": 0,
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

    def _message(
        self,
        channel_id: str,
        author_id: str,
        content: str,
        *,
        attachments: list[dict[str, Any]] | None = None,
        reference: str | None = None,
        allowed_mentions: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        ch = self.channels.get(channel_id, {})
        mid = self.snowflake()
        mentions = [
            self.users[uid]
            for uid in self.users
            if f"<@{uid}>" in content or f"<@!{uid}>" in content
        ]
        msg: dict[str, Any] = {
            "id": mid,
            "channel_id": channel_id,
            "author": self.users[author_id],
            "content": content,
            "timestamp": _now_iso(),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": mentions,
            "mention_roles": [],
            "attachments": attachments or [],
            "embeds": [],
            "pinned": False,
            "type": 19 if reference else 0,
            "flags": 0,
            "components": [],
            "allowed_mentions": allowed_mentions,
        }
        if ch.get("guild_id"):
            msg["guild_id"] = ch["guild_id"]
            msg["member"] = self._member(author_id)
        if reference:
            msg["message_reference"] = {"message_id": reference, "channel_id": channel_id}
            ref = self.messages.get(channel_id, {}).get(reference)
            if ref is not None:
                msg["referenced_message"] = {
                    k: v for k, v in ref.items() if k != "allowed_mentions"
                }
        self.messages.setdefault(channel_id, {})[mid] = msg
        return msg

    def attachment(self, name: str, data: bytes, content_type: str | None = None) -> dict[str, Any]:
        """An uploaded file, downloadable from the fake CDN."""
        fid = self.snowflake()
        self.files[fid] = data
        url = f"{self.cdn}/{fid}/{name}"
        out = {
            "id": fid,
            "filename": name,
            "size": len(data),
            "url": url,
            "proxy_url": url,
        }
        if content_type:
            out["content_type"] = content_type
        return out

    def open_dm(self, uid: str) -> str:
        """The DM channel between a user and the bot."""
        for cid, ch in self.channels.items():
            if ch["type"] == 1 and ch["recipients"][0]["id"] == uid:
                return cid
        cid = self.snowflake()
        self.channels[cid] = {"id": cid, "type": 1, "recipients": [self.users[uid]]}
        self.messages[cid] = {}
        return cid

    async def say(
        self,
        channel_id: str,
        author_id: str,
        content: str,
        *,
        attachments: list[dict[str, Any]] | None = None,
        reference: str | None = None,
    ) -> dict[str, Any]:
        """A user posts a message: stored and dispatched as MESSAGE_CREATE."""
        msg = self._message(
            channel_id, author_id, content, attachments=attachments, reference=reference
        )
        await self.dispatch("MESSAGE_CREATE", self.public(msg))
        return msg

    @staticmethod
    def public(msg: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in msg.items() if k != "allowed_mentions"}

    async def interact(
        self,
        name: str,
        *,
        user: str,
        channel_id: str = CHANNEL,
        options: list[dict[str, Any]] | None = None,
        kind: int = 2,
        command_type: int = 1,
        target: dict[str, Any] | None = None,
        resolved: dict[str, Any] | None = None,
    ) -> Interaction:
        """A user runs a command (kind 2) or types into an autocompleted option (kind 4)."""
        iid = self.snowflake()
        token = f"itoken-{iid}"
        ch = self.channels[channel_id]
        data: dict[str, Any] = {"id": self.snowflake(), "name": name, "type": command_type}
        if options is not None:
            data["options"] = options
        if target is not None:
            data["target_id"] = target["id"]
            data["resolved"] = {"messages": {target["id"]: self.public(target)}}
        if resolved is not None:
            data["resolved"] = resolved
        payload: dict[str, Any] = {
            "id": iid,
            "application_id": APP_ID,
            "type": kind,
            "data": data,
            "channel_id": channel_id,
            "channel": {k: v for k, v in ch.items() if k != "recipients"},
            "token": token,
            "version": 1,
            "locale": "en-US",
            "app_permissions": ALL_PERMISSIONS,
            "entitlements": [],
            "authorizing_integration_owners": {},
            "attachment_size_limit": 10 * 1024 * 1024,
            "context": 0 if ch.get("guild_id") else 1,
        }
        if ch.get("guild_id"):
            payload["guild_id"] = ch["guild_id"]
            payload["guild_locale"] = "en-US"
            perms = ALL_PERMISSIONS if ADMIN_ROLE in self.member_roles.get(user, []) else "0"
            payload["member"] = {
                **self._member(user),
                "user": self.users[user],
                "permissions": perms,
            }
        else:
            payload["user"] = self.users[user]
        inter = Interaction(iid, token, channel_id)
        self.interactions[token] = inter
        await self.dispatch("INTERACTION_CREATE", payload)
        return inter

    def _thread(self, tid: str, parent: str, name: str, owner: str) -> dict[str, Any]:
        thread = {
            "id": tid,  # Discord gives a thread made from a message that message's id
            "type": 11,
            "name": name,
            "guild_id": GUILD,
            "parent_id": parent,
            "owner_id": owner,
            "message_count": 0,
            "member_count": 1,
            "rate_limit_per_user": 0,
            "flags": 0,
            "thread_metadata": {
                "archived": False,
                "auto_archive_duration": 1440,
                "archive_timestamp": _now_iso(),
                "locked": False,
            },
        }
        self.channels[tid] = thread
        self.messages.setdefault(tid, {})
        return thread

    async def user_thread(self, root: dict[str, Any], name: str, owner: str) -> dict[str, Any]:
        """A thread a person made from a message (the bot is not in it yet)."""
        thread = self._thread(root["id"], root["channel_id"], name, owner)
        await self.dispatch("THREAD_CREATE", {**thread, "newly_created": True})
        return thread

    def bot_messages(self, channel_id: str) -> list[dict[str, Any]]:
        """The bot's messages in a channel, oldest first."""
        return [
            m for m in self.messages.get(channel_id, {}).values() if m["author"]["id"] == BOT_ID
        ]

    def threads(self) -> list[dict[str, Any]]:
        return [c for c in self.channels.values() if c["type"] == 11]

    def count_429(self) -> int:
        return sum(1 for c in self.calls if c.status == 429)

    # -- REST ------------------------------------------------------------------

    @staticmethod
    def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
        # discord.py wants exactly application/json (no charset) to parse the body.
        h = {"Content-Type": "application/json", **(headers or {})}
        return web.Response(body=json.dumps(data).encode(), status=status, headers=h)

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
            "X-RateLimit-Bucket": f"messages-{key}",
        }

    def _too_many(self, retry: float, key: str, is_global: bool) -> web.Response:
        retry = max(retry, 0.001)
        headers = {
            "Retry-After": f"{retry:.3f}",
            "Via": "1.1 google",
            "X-RateLimit-Limit": str(self.channel_limit),
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset-After": f"{retry:.3f}",
            "X-RateLimit-Bucket": f"messages-{key}",
            "X-RateLimit-Scope": "user",
        }
        if is_global:
            headers["X-RateLimit-Global"] = "true"
        body = {"message": "You are being rate limited.", "retry_after": retry, "global": is_global}
        return self._json(body, 429, headers)

    async def _body(self, request: web.Request) -> tuple[Any, list[tuple[str, bytes]]]:
        if request.content_type.startswith("multipart/"):
            payload: Any = {}
            files: list[tuple[str, bytes]] = []
            reader = await request.multipart()
            async for part in reader:
                if part.name == "payload_json":
                    payload = json.loads(await part.text())  # type: ignore[union-attr]
                else:
                    files.append((part.filename or "file", await part.read()))  # type: ignore[union-attr]
            return payload, files
        raw = await request.read()
        return (json.loads(raw) if raw else None), []

    async def _rest(self, request: web.Request) -> web.StreamResponse:
        path = "/" + request.match_info["path"]
        body, files = await self._body(request)
        call = Call(request.method, path, body, 200, time.monotonic())
        self.calls.append(call)
        if request.headers.get("Authorization") != f"Bot {TOKEN}" and not path.startswith(
            ("/interactions/", "/webhooks/")
        ):
            call.status = 401
            return self._json({"message": "401: Unauthorized", "code": 0}, 401)
        try:
            resp = await self._route(request.method, path, body, files, call)
        except KeyError as exc:
            resp = self._json({"message": f"Unknown {exc}", "code": 10003}, 404)
        call.status = resp.status
        return resp

    async def _route(
        self, method: str, path: str, body: Any, files: list[tuple[str, bytes]], call: Call
    ) -> web.Response:
        parts = path.strip("/").split("/")
        if path == "/users/@me":
            return self._json(self.users[BOT_ID])
        if path == "/oauth2/applications/@me":
            return self._json(
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
            return self._json({"url": self.gateway_url})
        if parts[0] == "applications" and method == "PUT" and parts[-1] == "commands":
            scope = parts[3] if len(parts) == 5 else "global"
            saved = [
                {"description": "", **c, "id": self.snowflake(), "application_id": APP_ID}
                for c in body
            ]
            self.commands[scope] = saved
            call.route = "commands"
            return self._json(saved)
        if parts[0] == "applications" and method == "GET" and parts[-1] == "commands":
            return self._json(self.commands.get(parts[3] if len(parts) == 5 else "global", []))
        if parts[0] == "interactions":
            inter = self.interactions[parts[2]]
            inter.callbacks.append(body)
            call.route = "interaction"
            kind = body.get("type")
            if kind == 4:
                inter.original = self._message(
                    inter.channel_id, BOT_ID, body["data"].get("content", "")
                )
            # discord.py asks `with_response`: Discord then answers with the callback's result.
            resource: dict[str, Any] = {"type": kind}
            if inter.original is not None:
                resource["message"] = self.public(inter.original)
            result = {
                "interaction": {
                    "id": inter.id,
                    "type": 2,
                    "response_message_id": inter.original["id"] if inter.original else None,
                    "response_message_loading": kind == 5,
                    "response_message_ephemeral": bool(
                        ((body.get("data") or {}).get("flags") or 0) & 64
                    ),
                },
                "resource": resource,
            }
            return self._json(result)
        if parts[0] == "webhooks":
            inter = self.interactions[parts[2]]
            call.route = "webhook"
            if parts[-1] == "@original":
                if method == "PATCH":
                    text = (body or {}).get("content", "")
                    if len(text) > MAX_CONTENT:
                        return self._json({"message": "Invalid Form Body", "code": 50035}, 400)
                    if inter.original is None:
                        inter.original = self._message(inter.channel_id, BOT_ID, text)
                    else:
                        inter.original["content"] = text
                    return self._json(self.public(inter.original))
                if method == "GET" and inter.original is not None:
                    return self._json(self.public(inter.original))
                raise KeyError("message")
            text = (body or {}).get("content", "")
            if len(text) > MAX_CONTENT:
                return self._json({"message": "Invalid Form Body", "code": 50035}, 400)
            msg = self._message(inter.channel_id, BOT_ID, text)
            inter.followups.append(msg)
            return self._json(self.public(msg))
        if parts[0] == "channels":
            return await self._channels(method, parts, body, files, call)
        return self._json({"message": "404: Not Found", "code": 0}, 404)

    async def _channels(
        self, method: str, parts: list[str], body: Any, files: list[tuple[str, bytes]], call: Call
    ) -> web.Response:
        cid = parts[1]
        ch = self.channels[cid]
        rest = parts[2:]
        if not rest and method == "GET":
            return self._json(ch)
        if rest == ["typing"]:
            call.route = "typing"
            limited = self._limited(None)
            return limited or web.Response(status=204)
        if len(rest) == 3 and rest[0] == "messages" and rest[2] == "threads":
            call.route = "thread"
            if not self.can_create_threads:
                return self._json({"message": "Missing Permissions", "code": 50013}, 403)
            name = str(body.get("name", ""))
            if not name or len(name) > MAX_THREAD_NAME:
                return self._json({"message": "Invalid Form Body", "code": 50035}, 400)
            limited = self._limited(None)
            if limited:
                return limited
            source = self.messages[cid][rest[1]]
            thread = self._thread(source["id"], cid, name, BOT_ID)
            await self.dispatch("THREAD_CREATE", {**thread, "newly_created": True})
            return self._json(thread)
        if rest and rest[0] == "messages":
            if method == "GET" and len(rest) == 1:
                msgs = sorted(self.messages[cid].values(), key=lambda m: int(m["id"]))
                return self._json([self.public(m) for m in reversed(msgs)][:50])
            if method == "GET":
                return self._json(self.public(self.messages[cid][rest[1]]))
            call.route = "write"
            limited = self._limited(cid)
            if limited:
                return limited
            headers = self._ratelimit_headers(cid)
            if method == "POST" and len(rest) == 1:
                text = str((body or {}).get("content") or "")
                if len(text) > MAX_CONTENT:
                    return self._json({"message": "Invalid Form Body", "code": 50035}, 400, headers)
                ref = ((body or {}).get("message_reference") or {}).get("message_id")
                ref = str(ref) if ref is not None else None
                msg = self._message(
                    cid,
                    BOT_ID,
                    text,
                    reference=ref,
                    allowed_mentions=(body or {}).get("allowed_mentions"),
                    attachments=[self.attachment(n, d) for n, d in files] or None,
                )
                await self.dispatch("MESSAGE_CREATE", self.public(msg))
                return self._json(self.public(msg), 200, headers)
            if method == "PATCH":
                msg = self.messages[cid][rest[1]]
                if msg["author"]["id"] != BOT_ID:
                    return self._json({"message": "Cannot edit", "code": 50005}, 403, headers)
                text = str((body or {}).get("content") or "")
                if len(text) > MAX_CONTENT:
                    return self._json({"message": "Invalid Form Body", "code": 50035}, 400, headers)
                msg["content"] = text
                msg["edited_timestamp"] = _now_iso()
                if "allowed_mentions" in (body or {}):
                    msg["allowed_mentions"] = body["allowed_mentions"]
                return self._json(self.public(msg), 200, headers)
            if method == "DELETE":
                self.messages[cid].pop(rest[1])
                return web.Response(status=204, headers=headers)
        return self._json({"message": "404: Not Found", "code": 0}, 404)

    async def _download(self, request: web.Request) -> web.Response:
        data = self.files.get(request.match_info["fid"])
        if data is None:
            return web.Response(status=404)
        return web.Response(body=data, content_type="application/octet-stream")
