"""Core: all the platform adapters may ask of the conversation core.

Adapters hand messages over (claim, submit or handle, release), ask whether the bot is in
a thread, and make their platform calls through the pacer (the engine's scheduler, seen
as bot.ports.Pacer), which keeps each within its budget. They never reach the engine's
store, gate or personas themselves: what they need of those is a method here, so the
engine's insides can change freely.
"""

from __future__ import annotations

import asyncio

from bot.engine import ConversationEngine, TurnResult
from bot.ports import Pacer, ReplyTarget
from bot.types import IncomingMessage, ThreadKey

__all__ = ["Core"]


class Core:
    """The narrow face of the conversation engine that adapters are given."""

    def __init__(self, engine: ConversationEngine) -> None:
        self._engine = engine

    @property
    def pacer(self) -> Pacer:
        """Paces every platform call within its budget (reply targets are built on it)."""
        return self._engine.scheduler

    @property
    def shared(self) -> bool:
        """True when replicas share the database (a thread's earlier reply may be on
        another process)."""
        return self._engine.locks.shared

    async def claim(self, platform: str, event_id: str) -> bool:
        """True when this event is new: answer it once (see ConversationEngine.claim)."""
        return await self._engine.claim(platform, event_id)

    def release(self, platform: str, event_id: str) -> None:
        """Drop a claim whose message will not be submitted after all."""
        self._engine.release(platform, event_id)

    def submit(self, message: IncomingMessage, target: ReplyTarget) -> asyncio.Task[TurnResult]:
        """Answer a message in the background (tracked for graceful shutdown)."""
        return self._engine.submit(message, target)

    async def handle(self, message: IncomingMessage, target: ReplyTarget) -> TurnResult:
        """Answer a message and wait for the reply to be stored."""
        return await self._engine.handle(message, target)

    async def knows(self, key: ThreadKey) -> bool:
        """True when the bot is in this thread (it has a stored conversation)."""
        return await self._engine.store.get_conversation(key) is not None

    async def join(self, key: ThreadKey) -> None:
        """The bot is in this thread from now on, durably, before its first turn runs."""
        await self._engine.store.get_or_create_conversation(key)

    def has_persona(self, name: str) -> bool:
        """True when a persona of this name is defined."""
        return self._engine.personas.has(name)

    async def forget_workspace(self, platform: str, workspace_id: str) -> int:
        """Delete every conversation of a workspace (an uninstall); returns how many."""
        return await self._engine.store.forget_workspace(platform, workspace_id)
