"""Memory of the service over many Discord threads: RSS after 1,000 and after 10,000.

`gemini-bot run` runs in its own process on the fakes (fake Discord and fake Gemini live in
this process). One mention at a time in the guild's channel: the bot makes a thread from it,
the instant model answers in one chunk, and the next mention is sent as soon as the fake
Discord has the final answer. Every `--every` threads (and at the end) the service is let
settle (every turn stored, nothing in flight) and its VmRSS is read from /proc/PID/status.
Target: RSS grows less than 10 % between thread 1,000 and thread 10,000.

Discord archives a thread once it sat idle for its auto-archive duration (a day for the
bot's threads), and discord.py then drops it from its cache. The bench packs 10,000 threads
into minutes, so by default it archives each thread once answered, as that day would;
`--no-archive` keeps them all live, and then discord.py's cache of a day's threads (about
0.6 KB each) shows up as growth.

Latency of each thread: MESSAGE_CREATE sent -> the answer's final write seen by the fake.

    .venv/bin/python -m bench.discord_rss                 # 10,000 threads, a few minutes
    .venv/bin/python -m bench.discord_rss --threads 2000 --baseline 200 --every 200
    .venv/bin/python -m bench.discord_rss --trace 25      # where the growth is (slower)

`--trace N` runs the service under tracemalloc (bench/traced_service.py) and prints the N
biggest allocation-site differences between the baseline snapshot and the last one.
Not part of `python -m bench` (it takes minutes); run it on its own.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

from aiohttp import web

from bench.report import pct, summary_ms, write
from bench.service_process import ServiceProcess
from tests.fakes.discord import BOT_ID, CHANNEL, TOKEN, FakeDiscord
from tests.fakes.gemini import FakeGemini, Reply

USER = "100000000000000001"


def answer(i: int) -> str:
    """The instant model's whole answer to mention `i`."""
    return f"Answer {i}."


