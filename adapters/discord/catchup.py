"""/catchup, /summarize in a thread and the "Summarize thread" menu: answers only the
requester sees.

The interaction is deferred ephemerally at once ("thinking…"), the deferred response is
edited with progress ("Reading #general… (1,200 messages)") at most every
PROGRESS_EVERY_S, then with the answer. An answer over Discord's 2,000 characters goes to
the requester's DMs (several messages if needed) and the response says so; with DMs
closed it comes as ephemeral follow-ups instead.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import discord

from adapters.discord.history import DiscordHistory, check
from bot.catchup import Answer, Subject, Window, parse_since
from bot.catchup.answer import chunks
from bot.catchup.progress import ProgressNotes
from bot.errors import BotError
from bot.markup import defang

if TYPE_CHECKING:
    from adapters.discord.adapter import DiscordAdapter

log = logging.getLogger(__name__)

MAX_CONTENT = 2000
PROGRESS_EVERY_S = 2.0
FAILED = "Something went wrong while summarising; please try again."
QUIET = discord.AllowedMentions.none()
_MASKED = re.compile(r"\[([^\]\n]+)\]\(\s*<?(https?://[^)\s>]+)>?\s*\)")


def render_refs(refs: Sequence[tuple[str, str]]) -> str:
    """`([12](<url>), [15](<url>))`: masked links, `<url>` so Discord shows no embeds."""
    return "(" + ", ".join(f"[{label}](<{url}>)" if url else label for label, url in refs) + ")"


def safe_model_text(text: str) -> str:
    """Model text with no links of its own: a masked link shows its URL, and every URL is
    made unclickable (only the bot's own links to messages may be followed)."""
    text = _MASKED.sub(lambda m: f"{m.group(1)} ({m.group(2)})", text)
    return defang(text)


def discord_text(answer: Answer) -> str:
    """The answer in Discord markdown: bold header, body, small-print notes."""
    return "\n\n".join([f"**{answer.header}**", answer.body, *(f"-# {n}" for n in answer.notes)])


class Progress(ProgressNotes):
    """Edits of the deferred response, spaced out."""

    def __init__(self, interaction: discord.Interaction, name: str) -> None:
        super().__init__(name, every_s=PROGRESS_EVERY_S)
        self.interaction = interaction

    async def put(self, text: str) -> None:
        """Edit the response to `text`."""
        await self.interaction.edit_original_response(content=text, allowed_mentions=QUIET)


class DiscordCatchup:
    """Catch-ups and thread summaries of one DiscordAdapter."""

    def __init__(self, adapter: DiscordAdapter) -> None:
        self.adapter = adapter
        self.history = DiscordHistory(adapter)

    async def catchup(self, interaction: discord.Interaction, since: str) -> None:
        """/catchup [since]: the channel (a thread's parent, in a thread) for the requester."""
        channel: Any = interaction.channel
        if isinstance(channel, discord.Thread):
            channel = channel.parent
        try:
            window = parse_since(since, now=datetime.now(UTC))
            self._check(interaction, channel)
        except BotError as exc:
            await self._say(interaction, exc.user_message)
            return
        assert isinstance(channel, discord.TextChannel)
        name = f"#{channel.name}"
        await interaction.response.defer(ephemeral=True, thinking=True)
        progress = Progress(interaction, name)
        await self._run(
            interaction, progress, self._catchup(interaction, channel, window, progress)
        )

    async def _catchup(
        self,
        interaction: discord.Interaction,
        channel: discord.TextChannel,
        window: Window,
        p: Progress,
    ) -> Answer:
        messages, read, window = await self.history.channel(
            channel,
            window,
            user_id=interaction.user.id,
            cap=self.adapter.commands.max_messages,
            counter=p.count,
            requester=interaction.user,
        )
        return await self.adapter.commands.summarise(
            messages,
            platform="discord",
            user_id=str(interaction.user.id),
            subject=Subject("channel", p.name, window.label),
            read=read,
            render=render_refs,
            progress=p.note,
            clean=safe_model_text,
        )

    async def thread(
        self, interaction: discord.Interaction, thread: discord.Thread, *, focus: str = ""
    ) -> None:
        """The whole thread, summarised for the requester only."""
        try:
            self._check(interaction, thread)
        except BotError as exc:
            await self._say(interaction, exc.user_message)
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        progress = Progress(interaction, f"the thread {thread.name}")
        await self._run(interaction, progress, self._thread(interaction, thread, focus, progress))

    async def _thread(
        self, interaction: discord.Interaction, thread: discord.Thread, focus: str, p: Progress
    ) -> Answer:
        messages, read = await self.history.thread(
            thread, cap=self.adapter.commands.max_messages, with_files=True
        )
        p.read = len(messages)
        return await self.adapter.commands.summarise(
            messages,
            platform="discord",
            user_id=str(interaction.user.id),
            subject=Subject("thread", f"the thread “{thread.name}”", focus=focus),
            read=read,
            render=render_refs,
            progress=p.note,
            with_files=True,
            clean=safe_model_text,
        )

    async def thread_of(self, interaction: discord.Interaction, message: discord.Message) -> None:
        """The "Summarize thread" menu: the thread the message is in, or started."""
        thread: discord.Thread | None = None
        if isinstance(message.channel, discord.Thread):
            thread = message.channel
        elif interaction.guild is not None:
            thread = interaction.guild.get_thread(message.id)
        if thread is None:
            await self._say(
                interaction, "That message is not in a thread, and no thread starts from it."
            )
            return
        await self.thread(interaction, thread)

    async def _run(self, interaction: discord.Interaction, progress: Progress, work: Any) -> None:
        try:
            answer = await work
        except BotError as exc:
            await self._edit(interaction, exc.user_message)
            return
        except Exception:
            log.exception("discord: summary in %s failed", interaction.channel_id)
            await self._edit(interaction, FAILED)
            return
        await self.deliver(interaction, answer)

    async def deliver(self, interaction: discord.Interaction, answer: Answer) -> None:
        """Ephemeral when it fits; else in the requester's DMs (or ephemeral follow-ups)."""
        text = discord_text(answer)
        if len(text) <= MAX_CONTENT:
            await self._edit(interaction, text)
            return
        parts = chunks(text, MAX_CONTENT)
        try:
            for part in parts:
                await interaction.user.send(part, allowed_mentions=QUIET, suppress_embeds=True)
        except discord.HTTPException as exc:  # DMs closed: follow-ups only they see
            log.info("discord: could not DM the summary (%s); sending it here", exc)
            await self._edit(interaction, parts[0])
            for part in parts[1:]:
                await interaction.followup.send(part, ephemeral=True, allowed_mentions=QUIET)
            return
        await self._edit(
            interaction, f"**{answer.header}**: too long to show here, so I sent it to your DMs."
        )

    def _check(self, interaction: discord.Interaction, channel: Any) -> None:
        guild = interaction.guild
        if guild is None or channel is None:
            raise BotError("no guild", user_message="Use this in a server channel.")
        if not self.adapter.allowed(interaction):
            raise BotError("denied", user_message="You are not allowed to use this bot here.")
        check(channel, member=interaction.user, me=guild.me)

    async def _say(self, interaction: discord.Interaction, text: str) -> None:
        if interaction.response.is_done():
            await interaction.followup.send(text, ephemeral=True, allowed_mentions=QUIET)
        else:
            await interaction.response.send_message(text, ephemeral=True, allowed_mentions=QUIET)

    async def _edit(self, interaction: discord.Interaction, text: str) -> None:
        await interaction.edit_original_response(content=text, allowed_mentions=QUIET)
