"""Slash commands and message shortcuts: validated, acknowledged at once, handled after.

Each Bolt listener acks, checks the payload (adapters/slack/events.py) and starts the work
in the adapter's Inbox, so Slack's 3-second rule holds however slow the work is.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from slack_sdk.errors import SlackApiError

from adapters.slack.catchup import SlackCatchup
from adapters.slack.events import Command, Shortcut, api_messages, parse
from adapters.slack.text import neutralise, parse_permalink
from bot.commands import summarize_prompt
from bot.errors import BotError
from bot.types import Author, IncomingMessage, ThreadKey

if TYPE_CHECKING:
    from adapters.slack.adapter import SlackAdapter

HELP = [
    ("@gemini question", "ask in a thread; reply in the thread to go on"),
    ("@gemini +persona question", "use a persona for this thread"),
    ("/summarize [message link] [focus]", "summarise your latest files here, or a message's"),
    (
        "/summarize <link to a message in a thread>",
        "summarise that whole thread, just for you (or the shortcut *Summarize thread*)",
    ),
    ("/catchup [since]", "what you missed here: 3d, 12h, 2026-11-28, 'since my last message'"),
    ("/persona [name]", "list personas; admins: set this channel's default"),
    ("/gemini-tools [on|off tool]", "the Gemini tools here; admins: switch one for this channel"),
    ("/forget <message link>", "forget that thread's conversation"),
    ("/gemini-usage", "your usage today"),
    ("/gemini-help", "this help"),
]
# Command / shortcut callback id -> the SlackCommands method; slack-manifest.yml lists each.
COMMANDS = {
    "/summarize": "summarize",
    "/catchup": "catchup",
    "/persona": "persona",
    "/gemini-tools": "tools",
    "/forget": "forget",
    "/gemini-usage": "usage",
    "/gemini-help": "help",
}
SHORTCUTS = {
    "summarize_attachments": "summarize_shortcut",
    "summarize_thread": "summarize_thread_shortcut",
    "forget_thread": "forget_shortcut",
}
UNREADABLE = "Sorry, I could not read that request from Slack. Please try again."
# Slack refuses apps' slash commands inside threads, so a thread is named by a link.
NO_FILES = (
    "I found no files to summarise. Attach files to a message, or give a link: "
    "/summarize <message link> [focus]. To summarise a whole thread, give a link to any "
    "of its messages (/summarize <link>), or use the message shortcut "
    '"Summarize thread" on one of them: Slack does not run slash commands inside threads.'
)

CommandHandler = Callable[[Any, Command], Coroutine[Any, Any, None]]
ShortcutHandler = Callable[[Any, Shortcut], Coroutine[Any, Any, None]]


class SlackCommands:
    """The slash commands and message shortcuts of one SlackAdapter."""

    def __init__(self, adapter: SlackAdapter) -> None:
        self.adapter = adapter
        self.catchups = SlackCatchup(adapter)

    def register(self) -> None:
        """Add the listeners to the adapter's Bolt app."""
        for name, method in COMMANDS.items():
            handler: CommandHandler = getattr(self, method)
            self.adapter.app.command(name)(self._command_listener(name, handler))
        for callback_id, method in SHORTCUTS.items():
            sc_handler: ShortcutHandler = getattr(self, method)
            self.adapter.app.shortcut(callback_id)(self._shortcut_listener(callback_id, sc_handler))

    def _command_listener(self, name: str, handler: CommandHandler) -> Callable[..., Any]:
        async def listener(ack: Any, respond: Any, command: dict[str, Any]) -> None:
            await ack()
            parsed = parse(Command, command, label=f"command {name}")
            work = handler(respond, parsed) if parsed else self.reply(respond, UNREADABLE)
            self.adapter.inbox.spawn(work, what=name)

        return listener

    def _shortcut_listener(self, callback_id: str, handler: ShortcutHandler) -> Callable[..., Any]:
        async def listener(ack: Any, respond: Any, shortcut: dict[str, Any]) -> None:
            await ack()
            parsed = parse(Shortcut, shortcut, label=f"shortcut {callback_id}")
            work = handler(respond, parsed) if parsed else self.reply(respond, UNREADABLE)
            self.adapter.inbox.spawn(work, what=callback_id)

        return listener

    async def reply(self, respond: Any, text: str) -> None:
        """An ephemeral answer to the requester (never a ping)."""
        await respond(text=neutralise(text), response_type="ephemeral")

    async def help(self, respond: Any, command: Command) -> None:
        """/gemini-help."""
        await self.reply(respond, self.adapter.commands.help(commands=HELP))

    async def usage(self, respond: Any, command: Command) -> None:
        """/gemini-usage."""
        await self.reply(respond, await self.adapter.commands.usage("slack", command.user_id))

    async def tools(self, respond: Any, command: Command) -> None:
        """/gemini-tools [on|off tool]: this channel's tools; admins switch one."""
        try:
            text = await self.adapter.commands.tools.command(
                platform="slack",
                workspace_id=command.team_id,
                channel_id=command.channel_id,
                args=command.text,
                is_admin=self.adapter.access.is_admin("slack", command.user_id),
            )
        except BotError as exc:
            text = exc.user_message
        await self.reply(respond, text)

    async def persona(self, respond: Any, command: Command) -> None:
        """/persona [name]: list personas, or (admins) set the channel's default."""
        args = command.text.split()
        key = ThreadKey("slack", command.team_id, command.channel_id, "")
        try:
            if not args:
                text = await self.adapter.commands.list_personas(key)
                text += "\nIn a thread, start a mention with +name to use a persona there."
            elif len(args) == 1:
                text = await self.adapter.commands.set_channel_persona(
                    platform="slack",
                    workspace_id=command.team_id,
                    channel_id=command.channel_id,
                    name=args[0],
                    is_admin=self.adapter.access.is_admin("slack", command.user_id),
                )
            else:
                text = "Usage: /persona [name | default]"
        except BotError as exc:
            text = exc.user_message
        await self.reply(respond, text)

    async def forget(self, respond: Any, command: Command) -> None:
        """/forget <link>: drop that thread's conversation."""
        link = parse_permalink(command.text)
        if link is None:
            await self.reply(
                respond,
                "Usage: /forget <link to a message in the thread>, "
                'or the message shortcut "Forget this thread".',
            )
            return
        key = ThreadKey("slack", command.team_id, link.channel, link.thread_ts or link.ts)
        await self.reply(respond, await self.adapter.commands.forget(key))

    async def forget_shortcut(self, respond: Any, shortcut: Shortcut) -> None:
        """The "Forget this thread" message shortcut."""
        msg = shortcut.message
        key = ThreadKey("slack", shortcut.team.id, shortcut.channel.id, msg.thread_ts or msg.ts)
        await self.reply(respond, await self.adapter.commands.forget(key))

    async def summarize(self, respond: Any, command: Command) -> None:
        """/summarize [thread] [link] [focus]: the linked message's files, else its whole
        thread (just for the requester); without a link, the user's latest files here."""
        text = command.text
        link = parse_permalink(text)
        words = text.split()
        whole_thread = bool(words) and words[0].lower() == "thread"
        focus = " ".join(words[1:]) if whole_thread else text
        channel = command.channel_id
        if link is not None:
            focus = focus.replace(text[text.find("http") :].split()[0], "")
            channel = link.channel
            if channel != command.channel_id:  # a link elsewhere: only for its members
                try:
                    await self.catchups.history.check(
                        command.team_id, channel, user=command.user_id
                    )
                except BotError as exc:
                    await self.reply(respond, exc.user_message)
                    return
            try:
                found = await self._message(command.team_id, link.channel, link.ts, link.thread_ts)
                in_thread = link.thread_ts or (found[1] if found else None)
            except SlackApiError:  # not readable for the bot: the thread path says why
                found, in_thread = None, link.thread_ts or link.ts
            if in_thread and (whole_thread or not found or not found[2]):
                await self.catchups.thread(
                    respond,
                    team=command.team_id,
                    channel=link.channel,
                    root=in_thread,
                    user=command.user_id,
                    focus=focus.strip(),
                )
                return
        else:
            try:
                found = await self._latest_with_files(command.team_id, channel, command.user_id)
            except SlackApiError as exc:  # not in the channel, or Slack said no: say so
                error = exc.response.get("error") if exc.response is not None else "error"
                await self.reply(respond, f"I cannot read this channel's messages ({error}).")
                return
        if found is None or not found[2]:
            await self.reply(respond, NO_FILES)
            return
        root, files = found[1] or found[0], found[2]
        await self._summarize(command.team_id, channel, root, files, command.user_id, focus.strip())
        await self.reply(respond, "Summarising in the message's thread…")

    async def catchup(self, respond: Any, command: Command) -> None:
        """/catchup [since]."""
        await self.catchups.catchup(respond, command)

    async def summarize_thread_shortcut(self, respond: Any, shortcut: Shortcut) -> None:
        """The "Summarize thread" message shortcut."""
        await self.catchups.thread_shortcut(respond, shortcut)

    async def summarize_shortcut(self, respond: Any, shortcut: Shortcut) -> None:
        """The "Summarise attachments" message shortcut."""
        msg = shortcut.message
        if not msg.files:
            await self.reply(respond, "That message has no files to summarise.")
            return
        root = msg.thread_ts or msg.ts
        await self._summarize(
            shortcut.team.id, shortcut.channel.id, root, msg.files, shortcut.user.id, ""
        )

    async def _summarize(
        self, team: str, channel: str, root: str, files: list[Any], user: str, focus: str
    ) -> None:
        adapter = self.adapter
        ws = await adapter.ws(team)
        names = await adapter.names_for([user], ws)
        message = IncomingMessage(
            key=ThreadKey("slack", team, channel, root),
            author=Author(user, names[user]),
            text=summarize_prompt(focus),
            attachments=tuple(ws.files.attachment(f) for f in files),
            persona=adapter.commands.summarize_persona(),
        )
        adapter.core.submit(
            message, adapter.target(ws=ws, team=team, channel=channel, thread_ts=root, user=user)
        )

    async def _message(
        self, team: str, channel: str, ts: str, thread_ts: str | None
    ) -> tuple[str, str | None, list[Any]] | None:
        """(ts, thread_ts, files) of a linked message."""
        resp = await (await self.adapter.ws(team)).client.conversations_replies(
            channel=channel, ts=thread_ts or ts, limit=200
        )
        for m in api_messages(resp.get("messages")):
            if m.ts == ts:
                return m.ts, m.thread_ts, list(m.files or [])
        return None

    async def _latest_with_files(
        self, team: str, channel: str, user: str
    ) -> tuple[str, str | None, list[Any]] | None:
        """(ts, thread_ts, files) of the user's latest message here with files."""
        client = (await self.adapter.ws(team)).client
        resp = await client.conversations_history(channel=channel, limit=50)
        for m in api_messages(resp.get("messages")):
            if m.user == user and m.files:
                return m.ts, m.thread_ts, list(m.files)
        return None
