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
from typing import Any, cast

import aiohttp
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.app.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.logger.messages import warning_token_skipped
from slack_bolt.middleware.assistant.async_assistant import AsyncAssistant
from slack_bolt.oauth.async_oauth_settings import AsyncOAuthSettings
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.commands import SlackCommands
from adapters.slack.edge import events_handler
from adapters.slack.events import MessageEvent, api_messages, parse, ts_value
from adapters.slack.inbox import Inbox
from adapters.slack.installs import SlackInstalls
from adapters.slack.names import Names
from adapters.slack.oauth import mount_oauth
from adapters.slack.target import SlackReplyTarget
from adapters.slack.text import mentions, readable, user_ids
from adapters.slack.uninstall import Uninstalls
from adapters.slack.workspaces import (
    NotInstalled,
    Workspace,
    WorkspaceAuthorize,
    Workspaces,
    installation_team,
)
from bot.access import AccessPolicy
from bot.commands import Commands
from bot.facade import Core
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


def _drop_token_skipped(record: logging.LogRecord) -> bool:
    return record.getMessage() != warning_token_skipped()


class SlackAdapter:
    """One Slack app (one workspace) on the shared engine."""

    name = "slack"

    def __init__(
        self,
        *,
        core: Core,
        commands: Commands,
        access: AccessPolicy,
        bot_token: str | None = None,
        installs: SlackInstalls | None = None,
        oauth: AsyncOAuthSettings | None = None,
        forget_on_uninstall: bool = False,
        signing_secret: str | None = None,
        app_token: str | None = None,
        api_url: str | None = None,
        native_streaming: bool = False,
        require_mention: bool = False,
        max_file_bytes: int = 50 * 1024 * 1024,
    ) -> None:
        self.core = core
        self.commands = commands
        self.access = access
        self.app_token = app_token
        self.native_streaming = native_streaming
        self.require_mention = require_mention
        self.forget_on_uninstall = forget_on_uninstall
        base_url = api_url or "https://slack.com/api/"
        # One workspace (SLACK_BOT_TOKEN) or every workspace that installed the app (OAuth).
        self.workspaces = Workspaces(
            api_url=base_url, max_file_bytes=max_file_bytes, token=bot_token, installs=installs
        )
        # Bolt's own client (OAuth's oauth.v2.access); our calls use each workspace's.
        self.client = AsyncWebClient(token=bot_token, base_url=base_url)
        self._signing_secret = signing_secret or ""
        self.inbox = Inbox()

        # We pass both a client with our token (for our own calls) and authorize; Bolt warns
        # at start that it will not use the token itself, which is what we want.
        logging.getLogger("slack_bolt.AsyncApp").addFilter(_drop_token_skipped)
        self.app = AsyncApp(
            client=self.client,
            # Our own authorize: a workspace's token and ids are read once, not per request.
            # An AsyncAuthorize, as Bolt refuses a plain function beside OAuth settings (and
            # its type hint names only functions, though its code takes one).
            authorize=cast(Callable[..., Awaitable[AuthorizeResult]], WorkspaceAuthorize(self)),
            oauth_settings=oauth,
            signing_secret=signing_secret or "socket-mode-has-no-signing-secret",
            request_verification_enabled=app_token is None,
            # Listeners only start work in self.inbox and return, so acking after them is
            # immediate, and every acknowledged request's work is tracked (drain()).
            process_before_response=True,
        )
        self.bot_user = ""  # the single workspace's (for logs); see Workspace per team
        self.team = ""
        self.names = Names()
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
        flow = self.app.oauth_flow
        if flow is not None:
            mount_oauth(app, flow)

    async def drain(self) -> None:
        """Return once the work of every request acknowledged so far has finished (turns it
        handed to the engine are the engine's: see engine.in_flight)."""
        await self.inbox.drain()

    async def ws(self, team: str) -> Workspace:
        """The workspace `team` (NotInstalled when the app is not installed there)."""
        return await self.workspaces.get(team)

    async def _authorize(self, team: str) -> AuthorizeResult | None:
        try:
            ws = await self.workspaces.get(team)
        except NotInstalled:
            log.warning("slack: an event from %s, where the app is not installed", team)
            return None
        return AuthorizeResult(
            enterprise_id=None,
            team_id=ws.team,
            bot_user_id=ws.bot_user,
            bot_id=ws.bot_id,
            bot_token=ws.client.token,
        )

    async def run(self) -> None:
        """Identify the bot (one workspace), then serve until aclose()."""
        if self.client.session is None:
            # Without a session slack_sdk opens a new connection (and TLS handshake) per call.
            self.client.session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.client.timeout)
            )
        if not self.workspaces.many:
            ws = await self.workspaces.single()
            self.bot_user, self.team = ws.bot_user, ws.team
        if self.app_token:
            from adapters.slack.socket import CheckedSocketModeHandler, socket_logger

            self._socket = CheckedSocketModeHandler(
                self.app, self.app_token, web_client=self.client, logger=socket_logger()
            )
            await self._socket.connect_async()
        self._connected = True
        where = "every workspace that installs it" if self.workspaces.many else self.team
        log.info(
            "slack: connected as %s in %s (%s mode)",
            self.bot_user or "the app",
            where,
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
        await self.workspaces.aclose()
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
        Uninstalls(self).register()
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
        first = not await self.core.knows(key)
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
        if not user or not channel or not ts:
            return False
        try:  # the installation the event was sent for (Slack Connect: not event.team)
            ws = await self.ws(installation_team(body) or event.team or "")
        except NotInstalled:
            return False
        if user == ws.bot_user:
            return False
        team = event.team or str(body.get("team_id") or ws.team)
        raw_text = event.text or ""
        is_dm = event.channel_type == "im" or channel.startswith("D")
        thread_ts = event.thread_ts
        mentioned = event.type == "app_mention" or mentions(raw_text, ws.bot_user)
        root = thread_ts or ts
        key = ThreadKey("slack", team, channel, root)
        if not is_dm and not mentioned:
            if not thread_ts or self.require_mention:
                return False
            if not await self.core.knows(key):
                return False  # a thread the bot is not part of
        if not self.access.allows("slack", user, channel):
            return False
        # Both app_mention and message arrive for one mention, and Slack retries: once only.
        event_id = f"{channel}:{ts}"
        if not await self.core.claim("slack", event_id):
            return False
        target = self.target(
            ws=ws, team=team, channel=channel, thread_ts=root, user=user, on_start=on_start
        )
        if not self.core.shared:
            # The placeholder goes out while we read names and the thread. Not with
            # replicas: the twin event of this message may be claimed on another replica
            # at this moment, and only the accept decides which one answers.
            target.begin()
        try:
            message = await self._message(ws, event, key, mentioned=mentioned, is_dm=is_dm)
        except Exception:
            log.exception("slack: could not prepare message %s in %s", ts, channel)
            self.core.release("slack", event_id)
            await target.start()
            await target.fail("Something went wrong reading this message. Please try again.")
            return False
        self.core.submit(message, target)
        return True

    async def _message(
        self, ws: Workspace, event: MessageEvent, key: ThreadKey, *, mentioned: bool, is_dm: bool
    ) -> IncomingMessage:
        """The engine's message: names resolved, a leading persona taken, and the thread's
        earlier messages when the bot is called into a thread it never joined."""
        user, raw_text = event.user or "", event.text or ""
        context_text = ""
        if mentioned and event.thread_ts and not await self.core.knows(key):
            context_text = await self._thread_context(
                ws, key.channel_id, event.thread_ts, event.ts or ""
            )
        # Slack markup is read once: names first, then a leading "+persona" (DESIGN §5).
        others = [u for u in user_ids(raw_text) if u != ws.bot_user]
        names = await self.names_for([user, *others], ws)
        shown = readable(raw_text, bot_user=ws.bot_user, names=names)
        persona, body_text = take_persona(shown)
        if persona and not (mentioned or is_dm) and not self.core.has_persona(persona):
            # "+1 agreed" in a thread is a reply, not a persona nobody asked the bot for.
            persona, body_text = None, shown
        if context_text:
            body_text = f"{context_text}\n\n{body_text}"
        return IncomingMessage(
            key=key,
            author=Author(user, names.get(user, user)),
            text=body_text,
            attachments=tuple(ws.files.attachment(f) for f in event.files or []),
            event_id=f"{key.channel_id}:{event.ts}",
            persona=persona,
        )

    def target(
        self,
        *,
        ws: Workspace,
        team: str,
        channel: str,
        thread_ts: str,
        user: str,
        on_start: Callable[[], Awaitable[None]] | None = None,
    ) -> SlackReplyTarget:
        """A reply target in one thread, streaming as configured (edit or native)."""
        return SlackReplyTarget(
            client=ws.client,
            scheduler=self.core.pacer,
            team=team,
            channel=channel,
            thread_ts=thread_ts,
            native=self.native_streaming,
            recipient_user=user,
            on_start=on_start,
        )

    async def recovery_target(
        self, key: ThreadKey, message_ids: Sequence[str]
    ) -> SlackReplyTarget | None:
        """A target over a reply a crashed process left behind: its messages are edited
        (chat.update, whatever the stream mode was), or a new one is posted if none exist.
        None when the app is no longer installed in that workspace."""
        try:
            ws = await self.ws(key.workspace_id)
        except NotInstalled:
            return None
        target = SlackReplyTarget(
            client=ws.client,
            scheduler=self.core.pacer,
            team=key.workspace_id,
            channel=key.channel_id,
            thread_ts=key.thread_id,
        )
        target.adopt(message_ids)
        return target

    async def _thread_context(
        self, ws: Workspace, channel: str, thread_ts: str, before_ts: str
    ) -> str:
        """What was said in a thread before the bot was called into it."""
        try:
            resp = await ws.client.conversations_replies(
                channel=channel, ts=thread_ts, limit=THREAD_CONTEXT_LIMIT
            )
        except Exception as exc:
            log.warning("slack: could not read thread %s/%s: %r", channel, thread_ts, exc)
            return ""
        before = ts_value(before_ts)
        earlier = [m for m in api_messages(resp.get("messages")) if ts_value(m.ts) < before]
        if not earlier:
            return ""
        names = await self.names_for([m.user for m in earlier if m.user], ws)
        lines = []
        for m in earlier:
            who = "bot" if m.bot_id else names.get(m.user or "", m.user or "someone")
            lines.append(f"{who}: {readable(m.text or '', bot_user=ws.bot_user, names=names)}")
        return "Earlier in this thread:\n" + "\n".join(lines) + "\n\nNow:"

    async def names_for(self, ids: list[str], ws: Workspace) -> dict[str, str]:
        """Display names (the id where unknown), asked of `ws`'s Slack (adapters/slack/names.py)."""
        return await self.names.of(ids, ws.client)
