"""/catchup, thread summaries (/summarize <link>, the "Summarize thread" shortcut), and how
their answers reach only the person who asked.

Slack does not let apps' slash commands run inside threads ("/summarize is not supported
in threads"), so a thread is named by a link to any of its messages, or the message
shortcut is used on one of them. Answers are ephemeral, through the command's
response_url: a progress note first ("Reading #general… (1,200 messages)"), then the
answer replacing it. Slack allows five uses of a response_url, so progress is shown at
most PROGRESS_NOTES times. An answer longer than EPHEMERAL_MAX goes to the requester's DM
with the app, and the ephemeral note says so.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from slack_sdk.errors import SlackApiError

from adapters.slack.events import Command, Shortcut
from adapters.slack.history import SlackHistory, missing_scope
from adapters.slack.text import neutralise
from adapters.slack.webapi import call, post_budget
from bot.catchup import Answer, Subject, parse_since
from bot.catchup.answer import chunks
from bot.catchup.progress import ProgressNotes
from bot.errors import BotError
from bot.markup import defang

if TYPE_CHECKING:
    from adapters.slack.adapter import SlackAdapter

log = logging.getLogger(__name__)

EPHEMERAL_MAX = 4000  # Slack's advice for a message's text; longer ones go to a DM
DM_CHUNK = 39_000  # under chat.postMessage's 40,000 characters
PROGRESS_NOTES = 3  # response_url uses for progress (the answer is one more; Slack allows 5)
PROGRESS_EVERY_S = 5.0  # three notes spread over a read Slack's pacing may make long
FAILED = "Something went wrong while summarising; please try again."


def render_refs(refs: Sequence[tuple[str, str]]) -> str:
    """`(<url|12>, <url|15>)`: Slack links to the cited messages."""
    return "(" + ", ".join(f"<{url}|{label}>" if url else label for label, url in refs) + ")"


def slack_text(answer: Answer) -> str:
    """The answer in Slack mrkdwn: a bold header, the body, italic notes."""
    parts = [f"*{_escape(answer.header)}*", answer.body]
    parts += [f"_{_escape(note)}_" for note in answer.notes]
    return neutralise("\n\n".join(parts))


def safe_model_text(text: str) -> str:
    """Model text made inert for mrkdwn (no links or mentions of its own), bold fixed."""
    text = defang(_escape(text))
    return re.sub(r"\*\*(.+?)\*\*", r"*\1*", text)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class Progress(ProgressNotes):
    """Ephemeral progress notes on one response_url, few and spaced out."""

    def __init__(self, respond: Any, name: str) -> None:
        super().__init__(name, every_s=PROGRESS_EVERY_S, limit=PROGRESS_NOTES)
        self.respond = respond

    async def put(self, text: str) -> None:
        """Replace the note with `text`."""
        await self.respond(
            text=neutralise(text), response_type="ephemeral", replace_original=self.used > 1
        )


class SlackCatchup:
    """Catch-ups and thread summaries of one SlackAdapter."""

    def __init__(self, adapter: SlackAdapter) -> None:
        self.adapter = adapter
        self.history = SlackHistory(adapter)

    async def catchup(self, respond: Any, command: Command) -> None:
        """/catchup [since]: the channel's window, summarised for the requester only."""
        team, channel, user = command.team_id, command.channel_id, command.user_id
        try:
            window = parse_since(command.text, now=datetime.now(UTC))
            self._allowed(user, channel)
            place = await self.history.check(team, channel, user=user)
        except BotError as exc:
            await self._say(respond, exc.user_message)
            return
        progress = Progress(respond, place.name)
        await progress.show(f"Reading {place.name}…", force=True)
        try:
            messages, read, window = await self.history.channel(
                team,
                channel,
                window=window,
                user=user,
                cap=self.adapter.commands.max_messages,
                counter=progress.count,
            )
            answer = await self.adapter.commands.summarise(
                messages,
                platform="slack",
                user_id=user,
                subject=Subject("channel", place.name, window.label),
                read=read,
                render=render_refs,
                progress=progress.note,
                clean=safe_model_text,
            )
        except Exception as exc:
            await self._failed(respond, exc, f"catch-up of {channel}")
            return
        await self._deliver(respond, answer, user=user, team=team, channel=channel)

    async def thread(
        self, respond: Any, *, team: str, channel: str, root: str, user: str, focus: str = ""
    ) -> None:
        """Summarise the thread `root` of `channel` for `user` only."""
        try:
            self._allowed(user, channel)
            place = await self.history.check(team, channel, user=user)
        except BotError as exc:
            await self._say(respond, exc.user_message)
            return
        name = f"a thread in {place.name}"
        progress = Progress(respond, name)
        await progress.show(f"Reading {name}…", force=True)
        try:
            messages, read = await self.history.thread(
                team, channel, root=root, cap=self.adapter.commands.max_messages, with_files=True
            )
            progress.read = len(messages)
            answer = await self.adapter.commands.summarise(
                messages,
                platform="slack",
                user_id=user,
                subject=Subject("thread", f"the thread in {place.name}", focus=focus),
                read=read,
                render=render_refs,
                progress=progress.note,
                with_files=True,
                clean=safe_model_text,
            )
        except Exception as exc:
            await self._failed(respond, exc, f"summary of thread {channel}/{root}")
            return
        await self._deliver(respond, answer, user=user, team=team, channel=channel)

    async def thread_shortcut(self, respond: Any, shortcut: Shortcut) -> None:
        """The "Summarize thread" message shortcut, on any message of a thread."""
        msg = shortcut.message
        if msg.thread_ts is None:
            await self._say(respond, "That message is not in a thread, and starts none.")
            return
        await self.thread(
            respond,
            team=shortcut.team.id,
            channel=shortcut.channel.id,
            root=msg.thread_ts or msg.ts,
            user=shortcut.user.id,
        )

    async def deliver(
        self, respond: Any, answer: Answer, *, user: str, team: str, channel: str
    ) -> None:
        """Ephemeral when it fits, else in the requester's DM with the app (paced, 429s
        waited out); if the DM fails, in ephemeral parts in the channel instead."""
        text = slack_text(answer)
        if len(text) <= EPHEMERAL_MAX:
            await respond(text=text, response_type="ephemeral", replace_original=True)
            return
        client = (await self.adapter.ws(team)).client
        scheduler = self.adapter.core.pacer
        try:
            for chunk in chunks(text, DM_CHUNK):

                async def post(chunk: str = chunk) -> None:
                    await call(
                        client.chat_postMessage,
                        channel=user,
                        text=chunk,
                        unfurl_links=False,
                        unfurl_media=False,
                    )

                await scheduler.call(post_budget(team, user), post)
        except Exception as exc:  # DMs closed or refused: the answer must still arrive
            log.warning("slack: catch-up DM to %s failed (%r); sending it here", user, exc)
            for chunk in chunks(text, EPHEMERAL_MAX):
                await client.chat_postEphemeral(channel=channel, user=user, text=chunk)
            await self._say(respond, f"{answer.header}: below, in parts.", True)
            return
        await self._say(
            respond, f"{answer.header}: too long to show here, so I sent it to you in a DM.", True
        )

    async def _deliver(
        self, respond: Any, answer: Answer, *, user: str, team: str, channel: str
    ) -> None:
        try:
            await self.deliver(respond, answer, user=user, team=team, channel=channel)
        except Exception as exc:
            await self._failed(respond, exc, f"delivery to {user}")

    def _allowed(self, user: str, channel: str) -> None:
        if not self.adapter.access.allows("slack", user, channel):
            raise BotError("denied", user_message="You are not allowed to use this bot here.")

    async def _failed(self, respond: Any, exc: Exception, what: str) -> None:
        """Tell the requester what went wrong (never a trace, never silence)."""
        if isinstance(exc, SlackApiError):
            exc = missing_scope(exc) or exc
        if isinstance(exc, BotError):
            log.warning("slack: %s failed: %s", what, exc)
            text = exc.user_message
        else:
            log.error("slack: %s failed", what, exc_info=exc)
            text = FAILED
        await self._say(respond, text, replace=True)

    async def _say(self, respond: Any, text: str, replace: bool = False) -> None:
        await respond(text=neutralise(text), response_type="ephemeral", replace_original=replace)
