"""Progress notes of one catch-up ("Reading #general… (1,200 messages)"), spaced out; each
platform says them its own way (Slack's response_url, Discord's deferred response)."""

from __future__ import annotations

import asyncio


class ProgressNotes:
    """How much was read, said at most every `every_s` seconds (and `limit` times)."""

    def __init__(self, name: str, *, every_s: float, limit: int | None = None) -> None:
        self.name = name
        self.every_s = every_s
        self.limit = limit
        self.used = 0
        self.last = 0.0
        self.read = 0

    async def show(self, text: str, *, force: bool = False) -> None:
        """Say `text`, unless the notes are used up or the last one was moments ago."""
        now = asyncio.get_running_loop().time()
        if self.limit is not None and self.used >= self.limit:
            return
        if not force and now - self.last < self.every_s:
            return
        self.used += 1
        self.last = now
        await self.put(text)

    async def put(self, text: str) -> None:
        """Show one note on the platform."""
        raise NotImplementedError

    async def count(self, n: int) -> None:
        """Messages read so far."""
        self.read = n
        await self.show(f"Reading {self.name}… ({n:,} messages)")

    async def note(self, text: str) -> None:
        """A note from the summariser (parts summarised)."""
        await self.show(f"Read {self.read:,} messages in {self.name}. {text}")
