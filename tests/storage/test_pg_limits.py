"""Platform budgets shared by replicas (storage/pg_limits.py) on a real PostgreSQL server:
a token bucket and a sliding window counted across processes, all-or-none claims, and
two schedulers (two replicas) that together stay within one budget."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta

import pytest

from bot.clock import SystemClock
from bot.limiters import TokenBucket
from bot.ports import Budget
from bot.shared_limits import SharedSlots
from bot.streaming import EditScheduler
from storage.pg_limits import PgLimits
from storage.postgres import PostgresStore

BUCKET = Budget("slack:T1:chat.update", rate=10.0, burst=3)
WINDOW = Budget("discord:C1", rate=5.0, burst=5, window=1.0)


@pytest.fixture
def limits(pg_stores: Callable[[], Awaitable[PostgresStore]]) -> Callable[[], Awaitable[PgLimits]]:
    """A factory of replicas' shared limits (a store of its own each) on one database."""

    async def make() -> PgLimits:
        return PgLimits(await pg_stores())

    return make


async def test_a_token_bucket_grants_its_burst_then_its_rate(limits) -> None:
    a, b = await limits(), await limits()
    assert [await x.take([BUCKET]) for x in (a, b, a)] == [0.0, 0.0, 0.0]
    wait = await b.take([BUCKET])
    assert 0 < wait <= 0.1  # the next token, at most 1/rate after the burst
    await asyncio.sleep(wait)
    assert await a.take([BUCKET]) == 0.0


async def test_a_sliding_window_counts_calls_in_any_window(limits) -> None:
    a, b = await limits(), await limits()
    for i in range(5):
        assert await (a if i % 2 else b).take([WINDOW]) == 0.0
    wait = await a.take([WINDOW])
    assert 0.5 < wait <= 1.0  # until the first call leaves the window
    await asyncio.sleep(wait)
    assert await b.take([WINDOW]) == 0.0


async def test_a_claim_takes_every_budget_or_none(limits) -> None:
    a = await limits()
    spent = Budget("discord:global", rate=2.0, burst=1)
    assert await a.take([spent]) == 0.0
    assert await a.take([BUCKET, spent]) > 0  # the parent is spent: nothing is claimed
    assert [await a.take([BUCKET]) for _ in range(3)] == [0.0, 0.0, 0.0]  # burst intact


async def test_three_replicas_hammering_one_budget_stay_within_it(limits) -> None:
    replicas = [await limits() for _ in range(3)]
    granted: list[float] = []
    start = time.monotonic()

    async def hammer(x: PgLimits) -> None:
        while time.monotonic() - start < 1.5:
            wait = await x.take([BUCKET])
            if wait == 0:
                granted.append(time.monotonic() - start)
            else:
                await asyncio.sleep(wait)

    await asyncio.gather(*(hammer(x) for x in replicas))
    elapsed = time.monotonic() - start
    assert len(granted) <= BUCKET.burst + BUCKET.rate * elapsed + 1
    assert len(granted) >= BUCKET.burst + BUCKET.rate * 1.5 * 0.5  # and the budget is used


async def test_two_schedulers_share_one_budget(limits) -> None:
    """Two replicas' schedulers, each with its full local budget, send 20 calls each on
    one workspace's budget: together they keep to it (a local limiter alone would let
    each send the whole rate)."""
    clock = SystemClock()
    calls: list[float] = []
    schedulers = [EditScheduler(clock, shared=await limits()) for _ in range(2)]
    start = time.monotonic()

    async def call() -> None:
        calls.append(time.monotonic() - start)

    try:
        await asyncio.gather(*(s.call(BUCKET, call) for s in schedulers for _ in range(10)))
    finally:
        for s in schedulers:
            await s.aclose()
    calls.sort()
    # 20 calls on a 10/s budget with bursts of 3: the last cannot go before 1.7 s.
    assert calls[-1] >= (20 - BUCKET.burst) / BUCKET.rate - 0.05
    for i, at in enumerate(calls):  # never ahead of the budget (clocks differ by < 20 ms)
        assert at >= (i + 1 - BUCKET.burst) / BUCKET.rate - 0.02


async def test_a_failing_shared_store_leaves_the_local_limit(caplog) -> None:
    class Down:
        async def take(self, budgets: object) -> float:
            raise ConnectionError("database unreachable")

        async def prune(self, *, idle_for: timedelta) -> int:
            return 0

    clock = SystemClock()
    slots = SharedSlots(Down(), clock)
    bucket = TokenBucket(BUCKET, clock)
    await slots.slot(bucket)
    await slots.slot(bucket)
    assert slots.errors == 2
    assert sum("pacing locally" in r.message for r in caplog.records) == 1  # warned once


async def test_idle_budgets_are_pruned(limits) -> None:
    a = await limits()
    await a.take([BUCKET, WINDOW])
    assert await a.prune(idle_for=timedelta(hours=1)) == 0
    assert await a.prune(idle_for=timedelta(seconds=-1)) == 2
