"""The thread gate: one thread's turns (and the commands that change it) run one at a time,
in the order they were accepted, in however many processes serve the database.

`LocalGate` is for one process (SQLite, memory): per-thread asyncio locks, whose FIFO
order is the order turns were accepted. A store shared by replicas brings its own gate
(storage/pg_gate.py) that also orders turns across processes and finds the replies of a
process that died.
"""

from __future__ import annotations

import asyncio
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from bot.engine.locks import ThreadLocks
from bot.store import ConversationStore
from bot.types import PendingReply, ThreadKey


class ThreadGate(Protocol):
    """Who may work on a thread now, and which unfinished replies nobody is answering."""

    # True when other processes share the database: their replies can be orphaned at any
    # time, so the service looks for orphans periodically, not only at start-up.
    shared: bool
    # Set when this process can no longer tell the others it is alive (a shared gate's
    # connection dropped): they will take its replies over, so it must stop.
    lost: asyncio.Event

    async def open(self) -> None:
        """Start (after the store is open)."""
        ...

    async def close(self) -> None:
        """Stop; every hold is released."""
        ...

    def hold(
        self, key: ThreadKey, *, conversation_id: int | None = None, seq: int | None = None
    ) -> AbstractAsyncContextManager[None]:
        """Hold the thread. With `seq` (a pending reply's number), also wait until no
        earlier reply of the conversation is pending, so replies go out in message order."""
        ...

    def busy(self, key: ThreadKey) -> bool:
        """True while this process holds or waits for the thread (a reply in flight)."""
        ...

    async def orphans(self) -> list[PendingReply]:
        """Pending replies no live process is answering, now this process's to recover."""
        ...

    async def own_pending(self) -> list[PendingReply]:
        """Pending replies this process owns (answering now, or stranded by a failure)."""
        ...

    async def hand_off(self, turn_id: int) -> None:
        """Leave a pending reply this process has not begun to the other processes (it is
        shutting down): the next one to look for orphans answers it."""
        ...

    async def draining(self) -> None:
        """This process is shutting down: the others stop counting on it."""
        ...

    async def peers(self) -> bool:
        """True while another process serves the database and would answer a reply
        handed off now."""
        ...


class LocalGate(ThreadLocks):
    """The gate of a single process: its locks, and at start-up every pending reply (the
    process that left them is gone)."""

    shared = False

    def __init__(self, store: ConversationStore) -> None:
        super().__init__()
        self.store = store
        self.lost = asyncio.Event()  # never set: nobody else can take over

    async def open(self) -> None:
        """Nothing to start."""

    async def close(self) -> None:
        """Nothing to stop."""

    async def orphans(self) -> list[PendingReply]:
        """Every pending reply: this is the database's only process."""
        return await self.store.pending_replies()

    async def own_pending(self) -> list[PendingReply]:
        """Every pending reply (this is the only process)."""
        return await self.store.pending_replies()

    async def hand_off(self, turn_id: int) -> None:
        """Never asked (there are no peers): the reply would stay pending for this
        process's next start-up."""

    async def draining(self) -> None:
        """Nobody to tell."""

    async def peers(self) -> bool:
        """None: this is the database's only process."""
        return False
