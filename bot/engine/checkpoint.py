"""Checkpoints of a reply in flight, so a crash leaves something to recover.

A reply's platform message ids are saved the moment a message is posted (before the next
call to the platform), so recovery always edits the message the user sees instead of
posting a second one; its text is saved every few seconds while it streams.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from bot.ports import Budget, ConversationStore, OutFile, ReplyTarget
from bot.types import TextPart, TurnUpdate

log = logging.getLogger(__name__)

TEXT_EVERY_S = 2.0


class TargetWrapper:
    """A reply target that passes every call to the one it wraps (subclasses change some)."""

    def __init__(self, target: ReplyTarget) -> None:
        self.target = target
        self.max_chars = target.max_chars
        self.budget: Budget = target.budget
        self.markup = target.markup

    @property
    def message_ids(self) -> Sequence[str]:
        """The wrapped target's message ids."""
        return self.target.message_ids

    async def start(self) -> None:
        """Start the reply."""
        await self.target.start()

    async def show(self, text: str, *, part: int) -> bool | None:
        """Post or edit."""
        return await self.target.show(text, part=part)

    async def finish(self, text: str, *, part: int) -> bool | None:
        """Final text of the last message."""
        return await self.target.finish(text, part=part)

    def offer(self, part: int, text: str) -> None:
        """The newest text of message `part`."""
        self.target.offer(part, text)

    def edits(self, part: int, text: str) -> bool:
        """Whether showing message `part` is paid from the reply's budget."""
        return self.target.edits(part, text)

    def showing(self, part: int) -> bool:
        """Whether message `part` shows text already."""
        return self.target.showing(part)

    async def fail(self, user_message: str) -> None:
        """The failure note."""
        await self.target.fail(user_message)

    async def attach(self, files: Sequence[OutFile]) -> None:
        """Files after the text."""
        await self.target.attach(files)

    async def status(self, line: str) -> bool:
        """A tool-activity line, where the platform has a place for one."""
        return await self.target.status(line)

    def text_ready(self) -> None:
        """Text waits to be shown."""
        self.target.text_ready()


class TrackedTarget(TargetWrapper):
    """A reply target that records its platform message ids in the pending turn."""

    def __init__(
        self,
        target: ReplyTarget,
        store: ConversationStore,
        *,
        conversation_id: int,
        turn_id: int,
        saved: Sequence[str] = (),
    ) -> None:
        super().__init__(target)
        self.store = store
        self.conversation_id = conversation_id
        self.turn_id = turn_id
        # What the stored turn holds: a placeholder posted before the turn was stored is
        # already in the target's ids, and must still be saved.
        self._saved: tuple[str, ...] = tuple(saved)

    async def _save_ids(self) -> None:
        ids = tuple(self.target.message_ids)
        if ids == self._saved:
            return
        try:
            await self.store.update_turn(
                self.conversation_id, self.turn_id, TurnUpdate(message_ids=ids)
            )
            self._saved = ids
        except Exception as exc:  # best effort: the reply itself goes on
            log.warning("saving message ids of turn %s failed: %r", self.turn_id, exc)

    async def start(self) -> None:
        """Start the reply; save a placeholder's id at once."""
        try:
            await self.target.start()
        finally:
            await self._save_ids()

    async def show(self, text: str, *, part: int) -> bool | None:
        """Post or edit; a new message's id is saved before the next call."""
        try:
            return await self.target.show(text, part=part)
        finally:
            await self._save_ids()

    async def finish(self, text: str, *, part: int) -> bool | None:
        """Final text of the last message."""
        try:
            return await self.target.finish(text, part=part)
        finally:
            await self._save_ids()

    async def fail(self, user_message: str) -> None:
        """The failure note."""
        try:
            await self.target.fail(user_message)
        finally:
            await self._save_ids()


class Checkpointer:
    """Saves a pending reply's text every TEXT_EVERY_S while it streams."""

    def __init__(
        self,
        store: ConversationStore,
        *,
        conversation_id: int,
        turn_id: int,
        text: Callable[[], str],
    ) -> None:
        self.store = store
        self.conversation_id = conversation_id
        self.turn_id = turn_id
        self._text = text
        self._saved_text = ""

    async def run(self) -> None:
        """Save changes until cancelled."""
        while True:
            await asyncio.sleep(TEXT_EVERY_S)
            text = self._text()
            if not text or text == self._saved_text:
                continue
            change = TurnUpdate(parts=(TextPart(text),))
            try:
                await self.store.update_turn(self.conversation_id, self.turn_id, change)
            except Exception as exc:  # a checkpoint is best effort; the reply goes on
                log.warning("checkpoint of turn %s failed: %r", self.turn_id, exc)
                continue
            self._saved_text = text
