"""Pacing with replicas (a shared gate and shared budgets), on fakes: what a call claims,
a reply's calls kept in order across the wait for the shared budget, no placeholder while
other replicas crowd the budget, and a reply's sign only once it is the thread's turn.

tests/e2e/test_replicas.py found each of these with three processes; these pin them down.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta

from bot.clock import SystemClock
from bot.engine import ConversationEngine
from bot.gate import LocalGate
from bot.personas import load_personas
from bot.ports import Budget
from bot.shared_limits import terms
from bot.streaming import EditScheduler
from bot.types import Author, IncomingMessage, ThreadKey
from storage.memory import MemoryStore
from tests.conftest import ROOT
from tests.helpers import FakeClock, InstantModel, RecordingTarget


class OthersSpendIt:
    """Shared budgets that the other replicas have spent for the next `refusals` claims."""

    def __init__(self, refusals: int = 0, wait: float = 1.0) -> None:
        self.refusals = refusals
        self.wait = wait
        self.claims: list[list[Budget]] = []

    async def take(self, budgets: Sequence[Budget]) -> float:
        self.claims.append(list(budgets))
        if self.refusals > 0:
            self.refusals -= 1
            return self.wait
        return 0.0

    async def prune(self, *, idle_for: timedelta) -> int:
        return 0


async def nothing() -> None:
    return None


def test_every_replica_claims_on_the_declared_budget_less_one_call(clock: FakeClock) -> None:
    parent = Budget("slack:T:global", rate=50.0, burst=50)
    budget = Budget("slack:T:chat.update", rate=50 / 60, burst=5, adaptive=True, parent=parent)
    bucket = EditScheduler(clock)._bucket(budget)
    bucket.refused(bucket.take(), 1.0)  # a 429 on a call it allowed: this replica's halves
    assert bucket.rate < budget.rate
    got = [(b.key, b.rate, b.burst) for b in terms(bucket)]
    assert got == [(budget.key, budget.rate, 4), (parent.key, parent.rate, 49)]


async def test_no_spare_call_while_other_replicas_spend_the_shared_budget(
    clock: FakeClock,
) -> None:
    scheduler = EditScheduler(clock, shared=OthersSpendIt(refusals=1, wait=0.5))
    budget = Budget("slack:T:chat.update", rate=1.0, burst=5)
    try:
        assert scheduler.spare(budget) == 5  # this replica alone would have room for 5
        call = asyncio.create_task(scheduler.call(budget, nothing))
        await clock.advance(0.6)  # the claim found the budget spent, waited, then went
        await call
        assert scheduler.spare(budget) <= 0  # a crowd: no placeholder now
        await clock.advance(burst_refill := budget.burst / budget.rate)
        assert scheduler.spare(budget) > 0, f"still crowded {burst_refill}s later"
    finally:
        await scheduler.aclose()


async def test_a_call_waiting_for_the_shared_budget_is_not_overtaken(clock: FakeClock) -> None:
    """The reply's first call waits 2 s for the other replicas' calls; its final, ready
    meanwhile, must not go first and then be overwritten by the older text."""
    scheduler = EditScheduler(clock, shared=OthersSpendIt(refusals=1, wait=2.0))
    target = RecordingTarget(clock, budget=Budget("slack:T:chat.update", rate=10.0, burst=5))
    try:
        reply = scheduler.open(target)
        reply.append("first")
        await clock.settle()  # its call waits in the shared slot
        reply.append(" second")
        reply.close()
        await clock.advance(3.0)
        assert await reply.wait(0)
        # One call, made once the wait is over, with the reply's newest state.
        assert [(c.kind, c.text, c.at) for c in target.calls] == [("finish", "first second", 2.0)]
    finally:
        await scheduler.aclose()


class OtherReplicaFirst(LocalGate):
    """A gate shared with other replicas, where an earlier reply of the thread (another
    replica's) is pending until `earlier_done` is set."""

    shared = True

    def __init__(self, store: MemoryStore) -> None:
        super().__init__(store)
        self.earlier_done = asyncio.Event()

    def __bool__(self) -> bool:
        return True  # a gate holding no lock has len() 0: `gate or LocalGate(...)` in core

    @contextlib.asynccontextmanager
    async def hold(
        self, key: object, *, conversation_id: int | None = None, seq: int | None = None
    ) -> AsyncIterator[None]:
        await self.earlier_done.wait()
        async with super().hold(key, conversation_id=conversation_id, seq=seq):
            yield


async def test_with_replicas_the_sign_waits_for_the_threads_turn() -> None:
    """A placeholder posted while an earlier reply of the thread has no message yet would
    sit above that reply: with replicas the sign goes out once the reply holds the thread."""
    store = MemoryStore()
    gate = OtherReplicaFirst(store)
    engine = ConversationEngine(
        store=store,
        model=InstantModel("answer"),
        personas=load_personas(ROOT / "personas.toml", default="assistant"),
        gate=gate,
    )
    target = RecordingTarget(SystemClock(), budget=Budget("t", rate=float("inf"), burst=100))
    message = IncomingMessage(ThreadKey("slack", "T", "C", "1.0"), Author("u", "U"), "hi")
    turn = asyncio.create_task(engine.handle(message, target))
    for _ in range(50):  # accepted, and waiting for the thread
        await asyncio.sleep(0)
    assert not turn.done()
    assert not target.started, "the sign went out before the earlier reply"
    gate.earlier_done.set()
    result = await asyncio.wait_for(turn, 5)
    assert result.status == "complete"
    assert target.started
