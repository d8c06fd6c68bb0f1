"""Engine turns per second with an instant model and the SQLite store, on one core.

Shows that per-turn work is bounded by the history budget, not by the thread's length:
the same turn rate on a 10-turn and a 5,000-turn thread.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from bench.report import write
from bot.engine import ConversationEngine
from bot.markup import MARKDOWN
from bot.personas import load_personas
from bot.ports import Budget, Finished, ModelContent, ModelEvent, OutFile, TargetDefaults, TextDelta
from bot.types import (
    Author,
    IncomingMessage,
    NewTurn,
    Persona,
    RemoteFile,
    TextPart,
    ThreadKey,
    Usage,
)
from storage.sqlite import SqliteStore

MESSAGE = "Tell me something about the history of this thread, please. " * 3  # ~45 tokens
BUDGET_TOKENS = 4_000


class InstantModel:
    """Answers at once with a fixed reply."""

    async def stream(
        self, *, persona: Persona, history: Sequence[ModelContent], message: ModelContent
    ) -> AsyncIterator[ModelEvent]:
        yield TextDelta("A short instant answer from the fake model.")
        yield Finished("stop", Usage(100, 10))

    async def upload(self, *, data: bytes, mime_type: str, display_name: str) -> RemoteFile:
        raise NotImplementedError

    async def aclose(self) -> None:
        return None


class NullTarget(TargetDefaults):
    """A reply target that shows nothing and costs nothing."""

    max_chars = 4000
    markup = MARKDOWN
    budget = Budget("bench", rate=float("inf"), burst=1_000_000)
    message_ids: Sequence[str] = ("m",)

    async def start(self) -> None:
        return None

    async def show(self, text: str, *, part: int) -> None:
        return None

    async def finish(self, text: str, *, part: int) -> None:
        return None

    async def fail(self, user_message: str) -> None:
        return None

    async def attach(self, files: Sequence[OutFile]) -> None:
        return None

    async def status(self, line: str) -> bool:
        return False


async def _prefill(store: SqliteStore, key: ThreadKey, turns: int) -> None:
    conv = await store.get_or_create_conversation(key)
    rows = []
    for i in range(turns):
        role = "user" if i % 2 == 0 else "model"
        rows.append(NewTurn(role, (TextPart(MESSAGE),), author=Author("u", "U"), token_estimate=45))
    await store.db.execute("BEGIN")
    for t in rows:
        await store.append_turn(conv.id, t)
    await store.db.execute("COMMIT")


async def measure(prefill: int, turns: int, data: Path) -> dict[str, Any]:
    store = SqliteStore(data / "bench.db", blob_dir=data / "blobs", max_blob_bytes=10**8)
    await store.open()
    engine = ConversationEngine(
        store=store,
        model=InstantModel(),
        personas=load_personas(None, default="assistant"),
        history_token_budget=BUDGET_TOKENS,
    )
    key = ThreadKey("bench", "w", "c", f"t{prefill}")
    await _prefill(store, key, prefill)
    author = Author("u", "U")
    for _ in range(20):  # warm-up
        await engine.handle(IncomingMessage(key, author, MESSAGE), NullTarget())
    start = time.perf_counter()
    cpu0 = time.process_time()
    for _ in range(turns):
        result = await engine.handle(IncomingMessage(key, author, MESSAGE), NullTarget())
        assert result.status == "complete", result
    wall = time.perf_counter() - start
    cpu = time.process_time() - cpu0
    conv = await store.get_conversation(key)
    assert conv is not None
    history = await store.load_history(conv.id, token_budget=BUDGET_TOKENS)
    total = await store.count_turns(conv.id)
    await engine.scheduler.aclose()
    await store.close()
    return {
        "thread_turns_before": prefill,
        "thread_turns_after": total,
        "turns_measured": turns,
        "turns_per_second": round(turns / wall, 1),
        "ms_per_turn": round(wall / turns * 1000, 3),
        "cpu_ms_per_turn": round(cpu / turns * 1000, 3),
        "history_turns_sent": len(history.turns),
    }


async def median_of(prefill: int, turns: int, runs: int) -> dict[str, Any]:
    """Median run (by turns/s) of `runs` fresh runs, with every run's rate."""
    results = []
    for i in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            results.append(await measure(prefill, turns, Path(tmp) / str(i)))
    results.sort(key=lambda r: r["turns_per_second"])
    mid = dict(results[len(results) // 2])
    mid["runs_turns_per_second"] = [r["turns_per_second"] for r in results]
    return mid


async def main_async(turns: int = 1000, runs: int = 5) -> dict[str, Any]:
    small = await median_of(10, turns, runs)
    large = await median_of(5000, turns, runs)
    return {"history_budget_tokens": BUDGET_TOKENS, "short_thread": small, "long_thread": large}


def main() -> dict[str, Any]:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core, threads included
    results = asyncio.run(main_async())
    rows = "\n".join(
        f"| {r['thread_turns_before']:,} | {r['turns_per_second']:,} | {r['ms_per_turn']} | "
        f"{r['cpu_ms_per_turn']} | {r['history_turns_sent']} | "
        f"{', '.join(f'{x:,.0f}' for x in r['runs_turns_per_second'])} |"
        for r in (results["short_thread"], results["long_thread"])
    )
    md = (
        "Engine with an instant fake model, SQLite store (WAL), one core, one thread's turns "
        f"in sequence; history budget {BUDGET_TOKENS:,} tokens; median of 5 runs of 1,000 "
        "turns. Target: 1,000 turns/s.\n\n"
        "| turns in thread | turns/s | ms/turn | CPU ms/turn | turns sent to model | "
        "all runs (turns/s) |\n"
        "|---:|---:|---:|---:|---:|---|\n" + rows
    )
    path = write("engine_turns", results, md)
    print(md)
    print(f"\nreport: {path}")
    return results


if __name__ == "__main__":
    main()