def vm_rss_kib(pid: int) -> int:
    """Resident set size of a process, from /proc/PID/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


class WatchedDiscord(FakeDiscord):
    """The fake Discord, telling the bench when the text it waits for is written."""

    def __init__(self) -> None:
        # A bot whose global limit Discord raised: the fake enforces none.
        super().__init__(global_limit=None)
        self.waiting: dict[str, asyncio.Future[tuple[float, str]]] = {}

    def expect(self, text: str) -> asyncio.Future[tuple[float, str]]:
        """A future resolved with (when, channel id) once a message shows exactly `text`."""
        fut: asyncio.Future[tuple[float, str]] = asyncio.get_running_loop().create_future()
        self.waiting[text] = fut
        return fut

    async def _route(
        self, method: str, path: str, body: Any, files: list[tuple[str, bytes]], call: Any
    ) -> web.Response:
        resp = await super()._route(method, path, body, files, call)
        content = body.get("content") if isinstance(body, dict) else None
        if resp.status == 200 and content is not None and path.startswith("/channels/"):
            fut = self.waiting.pop(content, None)
            if fut is not None and not fut.done():
                fut.set_result((time.monotonic(), path.split("/")[2]))
        # No record of the calls: for 10,000 threads it would only slow the bench down.
        self.calls.clear()
        return resp


class TracedService(ServiceProcess):
    """The service under bench/traced_service.py: tracemalloc, snapshots on SIGUSR1."""

    module = "bench.traced_service"
    start_limit = 60.0  # tracing slows the start


def _signal(pid: int, path: Path) -> None:
    path.unlink(missing_ok=True)
    os.kill(pid, signal.SIGUSR1)


def _answered(path: Path) -> bool:
    done = path.with_suffix(".done")
    if not done.exists():
        return False
    done.unlink()
    return True


async def trace_signal(service: ServiceProcess, path: Path) -> None:
    """SIGUSR1 to the traced service (start tracing, or dump a snapshot) and wait for it."""
    assert service.proc is not None
    _signal(service.proc.pid, path)
    for _ in range(1200):
        await asyncio.sleep(0.1)
        if _answered(path):
            return
    raise RuntimeError("the traced service did not answer SIGUSR1")


def top_growth(path: Path, n: int) -> list[str]:
    """The biggest allocation sites (then call paths) alive in the snapshot at `path`."""
    snap = tracemalloc.Snapshot.load(str(path)).filter_traces(
        [tracemalloc.Filter(False, tracemalloc.__file__)]
    )
    stats = snap.statistics("lineno")
    total = sum(s.size for s in stats)
    lines = [f"total alive since tracing started: {total / 1024:.0f} KiB"]
    lines += [str(s) for s in stats[:n]]
    for stat in snap.statistics("traceback")[:5]:
        lines.append(f"{stat.size / 1024:.1f} KiB in {stat.count} blocks from:")
        lines.extend(f"  {line}" for line in stat.traceback.format(most_recent_first=True))
    return lines


async def one_thread(fake: WatchedDiscord, i: int) -> tuple[float, str]:
    """Mention the bot once: (seconds until its answer is in the thread made for it, the
    thread's id)."""
    done = fake.expect(answer(i))
    t0 = time.monotonic()
    msg = await fake.say(CHANNEL, USER, f"<@{BOT_ID}> q{i}")
    at, channel = await asyncio.wait_for(done, 30)
    if channel != msg["id"]:  # a thread made from a message has that message's id
        raise RuntimeError(f"answer {i} went to {channel}, not to the thread {msg['id']}")
    return at - t0, str(channel)


async def archive(fake: WatchedDiscord, thread_id: str) -> None:
    """What Discord does once a thread sat idle for its auto-archive duration (the bot's
    threads: a day): THREAD_UPDATE with archived set, on which discord.py drops it from its
    cache. The bench compresses that day, so it archives a thread as soon as it is answered;
    without it (--no-archive) a day's worth of threads stays in discord.py's cache, as it
    does in production."""
    thread = fake.channels[thread_id]
    thread["thread_metadata"] = {**thread["thread_metadata"], "archived": True}
    await fake.dispatch("THREAD_UPDATE", thread)


async def run(
    threads: int, *, baseline: int, every: int, trace: int, archived: bool = True
) -> dict[str, Any]:
    gemini, fake = FakeGemini(), WatchedDiscord()
    fake.add_user(USER, "ada")
    await gemini.start()
    await fake.start()
    gemini.responder = lambda rec: Reply([answer(int(rec.texts()[-1].rsplit("q", 1)[1]))])
    samples: list[dict[str, Any]] = []
    latencies: list[float] = []
    diff: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            "DISCORD_TOKEN": TOKEN,
            "DISCORD_API_URL": fake.api_url,
            "DISCORD_GATEWAY_URL": fake.gateway_url,
            "DISCORD_GLOBAL_RATE": "10000",
            "BENCH_TRACEMALLOC_FILE": str(Path(tmp) / "snap.tracemalloc"),
        }
        kind = TracedService if trace else ServiceProcess
        async with kind(gemini, Path(tmp), env) as service:
            assert service.proc is not None
            await asyncio.wait_for(fake.identified.wait(), 30)
            try:
                await one_thread(fake, 10**9)  # warm-up, not measured
            except TimeoutError:
                raise RuntimeError(f"no answer: {service.log.read_text()[-3000:]}") from None
            await service.settle(1, limit=60)
            start = time.monotonic()
            snap = Path(env["BENCH_TRACEMALLOC_FILE"])
            for i in range(threads):
                latency, thread_id = await one_thread(fake, i)
                latencies.append(latency)
                if archived:
                    await archive(fake, thread_id)
                n = i + 1
                if n % every == 0 or n in (threads, baseline):
                    await service.settle(n + 1, limit=120)
                    rss = vm_rss_kib(service.proc.pid)
                    samples.append({"threads": n, "rss_kib": rss, "at_s": time.monotonic() - start})
                    print(f"  {n:>6} threads: RSS {rss / 1024:.1f} MiB", flush=True)
                    if trace and n == baseline:
                        await trace_signal(service, snap)  # tracing starts here
            if trace:
                await trace_signal(service, snap)
                diff = top_growth(snap, trace)
            errors = (Path(tmp) / "service.log").read_text().count("Traceback")
    await fake.close()
    await gemini.close()
    return result(samples, latencies, baseline=baseline, errors=errors, diff=diff)


