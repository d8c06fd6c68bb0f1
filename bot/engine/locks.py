"""Per-thread locks: one thread's turns (and commands on it) run one at a time."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


class ThreadLocks:
    """One asyncio.Lock per thread key, dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[object, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(
        self, key: object, *, conversation_id: int | None = None, seq: int | None = None
    ) -> AsyncIterator[None]:
        """Hold the thread's lock (FIFO among waiters: in one process, turns ask for it in
        the order they were accepted, so `conversation_id` and `seq` are not needed)."""
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users <= 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    def busy(self, key: object) -> bool:
        """True while someone holds or waits for the thread's lock (a reply in flight)."""
        return key in self._locks

    def __len__(self) -> int:
        return len(self._locks)
