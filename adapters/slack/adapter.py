"""SlackAdapter: Bolt events, commands and shortcuts -> ConversationEngine.

Rules (DESIGN §5): a mention in a channel is answered in a thread under it; later
messages in a thread the bot has a conversation for continue it without a mention (unless
SLACK_REQUIRE_MENTION); a mention in a thread the bot never joined reads the thread first;
every DM is answered, each top-level DM opening its own conversation. Each message is
handled once, however often Slack delivers it (its channel+ts is stored).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiohttp
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.app.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.logger.messages import warning_token_skipped
from slack_bolt.middleware.assistant.async_assistant import AsyncAssistant
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.commands import SlackCommands
from adapters.slack.edge import events_handler
from adapters.slack.events import MessageEvent, api_messages, parse, ts_value
from adapters.slack.files import SlackFiles
from adapters.slack.inbox import Inbox
from adapters.slack.target import SlackReplyTarget
from adapters.slack.text import mentions, readable, user_ids
from bot.access import AccessPolicy
from bot.commands import Commands
from bot.engine import ConversationEngine
from bot.personas import take_persona
from bot.types import Author, IncomingMessage, ThreadKey

log = logging.getLogger(__name__)

HANDLED_SUBTYPES = {None, "file_share", "thread_broadcast"}
THREAD_CONTEXT_LIMIT = 50
THINKING = "is thinking…"
TITLE_CHARS = 80
SUGGESTED_PROMPTS = [
    {"title": "Summarise a file", "message": "Summarise the file I am about to attach."},
    {"title": "Explain some code", "message": "Explain what this code does and spot any bugs:"},
    {"title": "Improve my writing", "message": "+editor Make this clearer and shorter:"},
]
NAME_RETRY_S = 300.0  # a failed users.info is tried again after this, not cached forever


def _drop_token_skipped(record: logging.LogRecord) -> bool:
    return record.getMessage() != warning_token_skipped()


class SlackAdapter:
    """One Slack app (one workspace) on the shared engine."""

    name = "slack"

    def __init__(
        self,
        *,
        engine: ConversationEngine,
        commands: Commands,
        access: AccessPolicy,
        bot_token: str,
        signing_secret: str | None = None,
        app_token: str | None = None,
        api_url: str | None = None,
        native_streaming: bool = False,
        require_mention: bool = False,
        max_file_bytes: int = 50 * 1024 * 1024,
    ) -> None:
        self.engine = engine
        self.commands = commands
        self.access = access
        self.app_token = app_token
        self.native_streaming = native_streaming
        self.require_mention = require_mention
        self.client = AsyncWebClient(token=bot_token, base_url=api_url or "https://slack.com/api/")
        self.files = SlackFiles(client=self.client, token=bot_token, max_bytes=max_file_bytes)
        self._bot_token = bot_token
        self._signing_secret = signing_secret or ""
        self.inbox = Inbox()
        self._identity: asyncio.Future[None] | None = None

        async def authorize(context: Any) -> AuthorizeResult:
            # Bolt reads this function's parameter names, so it is a plain function.
            return await self._authorize()

        # We pass both a client with our token (for our own calls) and authorize; Bolt warns
        # at start that it will not use the token itself, which is what we want.
        logging.getLogger("slack_bolt.AsyncApp").addFilter(_drop_token_skipped)
        self.app = AsyncApp(
            client=self.client,
            # Our own authorize: one auth.test for the process, not one per concurrent request.
            authorize=authorize,
            signing_secret=signing_secret or "socket-mode-has-no-signing-secret",
            request_verification_enabled=app_token is None,
            # Listeners only start work in self.inbox and return, so acking after them is
            # immediate, and every acknowledged request's work is tracked (drain()).
            process_before_response=True,
        )
        self.bot_user = ""
        self.team = ""
        self._names: dict[str, str] = {}
        self._name_failed: dict[str, float] = {}  # uid -> when users.info last failed
        self.name_retry_s = NAME_RETRY_S
        self._name_lookups: dict[str, asyncio.Future[str | None]] = {}
        self.bot_id = ""
        self._connected = False
        self._stopped = asyncio.Event()
        self._socket: Any = None
        self._register()

    # -- lifecycle ---------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True once auth.test succeeded (and the socket is up in Socket Mode)."""
        return self._connected

    def mount(self, app: web.Application, path: str = "/slack/events") -> None:
        """Serve the Events API (HTTP mode) on the service's HTTP server; size, signature
        and shape are checked (adapters/slack/edge.py) before Bolt parses anything."""

        async def dispatch(body: str, headers: Any, query: str) -> web.Response:
            try:
                request = AsyncBoltRequest(body=body, query=query, headers=dict(headers))
            except Exception as exc:  # what shape.py let through and Bolt still cannot read
                log.warning("slack: Bolt could not read a request: %r", exc)
                return web.Response(status=400)
            return await to_aiohttp_response(await self.app.async_dispatch(request))

        app.router.add_post(path, events_handler(secret=self._signing_secret, dispatch=dispatch))

    async def drain(self) -> None:
        """Return once the work of every request acknowledged so far has finished (turns it
        handed to the engine are the engine's: see engine.in_flight)."""
        await self.inbox.drain()

    async def _identify(self) -> None:
        """auth.test, once per process (concurrent callers share the one call)."""
        if self._identity is None:

            async def identify() -> None:
                auth = await self.client.auth_test()
                self.bot_user = str(auth["user_id"])
                self.bot_id = str(auth.get("bot_id") or "")
                self.team = str(auth["team_id"])

            self._identity = asyncio.ensure_future(identify())
        try:
            await asyncio.shield(self._identity)
        except Exception:
            self._identity = None  # let the next caller try again
            raise

    async def _authorize(self) -> AuthorizeResult:
        await self._identify()
        return AuthorizeResult(
            enterprise_id=None,
            team_id=self.team,
            bot_user_id=self.bot_user,
            bot_id=self.bot_id,
            bot_token=self._bot_token,
        )

    async def run(self) -> None:
        """Identify the bot, then serve until aclose()."""
        if self.client.session is None:
            # Without a session slack_sdk opens a new connection (and TLS handshake) per call.
            self.client.session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.client.timeout)
            )
        await self._identify()
        if self.app_token:
            from adapters.slack.socket import CheckedSocketModeHandler, socket_logger

            self._socket = CheckedSocketModeHandler(
                self.app, self.app_token, web_client=self.client, logger=socket_logger()
            )
            await self._socket.connect_async()
        self._connected = True
        log.info(
            "slack: connected as %s in %s (%s mode)",
            self.bot_user,
            self.team,
            "socket" if self.app_token else "http",
        )
        await self._stopped.wait()

    async def aclose(self) -> None:
        """Stop taking events."""
        self._connected = False
        self._stopped.set()
        if self._socket is not None:
            await self._socket.close_async()
        await self.inbox.aclose()
        await self.files.aclose()
        if self.client.session is not None:
            await self.client.session.close()

    # -- wiring ------------------------------------------------------------

    def _register(self) -> None:
        app = self.app
        # Odd payloads that get past shape.py fail in Bolt's middleware: one line, no trace.
        app.error(self._on_bolt_error)
        # The assistant view (DM threads): status while thinking, suggested prompts, titles.
        assistant = AsyncAssistant()
        assistant.thread_started(self._assistant_started)
        assistant.user_message(self._assistant_message)
        app.use(assistant)
        app.event("app_mention")(self._on_message_event)
        app.event("message")(self._on_message_event)
        SlackCommands(self).register()

    async def _on_bolt_error(self, error: Exception, body: dict[str, Any]) -> None:
        label = body.get("event_id") if isinstance(body, dict) else None
        log.warning("slack: could not handle event %s: %r", label or "?", error)

    # -- assistant view ----------------------------------------------------

    async def _assistant_started(self, set_suggested_prompts: Any) -> None:
        self.inbox.spawn(
            set_suggested_prompts(prompts=SUGGESTED_PROMPTS, title="Try one of these:"),
            what="assistant_thread_started",
        )

    async def _assistant_message(
        self, payload: dict[str, Any], body: dict[str, Any], set_status: Any, set_title: Any
    ) -> None:
        event = self._event(payload, body)
        if event is not None:
            turn = self._assistant_turn(event, body, set_status, set_title)
            self.inbox.spawn(turn, what="assistant message")

    async def _assistant_turn(
        self, event: MessageEvent, body: dict[str, Any], set_status: Any, set_title: Any
    ) -> None:
        async def thinking() -> None:
            await set_status(THINKING)

        key = ThreadKey(
            "slack",
            event.team or body.get("team_id") or self.team,
            event.channel or "",
            event.thread_ts or event.ts or "",
        )
        first = await self.engine.store.get_conversation(key) is None
        if await self._prepare(event, body, on_start=thinking) and first:
            title = readable(event.text or "", bot_user=self.bot_user, names={})
            await set_title(title[:TITLE_CHARS] or "New chat")

    # -- messages ----------------------------------------------------------

    async def _on_message_event(self, event: dict[str, Any], body: dict[str, Any]) -> None:
        # Bolt passes listener arguments by name, so the listener takes exactly these.
        parsed = self._event(event, body)
        if parsed is not None:
            self.inbox.spawn(self._prepare(parsed, body), what=f"event {parsed.type}")

    def _event(self, raw: dict[str, Any], body: dict[str, Any]) -> MessageEvent | None:
        """The event as the adapter reads it, or None (logged once) if it does not fit."""
        return parse(MessageEvent, raw, label=f"event {body.get('event_id') or '?'}")

    @property
    def preparing(self) -> int:
        """Messages acknowledged to Slack whose handling has not finished."""
        return self.inbox.pending

    async def _prepare(
        self,
        event: MessageEvent,
        body: dict[str, Any],
        on_start: Callable[[], Awaitable[None]] | None = None,
    ) -> bool:
        """Hand a message to the engine if the bot should answer it; True if it did."""
        if event.subtype not in HANDLED_SUBTYPES or event.bot_id or event.bot_profile:
            return False
        user, channel, ts = event.user, event.channel, event.ts
        if not user or not channel or not ts or user == self.bot_user:
            return False
        team = event.team or str(body.get("team_id") or self.team)
        raw_text = event.text or ""
        is_dm = event.channel_type == "im" or channel.startswith("D")
        thread_ts = event.thread_ts
        mentioned = event.type == "app_mention" or mentions(raw_text, self.bot_user)
        root = thread_ts or ts
        key = ThreadKey("slack", team, channel, root)
        if not is_dm and not mentioned:
            if not thread_ts or self.require_mention:
                return False
            if await self.engine.store.get_conversation(key) is None:
                return False  # a thread the bot is not part of
        if not self.access.allows("slack", user, channel):
            return False
        # Both app_mention and message arrive for one mention, and Slack retries: once only.
        event_id = f"{channel}:{ts}"
        if not await self.engine.claim("slack", event_id):
            return False
        target = self.target(
            team=team, channel=channel, thread_ts=root, user=user, on_start=on_start
        )
        target.begin()  # the placeholder goes out while we read names and the thread
        try:
            context_text = ""
            if mentioned and thread_ts and await self.engine.store.get_conversation(key) is None:
                context_text = await self._thread_context(channel, thread_ts, ts)
            # Slack markup is read once: names first, then a leading "+persona" (DESIGN §5).
            others = [u for u in user_ids(raw_text) if u != self.bot_user]
            names = await self.names_for([user, *others])
            shown = readable(raw_text, bot_user=self.bot_user, names=names)
            persona, body_text = take_persona(shown)
            if persona and not (mentioned or is_dm) and not self.engine.personas.has(persona):
                # "+1 agreed" in a thread is a reply, not a persona nobody asked the bot for.
                persona, body_text = None, shown
            if context_text:
                body_text = f"{context_text}\n\n{body_text}"
            message = IncomingMessage(
                key=key,
                author=Author(user, names.get(user, user)),
                text=body_text,
                attachments=tuple(self.files.attachment(f) for f in event.files or []),
                event_id=event_id,
                persona=persona,
            )
        except Exception:
            log.exception("slack: could not prepare message %s in %s", ts, channel)
            self.engine.release("slack", event_id)
            await target.start()
            await target.fail("Something went wrong reading this message. Please try again.")
            return False
        self.engine.submit(message, target)
        return True

    def target(
        self,
        *,
        team: str,
        channel: str,
        thread_ts: str,
        user: str,
        on_start: Callable[[], Awaitable[None]] | None = None,
    ) -> SlackReplyTarget:
        """A reply target in one thread, streaming as configured (edit or native)."""
        return SlackReplyTarget(
            client=self.client,
            scheduler=self.engine.scheduler,
            team=team,
            channel=channel,
            thread_ts=thread_ts,
            native=self.native_streaming,
            recipient_user=user,
            on_start=on_start,
        )

    async def recovery_target(self, key: ThreadKey, message_ids: Sequence[str]) -> SlackReplyTarget:
        """A target over a reply a crashed process left behind: its messages are edited
        (chat.update, whatever the stream mode was), or a new one is posted if none exist."""
        target = SlackReplyTarget(
            client=self.client,
            scheduler=self.engine.scheduler,
            team=key.workspace_id,
            channel=key.channel_id,
            thread_ts=key.thread_id,
        )
        target.adopt(message_ids)
        return target

    async def _thread_context(self, channel: str, thread_ts: str, before_ts: str) -> str:
        """What was said in a thread before the bot was called into it."""
        try:
            resp = await self.client.conversations_replies(
                channel=channel, ts=thread_ts, limit=THREAD_CONTEXT_LIMIT
            )
        except Exception as exc:
            log.warning("slack: could not read thread %s/%s: %r", channel, thread_ts, exc)
            return ""
        before = ts_value(before_ts)
        earlier = [m for m in api_messages(resp.get("messages")) if ts_value(m.ts) < before]
        if not earlier:
            return ""
        names = await self.names_for([m.user for m in earlier if m.user])
        lines = []
        for m in earlier:
            who = "bot" if m.bot_id else names.get(m.user or "", m.user or "someone")
            lines.append(f"{who}: {readable(m.text or '', bot_user=self.bot_user, names=names)}")
        return "Earlier in this thread:\n" + "\n".join(lines) + "\n\nNow:"

    async def names_for(self, ids: list[str]) -> dict[str, str]:
        """Display names (the id where unknown); concurrent lookups of one user share one
        users.info call. A failed lookup is not cached: it is tried again name_retry_s later."""
        now = asyncio.get_running_loop().time()
        tasks: dict[str, asyncio.Future[str | None]] = {}
        for uid in {i for i in ids if i and i not in self._names}:
            failed_at = self._name_failed.get(uid)
            if failed_at is not None and now - failed_at < self.name_retry_s:
                continue  # failed moments ago: do not ask Slack again for every message
            task = self._name_lookups.get(uid)
            if task is None:
                task = self._name_lookups[uid] = asyncio.ensure_future(self._lookup_name(uid))
            tasks[uid] = task  # held here: another caller may drop it from the map first
        for uid, task in tasks.items():
            name = await asyncio.shield(task)
            self._name_lookups.pop(uid, None)
            if name is None:
                self._name_failed[uid] = now
            else:
                self._names[uid] = name
                self._name_failed.pop(uid, None)
        return {i: self._names.get(i, i) for i in ids}

    async def _lookup_name(self, uid: str) -> str | None:
        try:
            info = (await self.client.users_info(user=uid))["user"]
        except Exception as exc:
            log.warning("slack: users.info for %s failed, showing the id for now: %r", uid, exc)
            return None
        if not isinstance(info, dict):
            log.warning("slack: users.info for %s gave no user object", uid)
            return None
        profile = info.get("profile")
        profile = profile if isinstance(profile, dict) else {}
        for name in (
            profile.get("display_name"),
            profile.get("real_name"),
            info.get("real_name"),
            info.get("name"),
        ):
            if isinstance(name, str) and name.strip():
                return name.strip()[:80]
        return uid