def result(
    samples: list[dict[str, Any]],
    latencies: list[float],
    *,
    baseline: int,
    errors: int,
    diff: list[str],
) -> dict[str, Any]:
    """Growth between the baseline sample and the last one, and latency figures."""
    base = next(s for s in samples if s["threads"] == baseline)
    last = samples[-1]
    growth = (last["rss_kib"] - base["rss_kib"]) / base["rss_kib"] * 100
    per_thread = (last["rss_kib"] - base["rss_kib"]) * 1024 / max(1, last["threads"] - baseline)
    return {
        "threads": last["threads"],
        "baseline_threads": baseline,
        "rss_baseline_mib": round(base["rss_kib"] / 1024, 1),
        "rss_last_mib": round(last["rss_kib"] / 1024, 1),
        "growth_pct": round(growth, 2),
        "bytes_per_thread_after_baseline": round(per_thread),
        "samples": samples,
        "latency": {**summary_ms(latencies), "p95_ms": round(pct(latencies, 95) * 1000, 3)},
        "wall_s": round(last["at_s"], 1),
        "service_tracebacks": errors,
        "tracemalloc_top": diff,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse the options, run the scenario, write the report."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=10_000)
    ap.add_argument("--baseline", type=int, default=1_000)
    ap.add_argument("--every", type=int, default=1_000)
    ap.add_argument("--trace", type=int, default=0, metavar="N")
    ap.add_argument(
        "--no-archive",
        action="store_true",
        help="never archive the threads (a day of them stays in discord.py's cache)",
    )
    args = ap.parse_args(argv)
    r = asyncio.run(
        run(
            args.threads,
            baseline=args.baseline,
            every=args.every,
            trace=args.trace,
            archived=not args.no_archive,
        )
    )
    lat = r["latency"]
    curve = " -> ".join(f"{s['threads']}: {s['rss_kib'] / 1024:.1f}" for s in r["samples"])
    md = (
        f"Discord threads one after another, instant model; service RSS (VmRSS); threads "
        f"{'archived once answered' if not args.no_archive else 'never archived'}.\n\n"
        f"| threads | RSS at {r['baseline_threads']} (MiB) | RSS at {r['threads']} (MiB) | "
        "growth | bytes / thread after | MESSAGE_CREATE -> answer ms (median / p95 / p99 / "
        "max) | wall (s) | target |\n|---:|---:|---:|---:|---:|---|---:|---|\n"
        f"| {r['threads']} | {r['rss_baseline_mib']} | {r['rss_last_mib']} | "
        f"{r['growth_pct']} % | {r['bytes_per_thread_after_baseline']} | "
        f"{lat['median_ms']} / {lat['p95_ms']} / {lat['p99_ms']} / {lat['max_ms']} | "
        f"{r['wall_s']} | {'met' if r['growth_pct'] < 10 else 'MISSED'} (< 10 %) |\n\n"
        f"RSS curve (threads: MiB): {curve}\n\nTracebacks in the service log: "
        f"{r['service_tracebacks']}\n"
    )
    if r["tracemalloc_top"]:
        md += "\nTop allocation growth (tracemalloc):\n\n" + "\n".join(
            f"    {line}" for line in r["tracemalloc_top"]
        )
    path = write("discord_rss", r, md)
    print(md)
    print(f"\nreport: {path}")
    return r


if __name__ == "__main__":
    main()
