"""A fake Slack on 127.0.0.1: the Web API methods the adapter uses, with Slack's limits,
file downloads that need the bot token, and a driver that sends signed events, slash
commands and shortcuts to the service over HTTP.

Message reads, channels and membership live in `slack_history`, files and the external
upload flow in `slack_files`, workspaces, tokens and the OAuth v2 install flow in
`slack_oauth`; `FakeSlack` puts them together.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import time
from collections import defaultdict
from typing import Any
from urllib.parse import urlencode

import aiohttp
from aiohttp import web
from slack_sdk.signature import SignatureVerifier

from tests.fakes.slack_files import FilesMixin, Upload
from tests.fakes.slack_history import (
    Call,
    HistoryMixin,
    Message,
    api_err,
    api_ok,
    format_ts,
    ts_key,
)
from tests.fakes.slack_oauth import (
    _CALLER,
    APP_ID,
    DEFAULT_BOT_ID,
    DEFAULT_BOT_TOKEN,
    DEFAULT_BOT_USER,
    DEFAULT_TEAM,
    INSTALLER,
    OAUTH_CLIENT_ID,
    OAUTH_CLIENT_SECRET,
    Grant,
    Install,
    OAuthMixin,
    Token,
    Workspace,
    envelope,
)

__all__ = [
    "APP_ID",
    "APP_TOKEN",
    "BOT_ID",
    "BOT_TOKEN",
    "BOT_USER",
    "GENERAL",
    "INSTALLER",
    "OAUTH_CLIENT_ID",
    "OAUTH_CLIENT_SECRET",
    "SIGNING_SECRET",
    "TEAM",
    "Call",
    "FakeSlack",
    "Grant",
    "Install",
    "Message",
    "SlackDriver",
    "Token",
    "Upload",
    "Workspace",
]

# Scopes Slack checks for the methods the bot uses beyond chat:write (a token without one
# gets missing_scope); `FakeSlack.scopes` is what the app was installed with.
NEEDS_SCOPE = {
    "files.getUploadURLExternal": "files:write",
    "files.completeUploadExternal": "files:write",
    "conversations.members": "channels:read",
    "conversations.info": "channels:read",
}
ALL_SCOPES = frozenset({"chat:write", "files:read", "files:write", "channels:read", "users:read"})
BOT_TOKEN = DEFAULT_BOT_TOKEN
APP_TOKEN = "xapp-fake-app-token"
SIGNING_SECRET = "fake-signing-secret"
TEAM = DEFAULT_TEAM
BOT_USER = DEFAULT_BOT_USER
BOT_ID = DEFAULT_BOT_ID
GENERAL = "C1GEN"
LOGIN_PAGE = b"<!DOCTYPE html><html><head><title>Slack</title></head><body>Sign in</body></html>"
TEXT_LIMIT = 40_000  # chat.postMessage: Slack truncates text past 40,000 chars; here an error
MARKDOWN_BLOCK_LIMIT = 12_000  # all markdown blocks of one payload, cumulative
MAX_BLOCKS = 50  # blocks in a message
SECTION_TEXT_LIMIT = 3_000  # a section block's text
SECTION_FIELDS = 10  # a section block's fields, each at most 2,000 chars
SECTION_FIELD_LIMIT = 2_000
HEADER_TEXT_LIMIT = 150
TIER2 = (20 / 60, 5, "team")  # 20+ per minute, per workspace
TIER3 = (50 / 60, 10, "team")  # 50+ per minute, per workspace
TIER4 = (100 / 60, 20, "team")  # 100+ per minute, per workspace


class Bucket:
    """Token bucket on the real clock."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self.tokens = float(burst)
        self.at = time.monotonic()

    def take(self) -> float:
        """0 when allowed, else seconds until a token is available."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


def block_errors(blocks: list[Any]) -> list[str]:
    """Why Slack would answer invalid_blocks for these blocks (empty when it would not)."""
    if len(blocks) > MAX_BLOCKS:
        return [f"[ERROR] no more than {MAX_BLOCKS} items allowed [json-pointer:/blocks]"]
    out: list[str] = []
    markdown = 0
    for i, b in enumerate(blocks):
        if not isinstance(b, dict):
            out.append(f"[ERROR] must be an object [json-pointer:/blocks/{i}]")
            continue
        kind = b.get("type")
        text = b.get("text")
        body = str(text.get("text", "")) if isinstance(text, dict) else str(text or "")
        if kind == "markdown":
            markdown += len(body)
        elif kind == "section":
            if len(body) > SECTION_TEXT_LIMIT:
                out.append(
                    f"[ERROR] must be less than {SECTION_TEXT_LIMIT + 1} characters "
                    f"[json-pointer:/blocks/{i}/text/text]"
                )
            fields = b.get("fields") or []
            if len(fields) > SECTION_FIELDS:
                out.append(
                    f"[ERROR] no more than {SECTION_FIELDS} items allowed "
                    f"[json-pointer:/blocks/{i}/fields]"
                )
            for j, f in enumerate(fields):
                if isinstance(f, dict) and len(str(f.get("text", ""))) > SECTION_FIELD_LIMIT:
                    out.append(
                        f"[ERROR] must be less than {SECTION_FIELD_LIMIT + 1} characters "
                        f"[json-pointer:/blocks/{i}/fields/{j}/text]"
                    )
        elif kind == "header" and len(body) > HEADER_TEXT_LIMIT:
            out.append(
                f"[ERROR] must be less than {HEADER_TEXT_LIMIT + 1} characters "
                f"[json-pointer:/blocks/{i}/text/text]"
            )
    if markdown > MARKDOWN_BLOCK_LIMIT:
        out.append(
            f"[ERROR] markdown blocks must total less than {MARKDOWN_BLOCK_LIMIT + 1} "
            "characters [json-pointer:/blocks]"
        )
    return out


class FakeSlack(HistoryMixin, FilesMixin, OAuthMixin):
    """Web API + files + response URLs + OAuth install into several workspaces.

    Limits: chat.postMessage ~1/s per channel (burst 3), chat.update 50/min per workspace
    (burst 5), chat.appendStream 100/min per workspace, conversations.history / .replies /
    .info Tier 3 (50/min per workspace, burst 10), conversations.members,
    chat.postEphemeral and the upload methods Tier 4 (100/min, burst 20). Every entry of
    `limits` can be changed by a test.

    Workspaces: TEAM (bot token BOT_TOKEN, bot user BOT_USER) is always there;
    `add_workspace` adds more, `add_channel(..., team=)` puts a channel in one, and the
    OAuth flow (`authorize_url`, oauth.v2.access) mints their tokens; see `slack_oauth`."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.messages: dict[tuple[str, str], Message] = {}
        self.users: dict[str, dict[str, Any]] = {
            "U1ADA": {
                "id": "U1ADA",
                "name": "ada",
                "real_name": "Ada Lovelace",
                "profile": {"display_name": "Ada", "real_name": "Ada Lovelace"},
            },
            "U2BOB": {
                "id": "U2BOB",
                "name": "bob",
                "real_name": "Bob",
                "profile": {"display_name": "", "real_name": "Bob Builder"},
            },
        }
        self.bot_user, self.bot_id, self.team_id = BOT_USER, BOT_ID, TEAM
        self.files: dict[str, tuple[dict[str, Any], bytes]] = {}
        self.uploads: dict[str, Upload] = {}  # files.getUploadURLExternal tickets
        self._file_seq = 0
        self.responses: list[dict[str, Any]] = []
        self.ephemerals: list[dict[str, Any]] = []  # chat.postEphemeral
        self.statuses: list[tuple[str, str, str]] = []  # (channel, thread_ts, status)
        self.channels: dict[str, dict[str, Any]] = {}  # channel -> {id, name, is_private}
        self.channel_members: dict[str, set[str]] = {}  # no entry: everybody, bot included
        self.add_channel(GENERAL, "general")  # every workspace has its #general
        self.buckets: dict[tuple[str, str], Bucket] = {}
        self.limits: dict[str, tuple[float, int, str]] = {
            "chat.postMessage": (1.0, 3, "channel"),
            "chat.update": (50 / 60, 5, "team"),
            "chat.appendStream": (100 / 60, 10, "team"),
            "chat.startStream": TIER2,
            "chat.stopStream": TIER2,
            "conversations.history": TIER3,
            "conversations.replies": TIER3,
            "conversations.info": TIER3,
            "conversations.members": TIER4,
            "chat.postEphemeral": TIER4,
            "files.getUploadURLExternal": TIER4,
            "files.completeUploadExternal": TIER4,
        }
        # method -> (default, max) of `limit` in cursor-paged reads
        self.page_limits: dict[str, tuple[int, int]] = {
            "conversations.history": (100, 999),
            "conversations.replies": (100, 1000),
            "conversations.members": (100, 1000),
        }
        self.forced_429: dict[str, int] = defaultdict(int)
        self.scopes: set[str] = set(ALL_SCOPES)
        self.delays: dict[str, float] = {}  # method -> seconds before it answers
        self.channel_team: dict[str, str] = {}  # channel -> workspace, for per-team limits
        self.files_scope = True  # False: downloads get the login page, as without files:read
        self._ts = itertools.count(1)
        self._last_us = 0  # newest ts handed out or seeded, in microseconds
        self._envelopes = itertools.count(1)
        self.sockets: list[web.WebSocketResponse] = []
        self.acks: dict[str, tuple[float, dict[str, Any]]] = {}
        self._ack_waiters: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.base_url = ""
        self._runner: web.AppRunner | None = None
        self._init_oauth()

    # -- lifecycle ---------------------------------------------------------

    async def start(self) -> str:
        app = web.Application(client_max_size=100 * 1024**2)
        app.router.add_post("/api/{method}", self._api)
        app.router.add_get("/api/{method}", self._api)  # slack-sdk reads with GET + query
        app.router.add_get("/files/{id}/{name}", self._download)
        app.router.add_post("/response/{id}", self._response)
        app.router.add_post("/upload/v1/{id}", self._upload)
        app.router.add_get("/socket", self._socket)
        app.router.add_get("/oauth/v2/authorize", self._oauth_authorize)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.base_url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self.base_url

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/api/"

    async def close(self) -> None:
        for ws in self.sockets:
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    # -- test helpers ------------------------------------------------------

    def next_ts(self) -> str:
        """A new ts: 1700000001.000100, 1700000002.000100, ... and always after any ts
        seeded or handed out before (as Slack's are)."""
        us = (1_700_000_000 + next(self._ts)) * 1_000_000 + 100
        self._last_us = us = max(us, self._last_us + 1)
        return format_ts(us)

    def add_message(
        self,
        channel: str,
        user: str,
        text: str,
        thread_ts: str | None = None,
        files: list[dict[str, Any]] | None = None,
    ) -> Message:
        m = Message(
            channel,
            self.next_ts(),
            user,
            text,
            thread_ts,
            files=files or [],
            subtype="file_share" if files else None,
        )
        return self._store(m)

    def calls_to(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    def thread(self, channel: str, thread_ts: str) -> list[Message]:
        return sorted(
            (
                m
                for m in self.messages.values()
                if m.channel == channel and (m.thread_ts == thread_ts or m.ts == thread_ts)
            ),
            key=lambda m: ts_key(m.ts),
        )

    def bot_messages(self, channel: str, thread_ts: str | None = None) -> list[Message]:
        """The messages of the bot (of the channel's workspace) in `channel`, oldest first."""
        bot = self.bot_in(channel)
        out = [m for m in self.messages.values() if m.channel == channel and m.user == bot]
        if thread_ts is not None:
            out = [m for m in out if m.thread_ts == thread_ts]
        return sorted(out, key=lambda m: ts_key(m.ts))

    def sent_texts(self) -> list[str]:
        """Every text the bot asked Slack to show: posts, edits and stream chunks, with
        the markdown blocks' text (what a user would see, and what could ping)."""
        out: list[str] = []
        for c in self.calls:
            if c.method in ("chat.postMessage", "chat.update"):
                out.append(str(c.args.get("text") or ""))
                out += [str(b.get("text", "")) for b in c.args.get("blocks") or []]
            elif c.method in ("chat.startStream", "chat.appendStream", "chat.stopStream"):
                out.append(str(c.args.get("markdown_text") or ""))
        return out

    def count_429(self) -> int:
        return sum(1 for c in self.calls if c.status == 429)

    # -- handlers ----------------------------------------------------------

    _ok = staticmethod(api_ok)
    _err = staticmethod(api_err)

    async def _args(self, request: web.Request) -> dict[str, Any]:
        data: dict[str, Any] = dict(request.query)
        if request.method == "POST" and request.content_type == "application/json":
            data.update(await request.json())
        elif request.method == "POST":
            data.update(await request.post())
        for key in ("blocks", "chunks", "attachments"):
            if isinstance(data.get(key), str):
                data[key] = json.loads(data[key])
        return dict(data)

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        args = await self._args(request)
        call = Call(method, args, time.monotonic())
        self.calls.append(call)
        header = request.headers.get("Authorization")
        if method == "oauth.v2.access":  # the app's client id and secret, no token
            answer = self.oauth_v2_access(header, args)
            result = json.loads(answer.text or "{}")
            if result.get("ok"):
                call.team = result["team"]["id"]
            else:
                call.error = result.get("error")
            return answer
        token: Token | None = None
        if method == "apps.connections.open":  # the app-level token
            if header != f"Bearer {APP_TOKEN}":
                call.error = "invalid_auth"
                return self._err("invalid_auth")
        else:
            found = self.authenticate(header, args)
            if isinstance(found, str):
                call.error = found
                return self._err(found)
            token = found
            call.team = token.team
            if (refused := self._refused(call, token, args)) is not None:
                return refused
        limit = self.limits.get(method)
        if self.forced_429[method] > 0 or limit is not None:
            wait = 0.0
            if self.forced_429[method] > 0:
                self.forced_429[method] -= 1
                wait = 1.0
            elif limit is not None:
                rate, burst, scope = limit
                channel = str(args.get("channel") or args.get("channel_id"))
                key = (
                    method,
                    channel if scope == "channel" else self.channel_team.get(channel, TEAM),
                )
                bucket = self.buckets.setdefault(key, Bucket(rate, burst))
                wait = bucket.take()
            if wait > 0:
                call.status, call.error = 429, "ratelimited"
                call.retry_after = max(1, math.ceil(wait))
                return self._err("ratelimited", 429, {"Retry-After": str(int(call.retry_after))})
        if self.delays.get(method):
            await asyncio.sleep(self.delays[method])
        handler = getattr(self, "_" + method.replace(".", "_"), None)
        if handler is None:
            call.error = "unknown_method"
            return self._err("unknown_method")
        reset = _CALLER.set(token)
        try:
            resp: web.Response = await handler(args)
        finally:
            _CALLER.reset(reset)
        body = json.loads(resp.text or "{}")
        if not body.get("ok"):
            call.error = body.get("error")
        return resp

    def _refused(self, call: Call, token: Token, args: dict[str, Any]) -> web.Response | None:
        """missing_scope, or channel_not_found for a channel of another workspace."""
        needed = NEEDS_SCOPE.get(call.method)
        granted = self.scopes_of(token)
        if needed is not None and needed not in granted:
            call.error = "missing_scope"
            return web.json_response(
                {
                    "ok": False,
                    "error": "missing_scope",
                    "needed": needed,
                    "provided": ",".join(sorted(granted)),
                }
            )
        for channel in self._channels_named(args):
            if not self.reaches(token, channel):
                call.error = "channel_not_found"
                return self._err("channel_not_found")
        return None

    @staticmethod
    def _channels_named(args: dict[str, Any]) -> list[str]:
        """The channels a call names (channel, channel_id, channels as a comma list)."""
        out = [str(args[k]) for k in ("channel", "channel_id") if args.get(k)]
        if args.get("channels"):
            out += [c for c in str(args["channels"]).split(",") if c]
        return out

    def _check_content(self, args: dict[str, Any]) -> str | None:
        text = str(args.get("text") or "")
        if len(text) > TEXT_LIMIT:
            return "msg_too_long"
        blocks = args.get("blocks") or []
        if block_errors(blocks):
            return "invalid_blocks"
        if not text and not blocks and not args.get("markdown_text"):
            return "no_text"
        return None

    def _content_error(self, args: dict[str, Any]) -> web.Response | None:
        err = self._check_content(args)
        if err is None:
            return None
        messages = block_errors(args.get("blocks") or []) if err == "invalid_blocks" else None
        return self._err(err, messages=messages)

    async def _apps_connections_open(self, args: dict[str, Any]) -> web.Response:
        return self._ok(url=self.base_url.replace("http://", "ws://") + "/socket")

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.sockets.append(ws)
        await ws.send_json(
            {
                "type": "hello",
                "num_connections": len(self.sockets),
                "connection_info": {"app_id": "A0APP"},
            }
        )
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            eid = data.get("envelope_id")
            if eid:
                self.acks[eid] = (time.monotonic(), data)
                waiter = self._ack_waiters.pop(eid, None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(data)
        self.sockets.remove(ws)
        return ws

    async def push(
        self, kind: str, payload: dict[str, Any], *, timeout_s: float = 3.0
    ) -> dict[str, Any]:
        """Send a Socket Mode envelope; returns the ack, which must come within Slack's 3 s."""
        eid = f"env-{next(self._envelopes)}"
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._ack_waiters[eid] = fut
        await self.sockets[-1].send_json(
            {
                "envelope_id": eid,
                "type": kind,
                "payload": payload,
                "accepts_response_payload": kind != "events_api",
                "retry_attempt": 0,
                "retry_reason": "",
            }
        )
        return await asyncio.wait_for(fut, timeout_s)

    async def _chat_postMessage(self, args: dict[str, Any]) -> web.Response:
        if (resp := self._content_error(args)) is not None:
            return resp
        channel = str(args["channel"])
        m = Message(
            channel,
            self.next_ts(),
            self.bot_in(channel),
            str(args.get("text") or ""),
            args.get("thread_ts") or None,
            list(args.get("blocks") or []),
            self.bot_id_in(channel),
        )
        if m.thread_ts and str(args.get("reply_broadcast", "")).lower() in ("1", "true"):
            m.subtype = "thread_broadcast"
        m.history.append(m.visible())
        self._store(m)
        return self._ok(channel=m.channel, ts=m.ts, message={"text": m.text, "ts": m.ts})

    async def _chat_update(self, args: dict[str, Any]) -> web.Response:
        m = self.messages.get((str(args.get("channel")), str(args.get("ts"))))
        if m is None:
            return self._err("message_not_found")
        if m.user != self.bot_in(m.channel):
            return self._err("cant_update_message")
        if (resp := self._content_error(args)) is not None:
            return resp
        m.text = str(args.get("text") or "")
        m.blocks = list(args.get("blocks") or [])
        m.history.append(m.visible())
        return self._ok(channel=m.channel, ts=m.ts, text=m.text)

    async def _chat_startStream(self, args: dict[str, Any]) -> web.Response:
        if args.get("channel", "").startswith("C") and not (
            args.get("recipient_user_id") and args.get("recipient_team_id")
        ):
            return self._err("missing_recipient")
        channel = str(args["channel"])
        m = Message(
            channel,
            self.next_ts(),
            self.bot_in(channel),
            str(args.get("markdown_text") or ""),
            args.get("thread_ts") or None,
            [],
            self.bot_id_in(channel),
        )
        m.history.append(m.text)
        self._store(m)
        return self._ok(channel=m.channel, ts=m.ts)

    async def _chat_appendStream(self, args: dict[str, Any]) -> web.Response:
        m = self.messages.get((str(args.get("channel")), str(args.get("ts"))))
        if m is None:
            return self._err("message_not_found")
        text = str(args.get("markdown_text") or "")
        if len(text) > MARKDOWN_BLOCK_LIMIT:
            return self._err("msg_too_long")
        m.text += text
        m.history.append(m.text)
        return self._ok(channel=m.channel, ts=m.ts)

    async def _chat_stopStream(self, args: dict[str, Any]) -> web.Response:
        m = self.messages.get((str(args.get("channel")), str(args.get("ts"))))
        if m is None:
            return self._err("message_not_found")
        m.text += str(args.get("markdown_text") or "")
        return self._ok(channel=m.channel, ts=m.ts, message={"text": m.text})

    async def _users_info(self, args: dict[str, Any]) -> web.Response:
        user = self.users.get(str(args.get("user")))
        return self._ok(user=user) if user else self._err("user_not_found")

    async def _files_info(self, args: dict[str, Any]) -> web.Response:
        f = self.files.get(str(args.get("file")))
        return self._ok(file=f[0]) if f else self._err("file_not_found")

    async def _assistant_threads_setStatus(self, args: dict[str, Any]) -> web.Response:
        self.statuses.append(
            (
                str(args.get("channel_id") or ""),
                str(args.get("thread_ts") or ""),
                str(args.get("status") or ""),
            )
        )
        return self._ok()

    async def _chat_postEphemeral(self, args: dict[str, Any]) -> web.Response:
        channel, user = str(args.get("channel") or ""), str(args.get("user") or "")
        if not user:
            return self._err("invalid_arguments")
        if (err := self._access(channel)) is not None:
            return self._err(err)
        if not self.is_member(channel, user):
            return self._err("user_not_in_channel")
        if (resp := self._content_error(args)) is not None:
            return resp
        ts = self.next_ts()
        self.ephemerals.append(
            {
                "channel": channel,
                "user": user,
                "text": str(args.get("text") or ""),
                "blocks": list(args.get("blocks") or []),
                "thread_ts": args.get("thread_ts") or None,
                "message_ts": ts,
            }
        )
        return self._ok(message_ts=ts)

    async def _team_info(self, args: dict[str, Any]) -> web.Response:
        team = str(args.get("team") or self.caller().team)
        ws = self.workspaces.get(team) or self.workspaces[TEAM]
        return self._ok(
            team={
                "id": team,
                "name": ws.name,
                "domain": ws.domain,
                "email_domain": "",
                "url": ws.url,
                "icon": {"image_default": True},
            }
        )

    async def _assistant_threads_setSuggestedPrompts(self, args: dict[str, Any]) -> web.Response:
        return self._ok()

    async def _assistant_threads_setTitle(self, args: dict[str, Any]) -> web.Response:
        return self._ok()

    async def _download(self, request: web.Request) -> web.Response:
        self.calls.append(
            Call("files.download", {"id": request.match_info["id"]}, time.monotonic())
        )
        f = self.files.get(request.match_info["id"])
        authorised = self.live_token(request.headers.get("Authorization")) is not None
        if not authorised or f is None or not self.files_scope:
            # What Slack does without a token or the files:read scope: a 200 login page.
            return web.Response(body=LOGIN_PAGE, content_type="text/html")
        return web.Response(body=f[1], content_type=f[0]["mimetype"])

    async def _response(self, request: web.Request) -> web.Response:
        self.responses.append({"id": request.match_info["id"], **(await request.json())})
        return web.Response(text="ok")


class SlackDriver:
    """Sends what Slack sends: signed events, slash commands and shortcuts."""

    def __init__(self, fake: FakeSlack, events_url: str, secret: str = SIGNING_SECRET) -> None:
        self.fake = fake
        self.url = events_url
        self.verifier = SignatureVerifier(secret)
        self._ids = itertools.count(1)
        self.last_response_url = ""
        self.session = aiohttp.ClientSession()

    async def close(self) -> None:
        await self.session.close()

    def _headers(
        self, body: str, content_type: str, *, timestamp: int | None = None
    ) -> dict[str, str]:
        ts = str(timestamp if timestamp is not None else int(time.time()))
        return {
            "Content-Type": content_type,
            "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": self.verifier.generate_signature(timestamp=ts, body=body),
        }

    async def post(
        self,
        body: str,
        content_type: str,
        *,
        headers: dict[str, str] | None = None,
        timestamp: int | None = None,
        forge: bool = False,
    ) -> tuple[int, str]:
        h = self._headers(body, content_type, timestamp=timestamp)
        if forge:
            h["X-Slack-Signature"] = "v0=" + "0" * 64
        h.update(headers or {})
        async with self.session.post(self.url, data=body.encode(), headers=h) as r:
            return r.status, await r.text()

    def _event_team(self, event: dict[str, Any]) -> str:
        """The workspace of an event: its `team` when that is a registered workspace."""
        team = event.get("team")
        return team if isinstance(team, str) and team in self.fake.workspaces else TEAM

    def envelope(
        self, event: dict[str, Any], event_id: str | None = None, *, team: str | None = None
    ) -> dict[str, Any]:
        """The Events API envelope of `event` for `team` (default: the event's `team` when
        it is a workspace added with `add_workspace`, else TEAM)."""
        team = team or self._event_team(event)
        return envelope(
            team,
            self.fake.bot_user_of(team),
            event,
            event_id or f"Ev{next(self._ids):06d}",
            app_id=self.fake.oauth_app_id,
        )

    async def post_envelope(
        self, body: dict[str, Any], *, retry: int | None = None, **kw: Any
    ) -> tuple[int, str]:
        """Post a ready envelope (e.g. one of `FakeSlack.uninstall`'s), signed."""
        headers = (
            {"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"}
            if retry
            else None
        )
        return await self.post(json.dumps(body), "application/json", headers=headers, **kw)

    async def event(
        self,
        event: dict[str, Any],
        *,
        event_id: str | None = None,
        retry: int | None = None,
        team: str | None = None,
        **kw: Any,
    ) -> tuple[int, str]:
        return await self.post_envelope(
            self.envelope(event, event_id, team=team), retry=retry, **kw
        )

    def message(
        self,
        channel: str,
        user: str,
        text: str,
        *,
        thread_ts: str | None = None,
        files: list[dict[str, Any]] | None = None,
        channel_type: str = "channel",
        team: str | None = None,
    ) -> dict[str, Any]:
        """Record the message in the fake (so conversations.replies sees it) and build its
        event. `team`: the sender's workspace (default: the channel's, see `team_of`)."""
        m = self.fake.add_message(channel, user, text, thread_ts, files)
        ev: dict[str, Any] = {
            "type": "message",
            "channel": channel,
            "user": user,
            "text": text,
            "ts": m.ts,
            "channel_type": channel_type,
            "team": team or self.fake.team_of(channel),
        }
        if thread_ts:
            ev["thread_ts"] = thread_ts
        if files:
            ev["files"] = files
            ev["subtype"] = "file_share"
        return ev

    @staticmethod
    def as_mention(ev: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in ev.items() if k not in ("channel_type", "subtype")}
        out["type"] = "app_mention"
        return out

    def _user_name(self, user: str) -> str:
        return str(self.fake.users.get(user, {}).get("name") or user.lower())

    def _channel_name(self, channel: str) -> str:
        if channel.startswith("D"):
            return "directmessage"
        info = self.fake.channels.get(channel)
        if info is None:
            return "general"
        return "privategroup" if info.get("is_private") else str(info["name"])

    async def command(
        self,
        command: str,
        text: str = "",
        *,
        user: str = "U1ADA",
        channel: str = "C1GEN",
        team: str = TEAM,
    ) -> tuple[int, str]:
        """A slash command as Slack posts it (form-encoded). Slack sends no thread_ts: a
        command typed in a thread's reply box cannot be told from one in the channel.
        The response_url is `self.last_response_url` (answers land in `fake.responses`)."""
        rid = f"r{next(self._ids)}"
        name = self._channel_name(channel)
        self.fake._register(channel)
        self.last_response_url = f"{self.fake.base_url}/response/{rid}"
        form = {
            "token": "legacy",
            "team_id": team,
            "team_domain": "test",
            "channel_id": channel,
            "channel_name": name,
            "user_id": user,
            "user_name": self._user_name(user),
            "command": command,
            "text": text,
            "api_app_id": "A0APP",
            "is_enterprise_install": "false",
            "response_url": self.last_response_url,
            "trigger_id": f"t{rid}",
        }
        return await self.post(urlencode(form), "application/x-www-form-urlencoded")

    async def shortcut(
        self, callback_id: str, message: Message, *, user: str = "U1ADA", team: str = TEAM
    ) -> tuple[int, str]:
        """A message shortcut (`message_action`) used on `message`; the message is shown as
        the Web API shows it (thread_ts on replies and on thread parents, files, bot_id)."""
        rid = f"r{next(self._ids)}"
        self.last_response_url = f"{self.fake.base_url}/response/{rid}"
        payload = {
            "type": "message_action",
            "callback_id": callback_id,
            "trigger_id": f"t{rid}",
            "action_ts": f"{time.time():.6f}",
            "team": {"id": team, "domain": "test"},
            "user": {
                "id": user,
                "username": self._user_name(user),
                "name": self._user_name(user),
                "team_id": team,
            },
            "channel": {"id": message.channel, "name": self._channel_name(message.channel)},
            "is_enterprise_install": False,
            "enterprise": None,
            "message": self.fake.message_api(message),
            "message_ts": message.ts,
            "response_url": self.last_response_url,
            "api_app_id": "A0APP",
            "token": "legacy",
        }
        return await self.post(
            urlencode({"payload": json.dumps(payload)}), "application/x-www-form-urlencoded"
        )
