"""Reading a Discord channel's or thread's history for catch-ups and thread summaries.

- A channel's window: `channel.history(after=start, oldest_first=False)` (GET
  /channels/{id}/messages?before=..., newest first, 100 a page), then the messages in the
  window of the channel's active threads (discord.py keeps them from the gateway:
  GUILD_CREATE lists them, THREAD_CREATE adds one), each thread read once. A thread whose
  first message is older than the window gets that message too, as context.
- A thread: its messages oldest first (`after` its creation), plus the message it was
  started from, which lives in the parent channel.
- discord.py paces these reads itself (its per-route buckets and 429 handling).
- Permissions: the requester and the bot both need View Channel and Read Message History
  in the channel (threads inherit their parent's).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import discord

from adapters.discord.text import readable
from bot.catchup import ChannelMessage, FileRef, Read, Window
from bot.errors import BotError

if TYPE_CHECKING:
    from adapters.discord.adapter import DiscordAdapter

log = logging.getLogger(__name__)

KEPT_TYPES = (discord.MessageType.default, discord.MessageType.reply)
COUNT_EVERY = 500  # messages between progress counts

Counter = Callable[[int], Awaitable[None]]


class Refused(BotError):
    """The requester may not see this summary, or the bot cannot read the channel."""


@dataclass
class _Reading:
    cap: int
    kept: dict[int, tuple[discord.Message, int | None]] = field(default_factory=dict)
    threads: set[int] = field(default_factory=set)
    capped: bool = False

    @property
    def room(self) -> int:
        return self.cap - len(self.kept)

    def add(self, m: discord.Message, thread: int | None) -> bool:
        """Keep `m` (in thread `thread`); False once the cap is reached."""
        if m.type not in KEPT_TYPES or m.id in self.kept:
            return True
        if self.room <= 0:
            self.capped = True
            return False
        self.kept[m.id] = (m, thread)
        return True


def check(channel: Any, *, member: Any, me: Any) -> None:
    """Refused unless both the requester and the bot may read `channel`'s history."""
    name = f"#{getattr(channel, 'name', 'this channel')}"
    if not isinstance(channel, discord.TextChannel | discord.Thread):
        raise Refused("not a text channel", user_message="Use this in a server text channel.")
    mine = channel.permissions_for(member)
    if not (mine.view_channel and mine.read_message_history):
        raise Refused(
            "requester cannot read",
            user_message=f"You cannot read the history of {name}, so I will not summarise "
            "it for you.",
        )
    bots = channel.permissions_for(me)
    if not (bots.view_channel and bots.read_message_history):
        raise Refused(
            "bot cannot read",
            user_message=f"I cannot read {name}. Give me View Channel and Read Message "
            "History there first.",
        )


async def _visible(
    thread: discord.Thread, user_id: int, channel: discord.TextChannel, requester: Any
) -> bool:
    """A private thread only for those who may manage threads and its members (asked of
    Discord: without the members intent the gateway does not tell): the bot being in one
    must not show it to everyone who asks."""
    if not thread.is_private():
        return True
    if isinstance(requester, discord.Member) and channel.permissions_for(requester).manage_threads:
        return True
    try:
        await thread.fetch_member(user_id)
    except discord.HTTPException:  # NotFound: not a member; anything else: not shown
        return False
    return True


