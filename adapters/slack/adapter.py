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
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.app.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.logger.messages import warning_token_skipped
from slack_bolt.middleware.assistant.async_assistant import AsyncAssistant
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.files import SlackFiles
from adapters.slack.target import SlackReplyTarget
from adapters.slack.text import (
    mentions,
    neutralise,
    parse_permalink,
    readable,
    user_ids,
)
from bot.access import AccessPolicy
from bot.commands import Commands, summarize_prompt
from bot.engine import ConversationEngine
from bot.errors import BotError
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
HELP = [
    ("@gemini question", "ask in a thread; reply in the thread to go on"),
    ("@gemini +persona question", "use a persona for this thread"),
    ("/summarize [message link] [focus]", "summarise your latest files here, or a message's"),
    ("/persona [name]", "list personas; admins: set this channel's default"),
    ("/forget <message link>", "forget that thread's conversation"),
    ("/gemini-usage", "your usage today"),
    ("/gemini-help", "this help"),
]


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
        )
        self.bot_user = ""
        self.team = ""
        self._names: dict[str, str] = {}
        self._name_lookups: dict[str, asyncio.Future[str]] = {}
        self._preparing = 0
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
        """Serve the Events API (HTTP mode) on the service's HTTP server."""

        async def events(request: web.Request) -> web.Response:
            bolt_response = await self.app.async_dispatch(await to_bolt_request(request))
            return await to_aiohttp_response(bolt_response)

        app.router.add_post(path, events)

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
            from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler

            self._socket = AsyncSocketModeHandler(self.app, self.app_token, web_client=self.client)
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
        await self.files.aclose()
        if self.client.session is not None:
            await self.client.session.close()

    # -- wiring ------------------------------------------------------------

    def _register(self) -> None:
        app = self.app
        # The assistant view (DM threads): status while thinking, suggested prompts, titles.
        assistant = AsyncAssistant()
        assistant.thread_started(self._assistant_started)
        assistant.user_message(self._assistant_message)
        app.use(assistant)
        app.event("app_mention")(self._on_message_event)
        app.event("message")(self._on_message_event)
        app.command("/summarize")(self._cmd_summarize)
        app.command("/persona")(self._cmd_persona)
        app.command("/forget")(self._cmd_forget)
        app.command("/gemini-usage")(self._cmd_usage)
        app.command("/gemini-help")(self._cmd_help)
        app.shortcut("summarize_attachments")(self._shortcut_summarize)
        app.shortcut("forget_thread")(self._shortcut_forget)

    # -- assistant view ----------------------------------------------------

    async def _assistant_started(self, set_suggested_prompts: Any) -> None:
        await set_suggested_prompts(prompts=SUGGESTED_PROMPTS, title="Try one of these:")

    async def _assistant_message(
        self,
        payload: dict[str, Any],
        body: dict[str, Any],
        context: Any,
        set_status: Any,
        set_title: Any,
    ) -> None:
        async def thinking() -> None:
            await set_status(THINKING)

        key = ThreadKey(
            "slack",
            str(payload.get("team") or body.get("team_id") or self.team),
            str(payload.get("channel")),
            str(payload.get("thread_ts") or payload.get("ts")),
        )
        first = await self.engine.store.get_conversation(key) is None
        if await self._on_event(payload, body, context, on_start=thinking) and first:
            title = readable(str(payload.get("text") or ""), bot_user=self.bot_user, names={})
            await set_title(title[:TITLE_CHARS] or "New chat")

    # -- messages ----------------------------------------------------------

    async def _on_message_event(
        self, event: dict[str, Any], body: dict[str, Any], context: Any
    ) -> None:
        # Bolt passes listener arguments by name, so the listener takes exactly these.
        await self._on_event(event, body, context)

    @property
    def preparing(self) -> int:
        """Messages acknowledged to Slack but not yet handed to the engine."""
        return self._preparing

    async def _on_event(
        self,
        event: dict[str, Any],
        body: dict[str, Any],
        context: Any,
        on_start: Callable[[], Awaitable[None]] | None = None,
    ) -> bool:
        """Hand a message to the engine if the bot should answer it; True if it did."""
        self._preparing += 1
        try:
            return await self._prepare(event, body, context, on_start)
        finally:
            self._preparing -= 1

    async def _prepare(
        self,
        event: dict[str, Any],
        body: dict[str, Any],
        context: Any,
        on_start: Callable[[], Awaitable[None]] | None,
    ) -> bool:
        if (
            event.get("subtype") not in HANDLED_SUBTYPES
            or event.get("bot_id")
            or event.get("bot_profile")
        ):
            return False
        user = event.get("user")
        channel = event.get("channel")
        ts = event.get("ts")
        if not user or not channel or not ts or user == self.bot_user:
            return False
        team = str(event.get("team") or body.get("team_id") or self.team)
        text = str(event.get("text") or "")
        is_dm = event.get("channel_type") == "im" or str(channel).startswith("D")
        thread_ts = event.get("thread_ts")
        mentioned = event.get("type") == "app_mention" or mentions(text, self.bot_user)
        root = str(thread_ts or ts)
        key = ThreadKey("slack", team, str(channel), root)
        if not is_dm and not mentioned:
            if not thread_ts or self.require_mention:
                return False
            if await self.engine.store.get_conversation(key) is None:
                return False  # a thread the bot is not part of
        if not self.access.allows("slack", str(user), str(channel)):
            return False
        # Both app_mention and message arrive for one mention, and Slack retries: once only.
        if not await self.engine.store.mark_event("slack", f"{channel}:{ts}"):
            return False
        target = self._target(team, str(channel), root, str(user), on_start=on_start)
        target.begin()  # the placeholder goes out while we read names and the thread
        try:
            persona, text = take_persona(text) if mentioned else (None, text)
            persona, text = self._persona_from(text, persona)
            context_text = ""
            if mentioned and thread_ts and await self.engine.store.get_conversation(key) is None:
                context_text = await self._thread_context(str(channel), str(thread_ts), str(ts))
            names = await self._names_for([str(user), *user_ids(text)])
            body_text = readable(text, bot_user=self.bot_user, names=names)
            if context_text:
                body_text = f"{context_text}\n\n{body_text}"
            message = IncomingMessage(
                key=key,
                author=Author(str(user), names.get(str(user), str(user))),
                text=body_text,
                attachments=tuple(self.files.attachment(f) for f in event.get("files") or []),
                event_id=str(body.get("event_id") or ""),
                persona=persona,
            )
        except Exception:
            log.exception("slack: could not prepare message %s in %s", ts, channel)
            await target.start()
            await target.fail("Something went wrong reading this message. Please try again.")
            return False
        self.engine.submit(message, target)
        return True

    def _persona_from(self, text: str, persona: str | None) -> tuple[str | None, str]:
        # "<@BOT> +coder ..." : the persona comes after the mention.
        stripped = readable(text, bot_user=self.bot_user, names={})
        if persona is None:
            picked, rest = take_persona(stripped)
            if picked is not None:
                return picked, rest
        return persona, text

    def _target(
        self,
        team: str,
        channel: str,
        thread_ts: str,
        user: str,
        on_start: Callable[[], Awaitable[None]] | None = None,
    ) -> SlackReplyTarget:
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

    async def _thread_context(self, channel: str, thread_ts: str, before_ts: str) -> str:
        """What was said in a thread before the bot was called into it."""
        try:
            resp = await self.client.conversations_replies(
                channel=channel, ts=thread_ts, limit=THREAD_CONTEXT_LIMIT
            )
        except Exception as exc:
            log.warning("slack: could not read thread %s/%s: %r", channel, thread_ts, exc)
            return ""
        messages: list[dict[str, Any]] = resp.get("messages", [])
        earlier = [m for m in messages if float(m.get("ts", 0)) < float(before_ts)]
        if not earlier:
            return ""
        names = await self._names_for([str(m.get("user", "")) for m in earlier if m.get("user")])
        lines = []
        for m in earlier:
            who = "bot" if m.get("bot_id") else names.get(str(m.get("user")), str(m.get("user")))
            lines.append(
                f"{who}: {readable(str(m.get('text', '')), bot_user=self.bot_user, names=names)}"
            )
        return "Earlier in this thread:\n" + "\n".join(lines) + "\n\nNow:"

    async def _names_for(self, ids: list[str]) -> dict[str, str]:
        """Display names; concurrent lookups of one user share one users.info call."""
        tasks: dict[str, asyncio.Future[str]] = {}
        for uid in {i for i in ids if i and i not in self._names}:
            task = self._name_lookups.get(uid)
            if task is None:
                task = self._name_lookups[uid] = asyncio.ensure_future(self._lookup_name(uid))
            tasks[uid] = task  # held here: another caller may drop it from the map first
        for uid, task in tasks.items():
            self._names[uid] = await asyncio.shield(task)
            self._name_lookups.pop(uid, None)
        return {i: self._names.get(i, i) for i in ids}

    async def _lookup_name(self, uid: str) -> str:
        try:
            info = (await self.client.users_info(user=uid))["user"]
        except Exception:
            return uid
        profile = info.get("profile", {})
        return str(
            profile.get("display_name")
            or profile.get("real_name")
            or info.get("real_name")
            or info.get("name")
            or uid
        )

    # -- commands ----------------------------------------------------------

    async def _respond(self, respond: Any, text: str) -> None:
        await respond(text=neutralise(text), response_type="ephemeral")

    async def _cmd_help(self, ack: Any, respond: Any) -> None:
        await ack()
        await self._respond(respond, self.commands.help(commands=HELP))

    async def _cmd_usage(self, ack: Any, respond: Any, command: dict[str, Any]) -> None:
        await ack()
        await self._respond(respond, await self.commands.usage("slack", command["user_id"]))

    async def _cmd_persona(self, ack: Any, respond: Any, command: dict[str, Any]) -> None:
        await ack()
        args = str(command.get("text") or "").split()
        key = ThreadKey("slack", command["team_id"], command["channel_id"], "")
        try:
            if not args:
                text = await self.commands.list_personas(key)
                text += "\nIn a thread, start a mention with +name to use a persona there."
            elif len(args) == 1:
                text = await self.commands.set_channel_persona(
                    platform="slack",
                    workspace_id=command["team_id"],
                    channel_id=command["channel_id"],
                    name=args[0],
                    is_admin=self.access.is_admin("slack", command["user_id"]),
                )
            else:
                text = "Usage: /persona [name | default]"
        except BotError as exc:
            text = exc.user_message
        await self._respond(respond, text)

    async def _cmd_forget(self, ack: Any, respond: Any, command: dict[str, Any]) -> None:
        await ack()
        link = parse_permalink(str(command.get("text") or ""))
        if link is None:
            await self._respond(
                respond,
                "Usage: /forget <link to a message in the thread>, "
                'or the message shortcut "Forget this thread".',
            )
            return
        key = ThreadKey("slack", command["team_id"], link.channel, link.thread_ts or link.ts)
        await self._respond(respond, await self.commands.forget(key))

    async def _shortcut_forget(self, ack: Any, shortcut: dict[str, Any], respond: Any) -> None:
        await ack()
        msg = shortcut["message"]
        key = ThreadKey(
            "slack",
            shortcut["team"]["id"],
            shortcut["channel"]["id"],
            str(msg.get("thread_ts") or msg["ts"]),
        )
        await self._respond(respond, await self.commands.forget(key))

    async def _cmd_summarize(self, ack: Any, respond: Any, command: dict[str, Any]) -> None:
        await ack()
        text = str(command.get("text") or "")
        link = parse_permalink(text)
        focus = text
        team, user, channel = command["team_id"], command["user_id"], command["channel_id"]
        if link is not None:
            focus = text.replace(text[text.find("http") :].split()[0], "")
            found = await self._message(link.channel, link.ts, link.thread_ts)
        else:
            found = await self._latest_with_files(channel, user)
        if found is None or not found.get("files"):
            await self._respond(
                respond,
                "I found no files to summarise. Attach files to a message, "
                "or give a link: /summarize <message link> [focus]",
            )
            return
        await self._summarize(
            team,
            str(found.get("channel", link.channel if link else channel)),
            found,
            user,
            focus.strip(),
        )
        await self._respond(respond, "Summarising in the message's thread…")

    async def _shortcut_summarize(self, ack: Any, shortcut: dict[str, Any], respond: Any) -> None:
        await ack()
        msg = dict(shortcut["message"])
        if not msg.get("files"):
            await self._respond(respond, "That message has no files to summarise.")
            return
        await self._summarize(
            shortcut["team"]["id"], shortcut["channel"]["id"], msg, shortcut["user"]["id"], ""
        )

    async def _summarize(
        self, team: str, channel: str, msg: dict[str, Any], user: str, focus: str
    ) -> None:
        root = str(msg.get("thread_ts") or msg["ts"])
        key = ThreadKey("slack", team, channel, root)
        names = await self._names_for([user])
        message = IncomingMessage(
            key=key,
            author=Author(user, names[user]),
            text=summarize_prompt(focus),
            attachments=tuple(self.files.attachment(f) for f in msg.get("files") or []),
            persona=self.commands.summarize_persona(),
        )
        self.engine.submit(message, self._target(team, channel, root, user))

    async def _message(self, channel: str, ts: str, thread_ts: str | None) -> dict[str, Any] | None:
        resp = await self.client.conversations_replies(
            channel=channel, ts=thread_ts or ts, limit=200
        )
        messages: list[dict[str, Any]] = resp.get("messages", [])
        for m in messages:
            if m.get("ts") == ts:
                return {**m, "channel": channel}
        return None

    async def _latest_with_files(self, channel: str, user: str) -> dict[str, Any] | None:
        resp = await self.client.conversations_history(channel=channel, limit=50)
        messages: list[dict[str, Any]] = resp.get("messages", [])
        for m in messages:
            if m.get("user") == user and m.get("files"):
                return {**m, "channel": channel}
        return None
