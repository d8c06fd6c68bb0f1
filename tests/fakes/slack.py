"""A fake Slack on 127.0.0.1: the Web API methods the adapter uses, with Slack's limits,
file downloads that need the bot token, and a driver that sends signed events, slash
commands and shortcuts to the service over HTTP.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import aiohttp
from aiohttp import web
from slack_sdk.signature import SignatureVerifier

BOT_TOKEN = "xoxb-fake-bot-token"
APP_TOKEN = "xapp-fake-app-token"
SIGNING_SECRET = "fake-signing-secret"
TEAM = "T0TEAM"
BOT_USER = "U0BOT"
BOT_ID = "B0BOT"
LOGIN_PAGE = b"<!DOCTYPE html><html><head><title>Slack</title></head><body>Sign in</body></html>"
TEXT_LIMIT = 40_000
MARKDOWN_BLOCK_LIMIT = 12_000


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


@dataclass
class Call:
    method: str
    args: dict[str, Any]
    at: float
    status: int = 200
    error: str | None = None


@dataclass
class Message:
    channel: str
    ts: str
    user: str
    text: str
    thread_ts: str | None = None
    blocks: list[Any] = field(default_factory=list)
    bot_id: str | None = None
    files: list[dict[str, Any]] = field(default_factory=list)
    history: list[str] = field(default_factory=list)

    def as_api(self, *, in_thread: bool) -> dict[str, Any]:
        """The message as conversations.replies / conversations.history return it."""
        out: dict[str, Any] = {
            "type": "message",
            "user": self.user,
            "text": self.text,
            "ts": self.ts,
        }
        if in_thread:
            out["thread_ts"] = self.thread_ts or self.ts
        if self.bot_id:
            out["bot_id"] = self.bot_id
        if self.files:
            out["files"] = self.files
        return out

    def visible(self) -> str:
        for b in self.blocks:
            if b.get("type") == "markdown":
                return str(b.get("text", ""))
        return self.text


class FakeSlack:
    """Web API + files + response URLs. Limits: chat.postMessage ~1/s per channel (burst 3),
    chat.update 50/min per workspace (burst 5), chat.appendStream 100/min per workspace."""

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
        self.files: dict[str, tuple[dict[str, Any], bytes]] = {}
        self.responses: list[dict[str, Any]] = []
        self.buckets: dict[tuple[str, str], Bucket] = {}
        self.limits = {
            "chat.postMessage": (1.0, 3, "channel"),
            "chat.update": (50 / 60, 5, "team"),
            "chat.appendStream": (100 / 60, 10, "team"),
        }
        self.forced_429: dict[str, int] = defaultdict(int)
        self.delays: dict[str, float] = {}  # method -> seconds before it answers
        self.channel_team: dict[str, str] = {}  # channel -> workspace, for per-team limits
        self.files_scope = True  # False: downloads get the login page, as without files:read
        self._ts = itertools.count(1)
        self._envelopes = itertools.count(1)
        self.sockets: list[web.WebSocketResponse] = []
        self.acks: dict[str, tuple[float, dict[str, Any]]] = {}
        self._ack_waiters: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.base_url = ""
        self._runner: web.AppRunner | None = None

    # -- lifecycle ---------------------------------------------------------

    async def start(self) -> str:
        app = web.Application(client_max_size=100 * 1024**2)
        app.router.add_post("/api/{method}", self._api)
        app.router.add_get("/api/{method}", self._api)  # slack-sdk reads with GET + query
        app.router.add_get("/files/{id}/{name}", self._download)
        app.router.add_post("/response/{id}", self._response)
        app.router.add_get("/socket", self._socket)
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
        return f"{1_700_000_000 + next(self._ts)}.000100"

    def add_message(
        self,
        channel: str,
        user: str,
        text: str,
        thread_ts: str | None = None,
        files: list[dict[str, Any]] | None = None,
    ) -> Message:
        m = Message(channel, self.next_ts(), user, text, thread_ts, files=files or [])
        self.messages[(channel, m.ts)] = m
        return m

    def add_file(
        self,
        name: str,
        data: bytes,
        *,
        mimetype: str = "application/octet-stream",
        check_file_info: bool = False,
    ) -> dict[str, Any]:
        fid = f"F{len(self.files) + 1:04d}"
        info = {
            "id": fid,
            "name": name,
            "title": name,
            "mimetype": mimetype,
            "size": len(data),
            "url_private": f"{self.base_url}/files/{fid}/{name}",
            "url_private_download": f"{self.base_url}/files/{fid}/{name}",
        }
        self.files[fid] = (info, data)
        if check_file_info:
            return {"id": fid, "file_access": "check_file_info"}
        return dict(info)

    def calls_to(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    def thread(self, channel: str, thread_ts: str) -> list[Message]:
        return sorted(
            (
                m
                for m in self.messages.values()
                if m.channel == channel and (m.thread_ts == thread_ts or m.ts == thread_ts)
            ),
            key=lambda m: float(m.ts),
        )

    def bot_messages(self, channel: str, thread_ts: str | None = None) -> list[Message]:
        out = [m for m in self.messages.values() if m.channel == channel and m.user == BOT_USER]
        if thread_ts is not None:
            out = [m for m in out if m.thread_ts == thread_ts]
        return sorted(out, key=lambda m: float(m.ts))

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

    @staticmethod
    def _ok(**data: Any) -> web.Response:
        return web.json_response({"ok": True, **data})

    @staticmethod
    def _err(error: str, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
        return web.json_response({"ok": False, "error": error}, status=status, headers=headers)

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
        token = APP_TOKEN if method == "apps.connections.open" else BOT_TOKEN
        if request.headers.get("Authorization") != f"Bearer {token}":
            call.error = "invalid_auth"
            return self._err("invalid_auth")
        limit = self.limits.get(method)
        if self.forced_429[method] > 0 or limit is not None:
            wait = 0.0
            if self.forced_429[method] > 0:
                self.forced_429[method] -= 1
                wait = 1.0
            elif limit is not None:
                rate, burst, scope = limit
                channel = str(args.get("channel"))
                key = (
                    method,
                    channel if scope == "channel" else self.channel_team.get(channel, TEAM),
                )
                bucket = self.buckets.setdefault(key, Bucket(rate, burst))
                wait = bucket.take()
            if wait > 0:
                call.status, call.error = 429, "ratelimited"
                return self._err("ratelimited", 429, {"Retry-After": str(max(1, math.ceil(wait)))})
        if self.delays.get(method):
            await asyncio.sleep(self.delays[method])
        handler = getattr(self, "_" + method.replace(".", "_"), None)
        if handler is None:
            call.error = "unknown_method"
            return self._err("unknown_method")
        resp: web.Response = await handler(args)
        body = json.loads(resp.text or "{}")
        if not body.get("ok"):
            call.error = body.get("error")
        return resp

    def _check_content(self, args: dict[str, Any]) -> str | None:
        text = str(args.get("text") or "")
        if len(text) > TEXT_LIMIT:
            return "msg_too_long"
        blocks = args.get("blocks") or []
        if len(blocks) > 50:
            return "invalid_blocks"
        for b in blocks:
            if b.get("type") == "markdown" and len(b.get("text", "")) > MARKDOWN_BLOCK_LIMIT:
                return "invalid_blocks"
        if not text and not blocks and not args.get("markdown_text"):
            return "no_text"
        return None

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

    async def _auth_test(self, args: dict[str, Any]) -> web.Response:
        return self._ok(
            user_id=BOT_USER,
            bot_id=BOT_ID,
            team_id=TEAM,
            user="gemini",
            team="Test",
            url="https://test.slack.com/",
        )

    async def _chat_postMessage(self, args: dict[str, Any]) -> web.Response:
        if (err := self._check_content(args)) is not None:
            return self._err(err)
        m = Message(
            str(args["channel"]),
            self.next_ts(),
            BOT_USER,
            str(args.get("text") or ""),
            args.get("thread_ts") or None,
            list(args.get("blocks") or []),
            BOT_ID,
        )
        m.history.append(m.visible())
        self.messages[(m.channel, m.ts)] = m
        return self._ok(channel=m.channel, ts=m.ts, message={"text": m.text, "ts": m.ts})

    async def _chat_update(self, args: dict[str, Any]) -> web.Response:
        m = self.messages.get((str(args.get("channel")), str(args.get("ts"))))
        if m is None:
            return self._err("message_not_found")
        if m.user != BOT_USER:
            return self._err("cant_update_message")
        if (err := self._check_content(args)) is not None:
            return self._err(err)
        m.text = str(args.get("text") or "")
        m.blocks = list(args.get("blocks") or [])
        m.history.append(m.visible())
        return self._ok(channel=m.channel, ts=m.ts, text=m.text)

    async def _chat_startStream(self, args: dict[str, Any]) -> web.Response:
        if args.get("channel", "").startswith("C") and not (
            args.get("recipient_user_id") and args.get("recipient_team_id")
        ):
            return self._err("missing_recipient")
        m = Message(
            str(args["channel"]),
            self.next_ts(),
            BOT_USER,
            str(args.get("markdown_text") or ""),
            args.get("thread_ts") or None,
            [],
            BOT_ID,
        )
        m.history.append(m.text)
        self.messages[(m.channel, m.ts)] = m
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

    async def _conversations_replies(self, args: dict[str, Any]) -> web.Response:
        msgs = self.thread(str(args["channel"]), str(args["ts"]))
        return self._ok(messages=[m.as_api(in_thread=True) for m in msgs], has_more=False)

    async def _conversations_history(self, args: dict[str, Any]) -> web.Response:
        channel = str(args["channel"])
        msgs = sorted(
            (m for m in self.messages.values() if m.channel == channel and m.thread_ts is None),
            key=lambda m: -float(m.ts),
        )
        return self._ok(messages=[m.as_api(in_thread=False) for m in msgs], has_more=False)

    async def _users_info(self, args: dict[str, Any]) -> web.Response:
        user = self.users.get(str(args.get("user")))
        return self._ok(user=user) if user else self._err("user_not_found")

    async def _files_info(self, args: dict[str, Any]) -> web.Response:
        f = self.files.get(str(args.get("file")))
        return self._ok(file=f[0]) if f else self._err("file_not_found")

    async def _chat_getPermalink(self, args: dict[str, Any]) -> web.Response:
        return self._ok(
            permalink="https://test.slack.com/archives/"
            f"{args['channel']}/p{str(args['message_ts']).replace('.', '')}"
        )

    async def _assistant_threads_setStatus(self, args: dict[str, Any]) -> web.Response:
        return self._ok()

    async def _assistant_threads_setSuggestedPrompts(self, args: dict[str, Any]) -> web.Response:
        return self._ok()

    async def _assistant_threads_setTitle(self, args: dict[str, Any]) -> web.Response:
        return self._ok()

    async def _download(self, request: web.Request) -> web.Response:
        self.calls.append(
            Call("files.download", {"id": request.match_info["id"]}, time.monotonic())
        )
        f = self.files.get(request.match_info["id"])
        authorised = request.headers.get("Authorization") == f"Bearer {BOT_TOKEN}"
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

    def envelope(self, event: dict[str, Any], event_id: str | None = None) -> dict[str, Any]:
        return {
            "token": "legacy",
            "team_id": TEAM,
            "api_app_id": "A0APP",
            "type": "event_callback",
            "event": event,
            "event_id": event_id or f"Ev{next(self._ids):06d}",
            "event_time": int(time.time()),
            "authorizations": [{"team_id": TEAM, "user_id": BOT_USER, "is_bot": True}],
        }

    async def event(
        self,
        event: dict[str, Any],
        *,
        event_id: str | None = None,
        retry: int | None = None,
        **kw: Any,
    ) -> tuple[int, str]:
        headers = (
            {"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"}
            if retry
            else None
        )
        return await self.post(
            json.dumps(self.envelope(event, event_id)), "application/json", headers=headers, **kw
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
    ) -> dict[str, Any]:
        """Record the message in the fake (so conversations.replies sees it) and build its event."""
        m = self.fake.add_message(channel, user, text, thread_ts, files)
        ev: dict[str, Any] = {
            "type": "message",
            "channel": channel,
            "user": user,
            "text": text,
            "ts": m.ts,
            "channel_type": channel_type,
            "team": TEAM,
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

    async def command(
        self, command: str, text: str = "", *, user: str = "U1ADA", channel: str = "C1GEN"
    ) -> tuple[int, str]:
        rid = f"r{next(self._ids)}"
        form = {
            "token": "legacy",
            "team_id": TEAM,
            "team_domain": "test",
            "channel_id": channel,
            "channel_name": "general",
            "user_id": user,
            "user_name": "ada",
            "command": command,
            "text": text,
            "api_app_id": "A0APP",
            "response_url": f"{self.fake.base_url}/response/{rid}",
            "trigger_id": f"t{rid}",
        }
        return await self.post(urlencode(form), "application/x-www-form-urlencoded")

    async def shortcut(
        self, callback_id: str, message: Message, *, user: str = "U1ADA"
    ) -> tuple[int, str]:
        rid = f"r{next(self._ids)}"
        payload = {
            "type": "message_action",
            "callback_id": callback_id,
            "trigger_id": f"t{rid}",
            "team": {"id": TEAM, "domain": "test"},
            "user": {"id": user, "name": "ada", "team_id": TEAM},
            "channel": {"id": message.channel, "name": "general"},
            "message": {
                "type": "message",
                "user": message.user,
                "ts": message.ts,
                "text": message.text,
                **({"thread_ts": message.thread_ts} if message.thread_ts else {}),
                **({"files": message.files} if message.files else {}),
            },
            "message_ts": message.ts,
            "response_url": f"{self.fake.base_url}/response/{rid}",
            "api_app_id": "A0APP",
            "token": "legacy",
        }
        return await self.post(
            urlencode({"payload": json.dumps(payload)}), "application/x-www-form-urlencoded"
        )