class DiscordHistory:
    """History reads of one DiscordAdapter."""

    def __init__(self, adapter: DiscordAdapter) -> None:
        self.adapter = adapter

    async def channel(
        self,
        channel: discord.TextChannel,
        window: Window,
        *,
        user_id: int,
        cap: int,
        counter: Counter,
        requester: Any = None,
    ) -> tuple[list[ChannelMessage], Read, Window]:
        """The window's messages, newest first up to `cap`, with its active threads'."""
        reading = _Reading(cap)
        window = await self._top_level(channel, window, user_id, reading, counter)
        after = window.start
        threads = [t for t in channel.threads if await _visible(t, user_id, channel, requester)]
        for thread in sorted(threads, key=lambda t: t.last_message_id or 0, reverse=True):
            if reading.room <= 0:
                reading.capped = reading.capped or _active_since(thread, window)
                break
            if _active_since(thread, window):
                await self._thread_window(channel, thread, after, reading)
        await counter(len(reading.kept))
        read = Read(
            capped="newest" if reading.capped else None, cap=cap, threads=len(reading.threads)
        )
        return self.convert(reading), read, window

    async def _top_level(
        self,
        channel: discord.TextChannel,
        window: Window,
        user_id: int,
        reading: _Reading,
        counter: Counter,
    ) -> Window:
        """The channel itself, newest first, to the window's start or the requester's last
        message; the window, anchored when it was 'my last message'."""
        seen = 0
        # One more than the cap: whether the cap cut the window shows in that one.
        async for m in channel.history(
            limit=reading.cap + 1, after=window.start, oldest_first=False
        ):
            if window.since_own and m.author.id == user_id and m.type in KEPT_TYPES:
                return window.after_own(m.created_at)
            if not reading.add(m, None):
                break
            seen += 1
            if seen % COUNT_EVERY == 0:
                await counter(len(reading.kept))
        return window

    async def _thread_window(
        self,
        channel: discord.TextChannel,
        thread: discord.Thread,
        after: Any,
        reading: _Reading,
    ) -> None:
        """A thread's messages in the window (once per reading), and its first message."""
        if thread.id in reading.threads:
            return
        reading.threads.add(thread.id)
        got = False
        async for m in thread.history(limit=reading.room + 1, after=after, oldest_first=False):
            if not reading.add(m, thread.id):
                break
            got = True
        if got and thread.id not in reading.kept and reading.room > 0:
            starter = await _starter(channel, thread)
            if starter is not None:
                reading.add(starter, None)

    async def thread(
        self, thread: discord.Thread, *, cap: int, with_files: bool = False
    ) -> tuple[list[ChannelMessage], Read]:
        """A whole thread, oldest first, up to `cap` messages (its first message included)."""
        reading = _Reading(cap)
        reading.threads.add(thread.id)
        if isinstance(thread.parent, discord.TextChannel):
            starter = await _starter(thread.parent, thread)
            if starter is not None:
                reading.add(starter, None)
        async for m in thread.history(limit=None, oldest_first=True):
            if not reading.add(m, thread.id):
                break
        read = Read(capped="first" if reading.capped else None, cap=cap)
        return self.convert(reading, with_files=with_files), read

    def convert(self, reading: _Reading, *, with_files: bool = False) -> list[ChannelMessage]:
        """Neutral messages: display names, readable mentions, jump links, file names."""
        me = self.adapter.bot.user
        out = []
        for m, thread in reading.kept.values():
            names = {str(u.id): u.display_name for u in m.mentions}
            own = me is not None and m.author.id == me.id
            out.append(
                ChannelMessage(
                    id=str(m.id),
                    author="Gemini" if own else m.author.display_name,
                    text=readable(m.content, bot_id="", names=names),
                    at=m.created_at,
                    link=m.jump_url,
                    thread_id=str(thread) if thread is not None and thread != m.id else None,
                    files=tuple(
                        FileRef(a.filename, a.size, a.content_type, a.read if with_files else None)
                        for a in m.attachments
                    ),
                    bot=m.author.bot,
                )
            )
        return out


def _active_since(thread: discord.Thread, window: Window) -> bool:
    """Whether the thread may have messages in the window (its last one is after the start)."""
    if window.start is None or thread.last_message_id is None:
        return True
    return discord.utils.snowflake_time(thread.last_message_id) > window.start


async def _starter(channel: discord.TextChannel, thread: discord.Thread) -> discord.Message | None:
    """The message a thread was started from (same id as the thread), if it still exists."""
    try:
        return await channel.fetch_message(thread.id)
    except discord.HTTPException:
        return None
