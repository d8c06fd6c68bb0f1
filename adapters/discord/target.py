"""DiscordReplyTarget: typing until the first text, then a message edited as the reply grows."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import discord

from bot.errors import BotError
from bot.markup import Markup
from bot.ports import Budget, OutFile, Pacer, TargetDefaults

log = logging.getLogger(__name__)

MAX_CHARS = 2000
# Discord's global limit is 50 requests per second per bot; message writes per channel are
# about 5 per 5 s (unpublished, what bots meet). Sliding windows, as Discord counts them.
GLOBAL_PER_S = 50


def global_budget(per_second: int = GLOBAL_PER_S) -> Budget:
    """Every REST call of the bot (Discord raises it for large bots on request)."""
    return Budget("discord:global", rate=float(per_second), burst=per_second, window=1.0)


TYPING_EVERY = 8.0  # a typing indicator lasts about 10 s
# A thread just made from the message already shows that the bot took it; typing then
# starts only if the model is slow, leaving the global budget to the text.
TYPING_AFTER_THREAD = 1.0
MAX_FILE_BYTES = 10 * 1024 * 1024  # a bot's upload limit in an unboosted server
MAX_FILES = 10  # attachments per message
ANGLE_LINKS = Markup("angle")
# Model output can never ping anyone: not @everyone/@here, not roles, not users.
NO_PINGS = discord.AllowedMentions.none()


def channel_budget(
    channel_id: int | str, parent: Budget, gauge: Callable[[], float] | None = None
) -> Budget:
    """One channel's (or thread's) message writes, under the global limit; `gauge` adds
    any wait Discord's rate-limit headers demand beyond the window (discord.py's record of
    the channel's bucket: a stricter or shared bucket, a reset)."""
    return Budget(
        f"discord:{channel_id}:messages",
        rate=1.0,
        burst=5,
        window=5.0,
        reserve=1,
        spacing=0.3,
        parent=parent,
        gauge=gauge,
    )


class DiscordReplyTarget(TargetDefaults):
    """One reply in a Discord channel, thread or DM."""

    max_chars = MAX_CHARS
    markup = ANGLE_LINKS  # masked links with <url>: no embed unfurls for each source

    def __init__(
        self,
        *,
        channel: discord.abc.Messageable,
        channel_id: int | str,
        scheduler: Pacer,
        reference: discord.Message | discord.PartialMessage | None = None,
        on_message: Callable[[discord.Message], Awaitable[None]] | None = None,
        new_thread: bool = False,
        global_limit: Budget | None = None,
        gauge: Callable[[], float] | None = None,
    ) -> None:
        self.channel = channel
        self.scheduler = scheduler
        self.global_budget = global_limit or global_budget()
        self.budget = channel_budget(channel_id, self.global_budget, gauge)
        self.reference = reference
        self._on_message = on_message
        self._messages: dict[int, discord.Message | discord.PartialMessage] = {}
        self._typing: asyncio.Task[None] | None = None
        self._typing_call: asyncio.Future[None] | None = None
        self._texted = False
        self._typing_delay = TYPING_AFTER_THREAD if new_thread else 0.0

    def adopt(self, messages: Sequence[discord.PartialMessage]) -> None:
        """Continue a reply whose messages exist already (recovery after a restart)."""
        self._messages = dict(enumerate(messages))
        if messages:
            self._texted = True  # no typing under an answer that is being replaced

    @property
    def message_ids(self) -> Sequence[str]:
        """Ids of the messages posted for this reply."""
        return [str(self._messages[i].id) for i in sorted(self._messages)]

    async def start(self) -> None:
        """Typing until the first text (in the background: the model call need not wait)."""
        self._typing = asyncio.create_task(self._keep_typing())

    async def _type_once(self) -> None:
        async def typing() -> None:
            if self._texted:  # text came while this waited for the budget: not needed
                return
            await self.channel.typing()

        try:
            await self.scheduler.call(self.global_budget, typing)
        except discord.HTTPException as exc:
            log.info("discord: typing failed: %s", exc)

    async def _keep_typing(self) -> None:
        if self._typing_delay:
            await asyncio.sleep(self._typing_delay)
        while not self._texted:
            self._typing_call = asyncio.ensure_future(self._type_once())
            await asyncio.shield(self._typing_call)
            await asyncio.sleep(TYPING_EVERY)

    async def _stop_typing(self) -> None:
        self._texted = True
        if self._typing is not None:
            self._typing.cancel()
        if self._typing_call is not None and not self._typing_call.done():
            # A typing request that reached Discord after our message would show "typing"
            # under the answer for 10 s: let it land first.
            with contextlib.suppress(Exception):
                await self._typing_call

    async def show(self, text: str, *, part: int) -> None:
        """Post part `part`, or edit it to the newest text."""
        await self._stop_typing()
        text = text or "…"
        msg = self._messages.get(part)
        if msg is None:
            kwargs: dict[str, Any] = {"allowed_mentions": NO_PINGS}
            if part == 0 and self.reference is not None:
                kwargs["reference"] = self.reference.to_reference(fail_if_not_exists=False)
                kwargs["mention_author"] = False
            msg = await self.channel.send(text, **kwargs)
            self._messages[part] = msg
            if self._on_message is not None:
                await self._on_message(msg)
        else:
            self._messages[part] = await msg.edit(content=text, allowed_mentions=NO_PINGS)

    async def finish(self, text: str, *, part: int) -> None:
        """The final text of the last part."""
        await self.show(text, part=part)

    async def fail(self, user_message: str) -> None:
        """Say what went wrong, under whatever text was shown."""
        await self._stop_typing()
        msg = await self.channel.send(f"⚠️ {user_message}", allowed_mentions=NO_PINGS)
        if self._on_message is not None:
            await self._on_message(msg)

    def text_ready(self) -> None:
        """Text is queued: no more typing requests (they would spend the global budget the
        text needs; the message itself is the sign from here on)."""
        self._texted = True
        if self._typing is not None:
            self._typing.cancel()  # a typing call in flight lands (shielded); none follows

    async def status(self, line: str) -> bool:
        """Shown in the reply itself (an italic line the first text replaces)."""
        return False

    async def attach(self, files: Sequence[OutFile]) -> None:
        """Post files (images, charts, long code as .txt) under the reply, ten per message."""
        too_big = [f.name for f in files if len(f.data) > MAX_FILE_BYTES]
        files = [f for f in files if len(f.data) <= MAX_FILE_BYTES]
        for at in range(0, len(files), MAX_FILES):
            batch = files[at : at + MAX_FILES]

            async def send(batch: Sequence[OutFile] = batch) -> None:
                made = [discord.File(io.BytesIO(f.data), filename=_txt(f)) for f in batch]
                try:
                    msg = await self.channel.send(files=made, allowed_mentions=NO_PINGS)
                except discord.HTTPException as exc:
                    raise BotError(
                        f"upload failed: {exc}",
                        user_message="Discord refused the file(s) "
                        f"{', '.join(f.name for f in batch)} ({exc.status}).",
                    ) from None
                if self._on_message is not None:
                    await self._on_message(msg)

            await self.scheduler.call(self.budget, send)
        if too_big:  # the others are posted; these are named
            raise BotError(
                "file too large",
                user_message=f"{', '.join(too_big)} is larger than Discord allows a bot "
                f"({MAX_FILE_BYTES // 1024**2} MB).",
            )


def _txt(f: OutFile) -> str:
    """Text files as .txt, which Discord previews inline (code included)."""
    if f.mime_type.startswith("text/") and not f.name.endswith(".txt"):
        return f"{f.name}.txt"
    return f.name
