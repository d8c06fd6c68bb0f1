"""Per-thread ordering and cross-thread parallelism, with an in-process model."""

from __future__ import annotations

import asyncio

from bot.clock import SystemClock
from bot.engine import ConversationEngine
from bot.personas import load_personas
from bot.ports import Budget
from bot.types import Author, IncomingMessage, ThreadKey
from storage.memory import MemoryStore
from tests.conftest import ROOT
from tests.helpers import InstantModel, RecordingTarget


def make(model: InstantModel) -> ConversationEngine:
    return ConversationEngine(
        store=MemoryStore(),
        model=model,
        personas=load_personas(ROOT / "personas.toml", default="assistant"),
    )


def target() -> RecordingTarget:
    return RecordingTarget(SystemClock(), budget=Budget("t", rate=float("inf"), burst=100))


def msg(thread: str, text: str) -> IncomingMessage:
    return IncomingMessage(ThreadKey("t", "w", "c", thread), Author("u", "U"), text)


async def test_turns_in_one_thread_run_in_order() -> None:
    model = InstantModel("reply", chunks=5, delay=0.02)
    engine = make(model)
    await asyncio.gather(*(engine.handle(msg("same", f"m{i}"), target()) for i in range(4)))
    assert model.max_active == 1
    # Each call saw every earlier turn of the thread, in order.
    for n, (_, history, message) in enumerate(model.calls):
        assert len(history) == 2 * n
        assert message.parts[0] == f"[U] m{n}"
    assert len(engine.locks) == 0  # no lock left behind


async def test_different_threads_run_in_parallel() -> None:
    model = InstantModel("reply", chunks=5, delay=0.05)
    engine = make(model)
    await asyncio.gather(*(engine.handle(msg(f"t{i}", "hi"), target()) for i in range(5)))
    assert model.max_active == 5  # all five streamed at once (no wall-clock bound to flake)
