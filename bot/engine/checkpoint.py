"""Checkpoints of a reply in flight, so a crash leaves something to recover."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from bot.ports import Store
from bot.types import TextPart, TurnUpdate

log = logging.getLogger(__name__)

# Message ids are saved as soon as they change (polled this often, in memory only); the
# text at most this often, so a long reply costs a handful of writes.
POLL_S = 0.1
TEXT_EVERY_S = 2.0


class Checkpointer:
    """Saves a pending reply's platform message ids and text while it streams."""

    def __init__(
        self,
        store: Store,
        *,
        conversation_id: int,
        turn_id: int,
        message_ids: Callable[[], Sequence[str]],
        text: Callable[[], str],
    ) -> None:
        self.store = store
        self.conversation_id = conversation_id
        self.turn_id = turn_id
        self._ids = message_ids
        self._text = text
        self._saved_ids: tuple[str, ...] = ()
        self._saved_text = ""
        self.writes = 0

    async def run(self) -> None:
        """Save changes until cancelled."""
        loop = asyncio.get_running_loop()
        last_text_at = loop.time()
        while True:
            await asyncio.sleep(POLL_S)
            ids = tuple(self._ids())
            text = self._text()
            due = loop.time() - last_text_at >= TEXT_EVERY_S and text != self._saved_text
            if ids == self._saved_ids and not due:
                continue
            change = TurnUpdate(
                message_ids=ids if ids != self._saved_ids else None,
                parts=(TextPart(text),) if due and text else None,
            )
            try:
                await self.store.update_turn(self.conversation_id, self.turn_id, change)
            except Exception as exc:  # a checkpoint is best effort; the reply goes on
                log.warning("checkpoint of turn %s failed: %r", self.turn_id, exc)
                continue
            self.writes += 1
            self._saved_ids = ids
            if due:
                self._saved_text = text
                last_text_at = loop.time()
