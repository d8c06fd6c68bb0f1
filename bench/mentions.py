"""What the two mention benches share: the fake model's replies, the table's columns, the
wait for late replies, and the command line."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from google.genai import types

from bench.report import pair, pick
from tests.fakes.gemini import Recorded, Reply

CHUNKS, CHUNK_CHARS, GAP = 30, 20, 0.05
QUIET, DRAIN_LIMIT = 15.0, 600.0  # see drain()

HEADER = [
    "scenario",
    "complete",
    "lost",
    "(a) median / p95",
    "(b) median / p95",
    "(c) mean / max",
    "(e) median / p95",
    "429s per reply",
    "calls per reply",
]

Results = dict[str, dict[str, dict[str, Any]]]


def text_for(i: int) -> str:
    """Reply i: its tag, then x up to 600 characters."""
    head = f"R{i:03d} "
    return head + "x" * (CHUNKS * CHUNK_CHARS - len(head))


def chunks_for(i: int) -> list[str]:
    """Reply i in 30 chunks of 20 characters."""
    text = text_for(i)
    return [text[j : j + CHUNK_CHARS] for j in range(0, len(text), CHUNK_CHARS)]


def respond(rec: Recorded) -> Reply:
    """Mention "q17" gets reply R017, whatever order the requests arrive in."""
    chunks: list[str | types.Part] = list(chunks_for(int(rec.texts()[-1].rsplit("q", 1)[1])))
    return Reply(chunks, delay=GAP)


def values(rows: list[dict[str, Any]], key: str) -> list[float]:
    """The rows' non-missing values of `key`."""
    return [r[key] for r in rows if r[key] is not None]


def table_row(scenario: str, r: dict[str, Any]) -> list[str]:
    """The HEADER columns of one run."""
    return [
        scenario,
        f"{r['complete']}/{r['mentions']}",
        str(r["lost"]),
        pair(r["first_message"], "median", "p95"),
        pair(r["first_text"], "median", "p95"),
        pair(r["lag"], "mean", "max"),
        pair(r["final"], "median", "p95"),
        f"{r['429_per_reply']:.2f}",
        f"{r['calls_per_reply']:.1f}",
    ]


async def drain(last_call_at: Callable[[], float], all_complete: Callable[[], bool]) -> float:
    """After the service counted every turn done: until each reply shows its whole text or
    the fake saw no call for QUIET s (the engine stops waiting for a reply's delivery after
    a while, its messages may still come). Returns when the turns were done."""
    turns_done = time.monotonic()
    while time.monotonic() < turns_done + DRAIN_LIMIT:
        if all_complete() or time.monotonic() - last_call_at() > QUIET:
            break
        await asyncio.sleep(0.2)
    return turns_done


def parser(prog: str, doc: str | None, quick: Sequence[str]) -> argparse.ArgumentParser:
    """--quick, --only and --scenario."""
    p = argparse.ArgumentParser(
        prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help=f"scenarios {', '.join(quick)} only")
    p.add_argument("--only", help="limit configurations, e.g. none,limits")
    p.add_argument("--scenario", help="scenarios, e.g. ch10N50,ch1N1")
    return p


async def run_matrix(
    label: str,
    args: argparse.Namespace,
    configs: Mapping[str, Any],
    scenarios: Mapping[str, Any],
    quick: tuple[str, ...],
    run: Callable[[str, str], Awaitable[dict[str, Any]]],
) -> Results:
    """Every chosen scenario in every chosen configuration, one after another."""
    chosen = pick(args.scenario, scenarios, quick if args.quick else tuple(scenarios))
    results: Results = {}
    for config in pick(args.only, configs, tuple(configs)):
        for scenario in chosen:
            print(f"{label} {config} {scenario} ...", file=sys.stderr, flush=True)
            results.setdefault(config, {})[scenario] = await run(config, scenario)
    return results
