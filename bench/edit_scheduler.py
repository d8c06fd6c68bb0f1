"""EditScheduler on the real clock: first-show latency, and visible-text lag when many
replies share one budget.

Fake model: 600 characters in 30 chunks 50 ms apart per reply. Lag of a chunk = the time
from the model producing it to the first show() that contains it. A reply's fair share of
a budget shared by n replies is one call every n / rate seconds: one "budget slot".
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Sequence
from typing import Any

from bench.report import summary_ms, write
from bot.markup import MARKDOWN
from bot.ports import Budget, OutFile, TargetDefaults
from bot.streaming import EditScheduler

CHUNKS, CHUNK_CHARS, GAP = 30, 20, 0.05


class TimedTarget(TargetDefaults):
    """Records when each text length first became visible."""

    def __init__(self, budget: Budget, max_chars: int = 4000) -> None:
        self.budget = budget
        self.max_chars = max_chars
        self.markup = MARKDOWN
        self.shows: list[tuple[float, int]] = []
        self.first_show = asyncio.Event()
        self.message_ids: Sequence[str] = ()

    async def start(self) -> None:
        return None

    async def show(self, text: str, *, part: int) -> None:
        self.shows.append((time.perf_counter(), len(text)))
        self.first_show.set()

    async def finish(self, text: str, *, part: int) -> None:
        await self.show(text, part=part)

    async def fail(self, user_message: str) -> None:
        return None

    async def attach(self, files: Sequence[OutFile]) -> None:
        return None

    async def status(self, line: str) -> bool:
        return False


async def first_show_latency(samples: int = 500) -> tuple[list[float], int]:
    """First-show latencies on fresh budgets, and how many lanes are left 50 ms after."""
    scheduler = EditScheduler()
    out = []
    for i in range(samples):
        target = TimedTarget(Budget(f"fresh{i}", rate=1000.0, burst=1))
        reply = scheduler.open(target)
        t0 = time.perf_counter()
        reply.append("Hello")
        await target.first_show.wait()
        out.append(target.shows[0][0] - t0)
        reply.close()
        if not await reply.wait(5):
            raise RuntimeError(f"reply {i} not delivered")
    # Every budget is full again 1 ms after its last call: no lane should be left.
    await asyncio.sleep(0.05)
    left = len(scheduler._lanes)
    await scheduler.aclose()
    return out, left


async def _stream(reply: Any, produced: list[tuple[float, int]]) -> None:
    total = 0
    for k in range(CHUNKS):
        if k:
            await asyncio.sleep(GAP)
        reply.append("x" * CHUNK_CHARS)
        total += CHUNK_CHARS
        produced.append((time.perf_counter(), total))
    reply.close()


async def shared_budget(n: int, rate: float, burst: int) -> dict[str, Any]:
    scheduler = EditScheduler()
    budget = Budget("shared", rate=rate, burst=burst)
    targets = [TimedTarget(budget) for _ in range(n)]
    replies = [scheduler.open(t) for t in targets]
    produced: list[list[tuple[float, int]]] = [[] for _ in range(n)]
    await asyncio.gather(*(_stream(r, p) for r, p in zip(replies, produced, strict=True)))
    await asyncio.gather(*(r.wait(600) for r in replies))
    await scheduler.aclose()
    lags: list[float] = []
    worst_per_reply: list[float] = []
    for target, prod in zip(targets, produced, strict=True):
        worst = 0.0
        for at, length in prod:
            seen = next(t for t, shown in target.shows if shown >= length)
            lag = max(0.0, seen - at)
            lags.append(lag)
            worst = max(worst, lag)
        worst_per_reply.append(worst)
    slot = n / rate
    calls = sum(len(t.shows) for t in targets)
    return {
        "replies": n,
        "budget_per_s": rate,
        "burst": burst,
        "budget_slot_s": round(slot, 3),
        "calls": calls,
        "complete": all(t.shows[-1][1] == CHUNKS * CHUNK_CHARS for t in targets),
        "lag_mean_s": round(statistics.fmean(lags), 3),
        "lag_max_s": round(max(lags), 3),
        "replies_within_one_slot": sum(w <= slot + 0.05 for w in worst_per_reply),
    }


async def main_async() -> dict[str, Any]:
    latency, lanes_left = await first_show_latency()
    scenarios = [
        await shared_budget(1, rate=5.0, burst=5),
        await shared_budget(50, rate=50.0, burst=5),
        await shared_budget(50, rate=10.0, burst=1),
    ]
    return {"first_show": summary_ms(latency), "lanes_left": lanes_left, "shared": scenarios}


def main() -> dict[str, Any]:
    results = asyncio.run(main_async())
    fs = results["first_show"]
    rows = "\n".join(
        f"| {s['replies']} | {s['budget_per_s']}/s (burst {s['burst']}) | {s['budget_slot_s']} | "
        f"{s['calls']} | {s['lag_mean_s']} | {s['lag_max_s']} | "
        f"{s['replies_within_one_slot']}/{s['replies']} | {'yes' if s['complete'] else 'NO'} |"
        for s in results["shared"]
    )
    md = (
        f"First show() after the first delta, budget free (500 samples): median "
        f"{fs['median_ms']} ms, p99 {fs['p99_ms']} ms, max {fs['max_ms']} ms. Target: 5 ms. "
        f"Lanes still kept 50 ms after the last of those 500 budgets: {results['lanes_left']} "
        "(target 0: idle, recovered lanes are forgotten).\n\n"
        "Replies sharing one budget; model: 600 chars in 30 chunks 50 ms apart each. "
        "Target: every reply's lag within one budget slot (n / rate).\n\n"
        "| replies | budget | slot (s) | calls | mean lag (s) | max lag (s) | "
        "replies within one slot | all text delivered |\n"
        "|---:|---:|---:|---:|---:|---:|---:|---|\n" + rows
    )
    path = write("edit_scheduler", results, md)
    print(md)
    print(f"\nreport: {path}")
    return results


if __name__ == "__main__":
    main()
