"""Replicas on PostgreSQL (issue 11): engine turns per second and mention -> first text with
1 and 3 `gemini-bot run` processes on one database, the shared-budget claim's round trip,
and where the CPU goes.

    .venv/bin/python -m bench.replicas [--quick] [--fresh] [--pool-reset off]

Everything runs on this machine and is started and stopped by the bench: a throwaway
PostgreSQL cluster (tests/postgres.py; a fresh database per configuration), the fake
Gemini in a process of its own, the fake Slack and the load driver in this process, and
the replicas, each `python -m bot run` with DATABASE_URL=postgresql://..., Slack HTTP mode
(SLACK_STREAM_MODE=edit).

- **Instant model**: the fake Gemini answers at once, in two chunks with no delay: mention
  "q17" gets "R17 " and ~200 characters.
- **The platform is not the bottleneck**: the fake Slack's rate limits are all switched
  off (its `limits` emptied: it never answers 429). The service still paces itself on
  Slack's documented budgets (adaptive, and shared through PostgreSQL), so the load is
  spread over many channels in many workspaces (budgets are per channel and per workspace)
  to keep those budgets from binding.
- **Load**: 64 closed-loop users (Plan.users); each opens a thread with a top-level `app_mention`,
  asks TURNS_PER_THREAD turns in it (a mention in the thread, after the previous reply
  showed its final text), then opens a new thread in its next channel. Events go to the
  replicas' /slack/events round-robin (only the `app_mention`, not its `message` twin).
- **Throughput**: replies whose final text became visible in the fake Slack (the bot's
  chat.postMessage / chat.update showing the whole reply) per second, over a steady
  window after a warm-up. Each replica's `gemini_bot_turns_total` is read too.
- **First text**: from posting the event to the first bot write in the thread showing
  reply text (the placeholder "_Thinking…_" does not count). Given for the saturated
  window (closed loop: latency includes queueing) and for a fixed-rate phase (open loop:
  the same rate for 1 and 3 replicas, half of what 1 replica reached in this run).
- **CPU**: per process over the steady window, from /proc/<pid>/stat (utime + stime):
  each replica, every PostgreSQL process, the fake Gemini, this driver (fake Slack + load),
  and the rest of the box (/proc/stat: other users' work). In cores: 1.0 = one full core.
- **Claims**: rate_take() calls counted by PostgreSQL (track_functions = 'pl'; also its
  server-side time), per reply; and one claim as the service makes it (PgLimits.take:
  pool acquire + one `SELECT rate_take(...)` round trip) timed from 1 and from 3
  concurrent client processes, on one budget row (all contend for its lock) and on a row
  each.
- **Statements per turn**: every statement one replica sends for a turn (a new thread's
  and a follow-up's), from PostgreSQL's log (log_statement = 'all'), by kind.
- **Profile**: 1 and 3 replicas at saturation, each replica under cProfile for the steady
  window only (this module's `--service` wraps `python -m bot run`; SIGUSR1 switches the
  profiler on and off), timing the event loop thread's CPU time; the replicas' profiles
  are added up. Top functions by cumulative and own time, and own time by package.
- **Experiment** (`--pool-reset off`, not the product): the same run with the replicas'
  asyncpg pools skipping their reset query on every connection release.

Each run is added to bench/reports/replicas.{json,md} (the last RUNS_KEPT runs; --fresh
starts over), since timings on a shared machine need more than one run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import platform
import pstats
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from bench.report import REPORTS, md_table, pct, squash, write
from bench.service_process import metric_total
from tests.fakes.gemini import API_KEY, FakeGemini, Recorded, Reply
from tests.fakes.slack import BOT_TOKEN, BOT_USER, SIGNING_SECRET, FakeSlack, SlackDriver

ROOT = Path(__file__).resolve().parents[1]
NAME = "replicas"
RUNS_KEPT = 4
TURNS_PER_THREAD = 3
TURN_TIMEOUT_S = 30.0
PAUSE_S = 6.0  # between the saturated and the fixed-rate phase
FILLER = "lorem ipsum dolor sit amet " * 8  # ~200 characters after the tag
TAG_RE = re.compile(r"\bR(\d+)\b")
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Plan:
    """How long each phase lasts and how much load there is."""

    users: int = 64
    channels_per_user: int = 6
    channels_per_team: int = 1
    warm_s: float = 20.0
    window_s: float = 30.0
    rate_s: float = 20.0  # the fixed-rate (open loop) phase
    profile_warm_s: float = 8.0
    profile_s: float = 20.0
    claims: int = 2000  # per client

    @property
    def channels(self) -> int:
        return self.users * self.channels_per_user


FULL = Plan()
QUICK = Plan(warm_s=8.0, window_s=12.0, rate_s=8.0, profile_warm_s=4.0, profile_s=10.0, claims=500)


# -- the fake model, in its own process ------------------------------------------------


def reply_text(tag: int) -> str:
    return f"R{tag} {FILLER}".strip()


def instant(rec: Recorded) -> Reply:
    """Mention "q17" gets "R17 lorem ipsum ..." in two chunks, no delay."""
    texts = rec.texts()
    found = re.findall(r"q(\d+)", texts[-1] if texts else "")
    text = reply_text(int(found[-1]) if found else 0)
    half = len(text) // 2
    return Reply([text[:half], text[half:]])


class QuietGemini(FakeGemini):
    """The fake Gemini keeping no record of requests (a long run would pile them up)."""

    async def _record(self, request: web.Request) -> Recorded:
        rec = await super()._record(request)
        self.requests.clear()
        self.first_chunk_at.clear()
        self.chunk_sent_at.clear()
        return rec


async def serve_gemini() -> None:
    """`--serve-gemini`: print the base URL, serve until SIGTERM."""
    fake = QuietGemini()
    fake.responder = instant
    url = await fake.start()
    print(url, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await fake.close()


# -- processes ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Child:
    """A child process of the bench, always ended by stop()."""

    proc: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def stop(self, grace: float = 30.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.returncode is not None:
            return
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), grace)
        except TimeoutError:
            proc.kill()
            await proc.wait()


class GeminiProcess(Child):
    """The fake Gemini (`--serve-gemini`) in its own process."""

    base_url = ""

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.replicas",
            "--serve-gemini",
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
        )
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), 30)
        self.base_url = line.decode().strip()
        if not self.base_url.startswith("http"):
            raise RuntimeError("the fake Gemini did not start")


class Replica(Child):
    """`python -m bot run` on the shared database (cProfile ready when `profile` is set)."""

    def __init__(self, index: int, env: dict[str, str], data: Path, profile: Path | None) -> None:
        self.index = index
        self.port = free_port()
        self.data = data / f"replica-{index}"
        self.data.mkdir(parents=True, exist_ok=True)
        self.log = self.data / "service.log"
        self.profile = profile
        self.env = {
            **os.environ,
            **env,
            "DATA_DIR": str(self.data),
            "HTTP_HOST": "127.0.0.1",
            "HTTP_PORT": str(self.port),
        }
        self.session: aiohttp.ClientSession | None = None

    @property
    def events_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/slack/events"

    async def start(self) -> None:
        # Profiled or patched (see wrapped_service): this module's --service runs
        # `python -m bot run` in its own process.
        if self.profile is not None:
            self.env["BENCH_PROFILE"] = str(self.profile)
        wrapped = self.profile is not None or "BENCH_POOL_RESET" in self.env
        cmd = ["-m", "bench.replicas", "--service"] if wrapped else ["-m", "bot", "run"]
        with self.log.open("wb") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, *cmd, env=self.env, cwd=ROOT, stdout=log, stderr=log
            )
        self.session = aiohttp.ClientSession()
        end = time.monotonic() + 60
        while time.monotonic() < end and self.proc.returncode is None:
            with contextlib.suppress(aiohttp.ClientError):
                async with self.session.get(f"http://127.0.0.1:{self.port}/healthz") as r:
                    if r.status == 200:
                        return
            await asyncio.sleep(0.05)
        tail = self.log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"replica {self.index} did not start:\n{tail}")

    async def metric(self, name: str) -> float:
        assert self.session is not None
        async with self.session.get(f"http://127.0.0.1:{self.port}/metrics") as r:
            text = await r.text()
        return metric_total(text, name)

    async def stop(self, grace: float = 30.0) -> None:
        await super().stop(grace)
        if self.session is not None:
            await self.session.close()
            self.session = None


# -- CPU from /proc -----------------------------------------------------------------------


def _stat(pid: int) -> tuple[int, float, float] | None:
    """(ppid, own CPU s, reaped children's CPU s) of a process, None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    f = raw[raw.rindex(")") + 2 :].split()
    own = (int(f[11]) + int(f[12])) / CLK_TCK
    children = (int(f[13]) + int(f[14])) / CLK_TCK
    return int(f[1]), own, children


def _sys_s(pid: int) -> float:
    """Kernel CPU s of a process (stime)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    return int(raw[raw.rindex(")") + 2 :].split()[12]) / CLK_TCK


def _pg_family(postmaster: int) -> dict[int, float]:
    """CPU s of the postmaster (with its reaped children) and of each of its children."""
    out: dict[int, float] = {}
    top = _stat(postmaster)
    if top is not None:
        out[postmaster] = top[1] + top[2]
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            st = _stat(int(entry.name))
            if st is not None and st[0] == postmaster:
                out[int(entry.name)] = st[1]
    return out


def _box() -> tuple[float, float]:
    """(busy, total) CPU s of the whole machine, all cores, from /proc/stat."""
    f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = f[3] + f[4]  # idle + iowait
    total = sum(f[:8])  # guest time is counted in user already
    return (total - idle) / CLK_TCK, total / CLK_TCK


@dataclass
class CpuSample:
    at: float
    procs: dict[str, float]
    kernel: dict[str, float]
    pg: dict[int, float]
    box: tuple[float, float]


def cpu_sample(named: dict[str, int], postmaster: int) -> CpuSample:
    procs = {}
    for label, pid in named.items():
        st = _stat(pid)
        procs[label] = st[1] if st is not None else 0.0
    kernel = {label: _sys_s(pid) for label, pid in named.items()}
    return CpuSample(time.monotonic(), procs, kernel, _pg_family(postmaster), _box())


def kernel_share(a: CpuSample, b: CpuSample) -> dict[str, float]:
    """The share of each named process's CPU spent in the kernel (system time)."""
    out = {}
    for label in b.procs:
        total = b.procs[label] - a.procs.get(label, 0.0)
        if total > 0:
            out[label] = round((b.kernel[label] - a.kernel.get(label, 0.0)) / total, 2)
    return out


def cpu_used(a: CpuSample, b: CpuSample) -> dict[str, float]:
    """Cores used between two samples, per process; `postgres` sums every PostgreSQL
    process; `box` is the whole machine; `other` what none of ours used."""
    span = b.at - a.at
    out = {label: (b.procs[label] - a.procs.get(label, 0.0)) / span for label in b.procs}
    out["postgres"] = sum(v - a.pg.get(pid, 0.0) for pid, v in b.pg.items()) / span
    busy = (b.box[0] - a.box[0]) / span
    out["box"] = busy
    out["box_capacity"] = (b.box[1] - a.box[1]) / span
    out["other"] = max(
        0.0, busy - sum(v for k, v in out.items() if k not in ("box", "box_capacity"))
    )
    return out


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


# -- the fake Slack, watched for finished replies --------------------------------------


@dataclass
class Turn:
    tag: int
    channel: str
    thread: str | None  # the thread's root ts (None: a top-level mention)
    replica: int
    expected: str
    sent_at: float = 0.0
    ts: str = ""
    placeholder_at: float | None = None  # "_Thinking…_" posted in the thread
    first_text_at: float | None = None
    final_at: float | None = None
    status: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)


def shown(args: dict[str, Any]) -> str:
    """The text a chat.postMessage / chat.update shows (its markdown block, else text)."""
    for b in args.get("blocks") or []:
        if isinstance(b, dict) and b.get("type") == "markdown":
            return str(b.get("text", ""))
    return str(args.get("text") or "")


class WatchedSlack(FakeSlack):
    """The fake Slack with no rate limits, marking each turn's first text and final as the
    bot's writes arrive (the replies' tags say whose they are)."""

    def __init__(self) -> None:
        super().__init__()
        self.limits.clear()
        self.pending: dict[int, Turn] = {}
        self.threads: dict[tuple[str, str], Turn] = {}  # (channel, root ts) -> latest turn

    def _seen(self, args: dict[str, Any], resp: web.Response) -> None:
        if b'"ok": true' not in (resp.body or b""):  # type: ignore[operator]
            return
        now = time.monotonic()
        text = shown(args)
        m = TAG_RE.search(text)
        if m is None:  # a placeholder
            key = (str(args.get("channel")), str(args.get("thread_ts")))
            if (t := self.threads.get(key)) is not None and t.placeholder_at is None:
                t.placeholder_at = now
            return
        turn = self.pending.get(int(m.group(1)))
        if turn is None:
            return
        if turn.first_text_at is None:
            turn.first_text_at = now
        if squash(text) == squash(turn.expected):
            turn.final_at = now
            del self.pending[turn.tag]
            turn.done.set()

    async def _chat_postMessage(self, args: dict[str, Any]) -> web.Response:
        resp = await super()._chat_postMessage(args)
        self._seen(args, resp)
        return resp

    async def _chat_update(self, args: dict[str, Any]) -> web.Response:
        resp = await super()._chat_update(args)
        self._seen(args, resp)
        return resp


# -- the load ---------------------------------------------------------------------------


class Load:
    """Sends mentions to the replicas round-robin and keeps every turn."""

    def __init__(self, slack: WatchedSlack, replicas: list[Replica], plan: Plan) -> None:
        self.slack = slack
        self.plan = plan
        self.drivers = [SlackDriver(slack, r.events_url) for r in replicas]
        self.turns: list[Turn] = []
        self.tags = itertools.count(1)
        self.next_replica = itertools.count()
        self.event_ids = itertools.count(1)
        self.stop = asyncio.Event()
        self.lost = 0
        self.channels = [f"C{i:04d}" for i in range(plan.channels)]
        for i, ch in enumerate(self.channels):
            slack.channel_team[ch] = f"T{i // plan.channels_per_team:03d}"

    async def close(self) -> None:
        for d in self.drivers:
            await d.close()

    async def send(self, channel: str, thread: str | None) -> Turn:
        tag = next(self.tags)
        r = next(self.next_replica) % len(self.drivers)
        driver = self.drivers[r]
        turn = Turn(tag, channel, thread, r, reply_text(tag))
        self.slack.pending[tag] = turn
        self.turns.append(turn)
        ev = driver.as_mention(
            driver.message(channel, "U1ADA", f"<@{BOT_USER}> q{tag} please", thread_ts=thread)
        )
        ev["team"] = self.slack.channel_team[channel]
        turn.ts = ev["ts"]
        self.slack.threads[(channel, thread or turn.ts)] = turn
        turn.sent_at = time.monotonic()
        try:
            turn.status, _ = await driver.event(ev, event_id=f"Ev{next(self.event_ids):08d}")
        except aiohttp.ClientError:
            turn.status = -1
        return turn

    async def user(self, u: int) -> None:
        """Threads of TURNS_PER_THREAD turns, one turn after another's final, in the
        user's own channels in turn."""
        own = self.channels[u :: self.plan.users]
        for n in itertools.count():
            channel, thread = own[n % len(own)], None
            for _ in range(TURNS_PER_THREAD):
                if self.stop.is_set():
                    return
                turn = await self.send(channel, thread)
                thread = thread or turn.ts
                try:
                    await asyncio.wait_for(turn.done.wait(), TURN_TIMEOUT_S)
                except TimeoutError:
                    self.lost += 1
                    break

    async def closed_loop(self, *phases: float) -> list[float]:
        """USERS users until every phase (seconds) has passed; returns when each began
        and the end. The turns in flight then finish (or time out)."""
        users = [asyncio.create_task(self.user(u)) for u in range(self.plan.users)]
        marks = [time.monotonic()]
        try:
            for seconds in phases:
                await asyncio.sleep(seconds)
                marks.append(time.monotonic())
        finally:
            self.stop.set()
            await asyncio.gather(*users, return_exceptions=True)
            self.stop.clear()
        return marks

    async def fixed_rate(self, rate: float, seconds: float) -> list[Turn]:
        """New top-level mentions at `rate` per second, over all channels, not waiting."""
        start, sent = time.monotonic(), []
        tasks = []
        for k in itertools.count():
            at = start + k / rate
            if at > start + seconds:
                break
            await asyncio.sleep(max(0.0, at - time.monotonic()))
            channel = self.channels[k % len(self.channels)]
            tasks.append(asyncio.create_task(self.send(channel, None)))
        sent = list(await asyncio.gather(*tasks))
        end = time.monotonic() + TURN_TIMEOUT_S
        for t in sent:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(t.done.wait(), max(0.01, end - time.monotonic()))
        return sent


# -- measuring ----------------------------------------------------------------------------


def ms(values: list[float]) -> dict[str, float | int]:
    if not values:
        return {"n": 0, "p50_ms": float("nan"), "p99_ms": float("nan"), "max_ms": float("nan")}
    return {
        "n": len(values),
        "p50_ms": round(statistics.median(values) * 1000, 2),
        "p99_ms": round(pct(values, 99) * 1000, 2),
        "max_ms": round(max(values) * 1000, 2),
    }


def first_texts(turns: list[Turn]) -> list[float]:
    return [t.first_text_at - t.sent_at for t in turns if t.first_text_at is not None]


def finals(turns: list[Turn]) -> list[float]:
    return [t.final_at - t.sent_at for t in turns if t.final_at is not None]


def slow_first_texts(turns: list[Turn], over: float = 1.0) -> dict[str, Any]:
    """Where slow first texts waited: before the placeholder went out (the channel's post
    budget, the engine), or between it and the first text (the model, the workspace's
    chat.update budget)."""
    slow = [t for t in turns if t.first_text_at is not None and t.first_text_at - t.sent_at > over]
    held = [t for t in slow if t.placeholder_at is not None]
    return {
        "over_s": over,
        "n": len(slow),
        "with_placeholder": len(held),
        "placeholder_share_all": round(
            sum(t.placeholder_at is not None for t in turns) / max(1, len(turns)), 2
        ),
        "sent_to_placeholder": ms([t.placeholder_at - t.sent_at for t in held]),  # type: ignore[operator]
        "placeholder_to_text": ms([t.first_text_at - t.placeholder_at for t in held]),  # type: ignore[operator]
    }


async def turns_counted(replicas: list[Replica]) -> float:
    return sum([await r.metric("gemini_bot_turns_total") for r in replicas])


async def close_run(load: Load | None, replicas: list[Replica], slack: FakeSlack) -> None:
    """Stop a phase's load, then its replicas, then its fake Slack."""
    if load is not None:
        await load.close()
    for r in replicas:
        await r.stop()
    await slack.close()


async def pg_fetch(url: str, sql: str) -> list[dict[str, Any]]:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        return [dict(r) for r in await conn.fetch(sql)]
    finally:
        await conn.close()


@dataclass
class Box:
    """What every configuration shares: PostgreSQL, the temp directory, the fake model."""

    pg: Any
    tmp: Path
    gemini: GeminiProcess
    pool_reset: bool = True  # False: the experiment of wrapped_service (BENCH_POOL_RESET)


def replica_env(box: Box, slack: FakeSlack, db_url: str) -> dict[str, str]:
    gemini = box.gemini
    return ({} if box.pool_reset else {"BENCH_POOL_RESET": "off"}) | {
        "DATABASE_URL": db_url,
        "GEMINI_API_KEY": API_KEY,
        "GEMINI_BASE_URL": gemini.base_url,
        "GEMINI_MODEL": "gemini-test",
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": slack.api_url,
        "SLACK_STREAM_MODE": "edit",
        "LOG_LEVEL": "WARNING",
        "SHUTDOWN_GRACE_SECONDS": "5",
    }


async def start_replicas(n: int, env: dict[str, str], tmp: Path) -> list[Replica]:
    replicas = [Replica(i, env, tmp, None) for i in range(n)]
    for r in replicas:  # one after another: the first applies the migrations
        await r.start()
    return replicas


async def run_config(box: Box, n: int, plan: Plan, rate: float | None) -> dict[str, Any]:
    """n replicas: warm-up, steady window (closed loop), fixed-rate phase; claims counted."""
    from tests.postgres import create_database

    db_url = create_database(box.pg.url)
    slack = WatchedSlack()
    await slack.start()
    replicas: list[Replica] = []
    load: Load | None = None
    try:
        replicas = await start_replicas(n, replica_env(box, slack, db_url), box.tmp)
        load = Load(slack, replicas, plan)
        named = {f"replica {r.index + 1}": r.pid for r in replicas}
        named |= {"fake Gemini": box.gemini.pid, "driver (fake Slack + load)": os.getpid()}
        postmaster = box.pg._proc.pid
        samples: dict[str, CpuSample] = {}
        counted: dict[str, float] = {}

        async def at_marks() -> None:
            await asyncio.sleep(plan.warm_s)
            samples["a"], counted["a"] = (
                cpu_sample(named, postmaster),
                await turns_counted(replicas),
            )
            await asyncio.sleep(plan.window_s)
            samples["b"], counted["b"] = (
                cpu_sample(named, postmaster),
                await turns_counted(replicas),
            )

        sampler = asyncio.create_task(at_marks())
        marks = await load.closed_loop(plan.warm_s, plan.window_s)
        await sampler
        w0, w1 = marks[1], marks[2]
        span = w1 - w0
        window_done = [t for t in load.turns if t.final_at is not None and w0 <= t.final_at < w1]
        window_sent = [t for t in load.turns if w0 <= t.sent_at < w1]
        cpu = cpu_used(samples["a"], samples["b"])
        turns_s = len(window_done) / span
        closed = {
            "users": plan.users,
            "window_s": round(span, 2),
            "replies": len(window_done),
            "turns_s": round(turns_s, 1),
            "service_turns_s": round((counted["b"] - counted["a"]) / span, 1),
            "per_replica": dict(Counter(f"replica {t.replica + 1}" for t in window_done)),
            "first_text": ms(first_texts(window_sent)),
            "final": ms(finals(window_sent)),
            "slow": slow_first_texts(window_sent),
            "cpu_cores": {k: round(v, 3) for k, v in cpu.items()},
            "kernel_share": kernel_share(samples["a"], samples["b"]),
            "cpu_ms_per_reply": {
                k: round(v / turns_s * 1000, 2)
                for k, v in cpu.items()
                if k not in ("box", "box_capacity", "other") and turns_s > 0
            },
            "load_after": loadavg(),
        }
        await asyncio.sleep(PAUSE_S)  # budgets spent at saturation refill
        fixed_rate = rate if rate is not None else max(5.0, round(turns_s / 2))
        sent = await load.fixed_rate(fixed_rate, plan.rate_s)
        open_loop = {
            "rate": fixed_rate,
            "sent": len(sent),
            "answered": sum(t.final_at is not None for t in sent),
            "first_text": ms(first_texts(sent)),
            "final": ms(finals(sent)),
            "slow": slow_first_texts(sent),
        }
        all_turns = len(load.turns)
        completed = sum(t.final_at is not None for t in load.turns)
        bad_status = sum(t.status != 200 for t in load.turns)
    finally:
        await close_run(load, replicas, slack)
    await asyncio.sleep(0.5)  # backends that exited have flushed their statistics
    claims = await pg_fetch(
        db_url,
        "SELECT calls, total_time, self_time FROM pg_stat_user_functions "
        "WHERE funcname = 'rate_take'",
    )
    budgets = await pg_fetch(db_url, "SELECT count(*) AS n FROM rate_limits")
    xacts = await pg_fetch(
        db_url,
        "SELECT xact_commit + xact_rollback AS n FROM pg_stat_database "
        "WHERE datname = current_database()",
    )
    by_method = Counter(c.method for c in slack.calls)
    calls = claims[0]["calls"] if claims else 0
    writes = by_method["chat.postMessage"] + by_method["chat.update"]
    return {
        "replicas": n,
        "closed_loop": closed,
        "fixed_rate": open_loop,
        "mentions": all_turns,
        "completed": completed,
        "lost": load.lost if load else 0,
        "events_not_200": bad_status,
        "slack_calls_per_reply": {
            m: round(k / max(1, completed), 2) for m, k in sorted(by_method.items())
        },
        "slack_429s": sum(c.status == 429 for c in slack.calls),
        # Every statement outside BEGIN ... COMMIT is a transaction of its own.
        "db_transactions_per_reply": round(xacts[0]["n"] / max(1, completed), 1),
        "claims": {
            "calls": calls,
            "per_reply": round(calls / max(1, completed), 2),
            # Each paced write claims once; a claim the shared budget refuses is made again.
            "beyond_one_per_write": calls - writes,
            "server_ms_mean": round(claims[0]["total_time"] / calls, 4) if calls else None,
            "budget_rows": budgets[0]["n"],
        },
    }


# -- the claim's round trip ---------------------------------------------------------------


async def claim_client(url: str, count: int, key: str, start_at: float) -> None:
    """`--claim-client`: `count` claims as the service makes them, after `start_at`
    (CLOCK_MONOTONIC, shared by every process); prints the latencies (s) as JSON."""
    from bot.ports import Budget
    from storage.pg_limits import PgLimits
    from storage.postgres import PostgresStore

    store = PostgresStore(url, max_blob_bytes=1 << 20, replica=f"bench-{os.getpid()}")
    await store.open()
    limits = PgLimits(store)
    # A budget that never runs out: every claim takes the whole path (check and update).
    budget = [Budget(key, rate=1e9, burst=1_000_000)]
    out: dict[str, list[float]] = {"claim": [], "select1": []}
    try:
        for _ in range(20):
            await limits.take(budget)
        await asyncio.sleep(max(0.0, start_at - time.monotonic()))
        for _ in range(count):
            t = time.perf_counter()
            await limits.take(budget)
            out["claim"].append(time.perf_counter() - t)
            t = time.perf_counter()
            await store.pool.fetchval("SELECT 1")
            out["select1"].append(time.perf_counter() - t)
    finally:
        await store.close()
    print(json.dumps(out))


async def claim_latency(db_url: str, plan: Plan) -> dict[str, Any]:
    """PgLimits.take from 1 and 3 concurrent client processes; one row for all, or one each."""
    out: dict[str, Any] = {}
    for clients, shared in ((1, True), (3, True), (3, False)):
        start_at = time.monotonic() + 3.0
        procs = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bench.replicas",
                "--claim-client",
                db_url,
                str(plan.claims),
                "bench:shared" if shared else f"bench:own:{i}",
                f"{start_at:.6f}",
                cwd=ROOT,
                stdout=asyncio.subprocess.PIPE,
            )
            for i in range(clients)
        ]
        results = [json.loads((await p.communicate())[0]) for p in procs]
        claims = [x for r in results for x in r["claim"]]
        select1 = [x for r in results for x in r["select1"]]
        label = f"{clients} client{'s' if clients > 1 else ''}" + (
            "" if clients == 1 else (", one row" if shared else ", a row each")
        )
        out[label] = {"claim": ms(claims), "select1": ms(select1)}
    rows = await pg_fetch(
        db_url,
        "SELECT calls, total_time FROM pg_stat_user_functions WHERE funcname = 'rate_take'",
    )
    if rows and rows[0]["calls"]:
        out["server_ms_mean"] = round(rows[0]["total_time"] / rows[0]["calls"], 4)
    return out


# -- statements per turn -------------------------------------------------------------


def _statements(lines: list[str]) -> list[str]:
    """The SQL of PostgreSQL's log_statement lines (continuation lines joined)."""
    out: list[str] = []
    for line in lines:
        if line.startswith(("\t", " ")) and out:
            out[-1] += " " + line.strip()
            continue
        for marker in ("statement: ", "execute "):
            if marker in line and "LOG:" in line:
                sql = line.split(marker, 1)[1]
                if marker == "execute ":
                    sql = sql.split(": ", 1)[1] if ": " in sql else sql
                out.append(sql.strip())
                break
    return [" ".join(x.split()) for x in out]


def _kind(sql: str) -> str:
    if sql.startswith("SELECT pg_advisory_unlock_all()"):
        return "pool reset (asyncpg, on every release)"
    if sql.startswith(("BEGIN", "COMMIT", "ROLLBACK")):
        return "BEGIN / COMMIT"
    if "rate_take(" in sql:
        return "shared-budget claim (rate_take)"
    if "advisory" in sql:
        return "thread gate (advisory lock / unlock + notify)"
    if sql.startswith("SELECT DISTINCT owner"):
        return "failover poll (every second, not the turn's)"
    return "the turn's reads and writes"


async def statements_per_turn(box: Box) -> dict[str, Any]:
    """Every statement one replica sends for a new thread's turn and for a follow-up in it
    (log_statement = 'all' on a database of its own, after a warm-up turn)."""
    from tests.postgres import create_database

    db_url = create_database(box.pg.url)
    db = db_url.rsplit("/", 1)[1]
    await pg_fetch(box.pg.url, f"ALTER DATABASE \"{db}\" SET log_statement = 'all'")
    log = box.pg._dir / "server.log"
    slack = WatchedSlack()
    await slack.start()
    replicas: list[Replica] = []
    load: Load | None = None
    out: dict[str, Any] = {}
    try:
        replicas = await start_replicas(1, replica_env(box, slack, db_url), box.tmp)
        load = Load(slack, replicas, QUICK)
        warm = await load.send(load.channels[1], None)
        await asyncio.wait_for(warm.done.wait(), TURN_TIMEOUT_S)
        await asyncio.sleep(1.0)
        root = None
        for label in ("new thread", "follow-up"):
            start = len(log.read_text(errors="replace").splitlines())
            turn = await load.send(load.channels[0], root)
            root = root or turn.ts
            await asyncio.wait_for(turn.done.wait(), TURN_TIMEOUT_S)
            await asyncio.sleep(1.0)  # the reply is stored after its final shows
            sql = _statements(log.read_text(errors="replace").splitlines()[start:])
            kinds = Counter(_kind(x) for x in sql)
            polls = kinds.pop("failover poll (every second, not the turn's)", 0)
            kinds["pool reset (asyncpg, on every release)"] -= polls  # the polls' resets
            out[label] = {
                "statements": sum(kinds.values()),
                "by_kind": dict(kinds.most_common()),
                "sql": [x[:110] for x in sql if not x.startswith("SELECT DISTINCT owner")],
            }
    finally:
        await close_run(load, replicas, slack)
    return out


# -- the profile ----------------------------------------------------------------------------


PACKAGES = (
    ("bot/", "bot (engine, scheduler, gemini client)"),
    ("adapters/", "adapters (Slack)"),
    ("storage/", "storage (PostgresStore, gate, limits)"),
    ("asyncpg", "asyncpg"),
    ("aiohttp", "aiohttp"),
    ("google/genai", "google-genai SDK"),
    ("httpx", "httpx / httpcore"),
    ("httpcore", "httpx / httpcore"),
    ("pydantic", "pydantic"),
    ("slack_bolt", "slack_bolt"),
    ("slack_sdk", "slack_sdk"),
    ("asyncio", "asyncio (event loop)"),
    ("json", "json"),
    ("logging", "logging"),
)


# Plain (not coroutine) functions whose call counts say how the work is batched: event
# loop iterations, socket writes and polls per reply. (cProfile counts each resumption of
# a coroutine as a call, so coroutines' counts are not calls.)
FOCUS = {
    "event loop iterations": "base_events.py:1845(_run_once)",
    "socket writes (send)": "<method 'send' of '_socket.socket' objects>",
    "epoll waits": "<method 'poll' of 'select.epoll' objects>",
    "Gemini stream (google-genai, cum)": "bot/gemini.py:212(stream)",
}


def package(filename: str) -> str:
    if filename.startswith("~") or filename.startswith("<"):
        return "builtins (C functions)"
    for needle, label in PACKAGES:
        if f"/{needle}" in filename or filename.startswith(needle):
            return label
    return "other Python" if "site-packages" in filename else "other stdlib"


def where(func: tuple[str, int, str]) -> str:
    filename, line, name = func
    if filename == "~":
        return name
    short = filename
    for cut in ("site-packages/", str(ROOT) + "/", "/lib/python3.11/"):
        if cut in short:
            short = short.split(cut, 1)[1]
    return f"{short}:{line}({name})"


def summarise_profile(paths: list[Path], replies: int, top: int = 25) -> dict[str, Any]:
    st = pstats.Stats(*(str(p) for p in paths))
    entries = st.stats  # type: ignore[attr-defined]
    total_tt = sum(v[2] for v in entries.values())
    by_pkg: Counter[str] = Counter()
    for func, (_cc, _nc, tt, _ct, _callers) in entries.items():
        by_pkg[package(func[0])] += tt
    rows = sorted(entries.items(), key=lambda kv: kv[1][3], reverse=True)
    per = max(1, replies)

    def row(func: Any, v: Any) -> dict[str, Any]:
        return {
            "function": where(func),
            "calls_per_reply": round(v[1] / per, 2),
            "own_ms_per_reply": round(v[2] / per * 1000, 3),
            "cum_ms_per_reply": round(v[3] / per * 1000, 3),
        }

    focus = {}
    for func, v in entries.items():
        name = where(func)
        for label, needle in FOCUS.items():
            if needle in name:
                focus[label] = row(func, v)
    return {
        "replies": replies,
        "profiled_cpu_s": round(total_tt, 2),
        "focus": focus,
        "by_package_ms_per_reply": {k: round(v / per * 1000, 3) for k, v in by_pkg.most_common()},
        "top_cumulative": [row(f, v) for f, v in rows[:top]],
        "top_own": [
            row(f, v)
            for f, v in sorted(entries.items(), key=lambda kv: kv[1][2], reverse=True)[:20]
        ],
    }


def _exists(path: Path) -> bool:
    return path.exists()


def wrapped_service() -> None:
    """`--service`: `python -m bot run` in this process, for the bench only (never deployed).

    BENCH_PROFILE=PATH: the first SIGUSR1 starts cProfile (timing the main thread's CPU
    time), the second stops it and writes PATH (then PATH.done), so only the steady window
    is profiled.
    BENCH_POOL_RESET=off: an experiment, not the product: asyncpg pools return connections
    without their reset query (`SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *;
    RESET ALL;`, one more round trip per pooled statement).
    """
    import cProfile
    import runpy

    import asyncpg

    path = os.environ.get("BENCH_PROFILE")
    if path:
        # The event loop thread's CPU time, not the wall clock: on a busy box a call that
        # was descheduled (a send() waking its peer, say) would count the wait.
        prof = cProfile.Profile(time.thread_time_ns, 1e-9)
        on = False

        def toggle(signum: int, frame: object) -> None:
            nonlocal on
            if not on:
                on = True
                prof.enable()
            else:
                prof.disable()
                prof.dump_stats(path)
                Path(path + ".done").touch()

        signal.signal(signal.SIGUSR1, toggle)
    if os.environ.get("BENCH_POOL_RESET") == "off":
        create_pool = asyncpg.create_pool

        async def no_reset(conn: Any) -> None:
            return None

        def without_reset(*args: Any, **kwargs: Any) -> Any:
            kwargs.setdefault("reset", no_reset)
            return create_pool(*args, **kwargs)

        asyncpg.create_pool = without_reset
    sys.argv = [sys.argv[0], "run"]
    runpy.run_module("bot", run_name="__main__", alter_sys=True)


async def run_profile(box: Box, plan: Plan, n: int) -> dict[str, Any]:
    """n replicas at saturation, every one with cProfile on for the steady window only
    (profiling one of them would slow it alone, and the others would wait on its threads);
    the profiles are added up."""
    from tests.postgres import create_database

    db_url = create_database(box.pg.url)
    slack = WatchedSlack()
    await slack.start()
    paths = [box.tmp / f"replica-{i + 1}-of-{n}.prof" for i in range(n)]
    replicas: list[Replica] = []
    load: Load | None = None
    window: dict[str, float] = {}
    try:
        env = replica_env(box, slack, db_url)
        replicas = [Replica(i, env, box.tmp, paths[i]) for i in range(n)]
        for r in replicas:
            await r.start()
        load = Load(slack, replicas, plan)

        def cpu() -> float:
            return sum((_stat(r.pid) or (0, 0.0, 0.0))[1] for r in replicas)

        def toggle() -> None:
            for r in replicas:
                os.kill(r.pid, signal.SIGUSR1)

        async def window_marks() -> None:
            await asyncio.sleep(plan.profile_warm_s)
            toggle()
            window["a"], window["cpu_a"] = time.monotonic(), cpu()
            await asyncio.sleep(plan.profile_s)
            window["b"], window["cpu_b"] = time.monotonic(), cpu()
            toggle()

        marker = asyncio.create_task(window_marks())
        await load.closed_loop(plan.profile_warm_s, plan.profile_s + 1.0)
        await marker
        for _ in range(300):  # the profiles are written within 30 s
            if all(_exists(Path(f"{p}.done")) for p in paths):
                break
            await asyncio.sleep(0.1)
        done = sum(
            t.final_at is not None and window["a"] <= t.final_at < window["b"] for t in load.turns
        )
    finally:
        await close_run(load, replicas, slack)
    missing = [p for p in paths if not p.exists()]
    if missing:
        raise RuntimeError(f"no profile written: {missing}")
    span = window["b"] - window["a"]
    used = window["cpu_b"] - window["cpu_a"]
    return {
        "replicas": n,
        "turns_s_under_cprofile": round(done / span, 1),
        "cpu_cores_under_cprofile": round(used / span, 3),
        "cpu_ms_per_reply_under_cprofile": round(used / max(1, done) * 1000, 2),
        **summarise_profile(paths, done),
    }


# -- the run --------------------------------------------------------------------------------


def code_state() -> dict[str, Any]:
    """The commit measured, and the product files changed in the work tree since."""
    git = ["git", "-C", str(ROOT)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    status = subprocess.run([*git, "status", "--short"], capture_output=True, text=True)
    dirty = [
        line[3:]
        for line in status.stdout.splitlines()
        if line[3:].startswith(("bot/", "adapters/", "storage/"))
    ]
    return {"commit": head.stdout.strip(), "product_files_changed": dirty}


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    pg_version = ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        from tests.postgres import find_bindir

        bindir = find_bindir()
        if bindir is not None:
            pg_version = subprocess.run(
                [str(bindir / "postgres"), "--version"], capture_output=True, text=True, check=False
            ).stdout.strip()
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "postgres": pg_version,
    }


async def run_all(args: argparse.Namespace) -> dict[str, Any]:
    from tests.postgres import PostgresServer, find_bindir

    plan = QUICK if args.quick else FULL
    if args.channels_per_team:
        plan = replace(plan, channels_per_team=args.channels_per_team)
    bindir = find_bindir()
    if bindir is None:
        raise SystemExit("PostgreSQL server binaries not found: apt-get install postgresql")
    run: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "command": "python -m bench.replicas"
        + (" --quick" if args.quick else "")
        + (f" --channels-per-team {args.channels_per_team}" if args.channels_per_team else "")
        + (" --pool-reset off" if args.pool_reset == "off" else ""),
        "pool_reset": args.pool_reset,
        "machine": machine(),
        "code": code_state(),
        "plan": plan.__dict__ | {"channels": plan.channels, "turns_per_thread": TURNS_PER_THREAD},
        "load_before": loadavg(),
    }
    pg = PostgresServer(bindir)
    gemini = GeminiProcess()
    tmp = Path(tempfile.mkdtemp(prefix="bench-replicas-"))
    try:
        await asyncio.to_thread(pg.start)
        # Count rate_take() calls and their time (every database of the cluster).
        await pg_fetch(pg.url, "ALTER SYSTEM SET track_functions = 'pl'")
        await pg_fetch(pg.url, "SELECT pg_reload_conf()")
        await gemini.start()
        box = Box(pg, tmp, gemini, pool_reset=args.pool_reset == "on")
        configs: dict[str, Any] = {}
        rate = args.rate
        for n in (1, 3):
            print(f"replicas: {n} replica(s) ...", file=sys.stderr, flush=True)
            result = await run_config(box, n, plan, rate)
            configs[str(n)] = result
            rate = result["fixed_rate"]["rate"]  # the same offered load for 3 as for 1
            print(f"  {summary_line(result)}", file=sys.stderr, flush=True)
        run["configs"] = configs
        print("replicas: claim round trips ...", file=sys.stderr, flush=True)
        from tests.postgres import create_database

        run["claim_latency"] = await claim_latency(create_database(pg.url), plan)
        print("replicas: statements per turn ...", file=sys.stderr, flush=True)
        run["statements"] = await statements_per_turn(box)
        if not args.no_profile:
            run["profiles"] = []
            for n in (1, 3):
                print(f"replicas: {n} replica(s) under cProfile ...", file=sys.stderr)
                run["profiles"].append(await run_profile(box, plan, n))
        run["load_after"] = loadavg()
    finally:
        await gemini.stop()
        await asyncio.to_thread(pg.stop)
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return run


def summary_line(r: dict[str, Any]) -> str:
    c = r["closed_loop"]
    return (
        f"{c['turns_s']} turns/s, first text p50 {c['first_text']['p50_ms']} ms, "
        f"box {c['cpu_cores']['box']:.2f} cores"
    )


# -- the report -------------------------------------------------------------------------------


def f_ms(d: dict[str, Any]) -> str:
    def one(v: float) -> str:
        if v != v:  # NaN
            return "–"
        return f"{v:.1f} ms" if v < 100 else f"{v:.0f} ms" if v < 1000 else f"{v / 1000:.2f} s"

    return f"{one(d['p50_ms'])} / {one(d['p99_ms'])}"


CPU_ORDER = ("replica 1", "replica 2", "replica 3", "postgres")


def render_run(run: dict[str, Any], full: bool = True) -> str:
    """One run's section; `full`: with the profiles' top-function tables."""
    out = [
        f"### Run of {run['when']}\n",
        f"`{run['command']}`; load average {run['load_before']} before, "
        f"{run.get('load_after', '?')} after (`uptime`: 1, 5, 15 min; 2 cores).\n",
    ]
    code = run.get("code")
    if code:
        changed = code["product_files_changed"]
        out.append(
            f"Code: commit {code['commit']}"
            + (
                f", with uncommitted changes to {', '.join(changed)} in the work tree (being "
                "edited while the bench ran)."
                if changed
                else ", clean work tree."
            )
            + "\n"
        )
    if run.get("pool_reset") == "off":
        out.append(
            "**Experiment, not the product**: the replicas ran with asyncpg's reset query "
            "on connection release switched off (`--pool-reset off`, see wrapped_service).\n"
        )
    configs = run["configs"]
    one, three = configs["1"], configs["3"]
    ratio = three["closed_loop"]["turns_s"] / max(0.1, one["closed_loop"]["turns_s"])
    header = [
        "replicas",
        "turns/s",
        "(service count)",
        "first text p50 / p99 (saturated)",
        f"first text p50 / p99 at {one['fixed_rate']['rate']:g}/s",
        "final p50 / p99 (saturated)",
        "box CPU (cores)",
        "lost",
    ]
    rows = []
    for n, r in configs.items():
        c = r["closed_loop"]
        rows.append(
            [
                n,
                f"{c['turns_s']:.1f}",
                f"{c['service_turns_s']:.1f}",
                f_ms(c["first_text"]),
                f_ms(r["fixed_rate"]["first_text"]),
                f_ms(c["final"]),
                f"{c['cpu_cores']['box']:.2f} of {c['cpu_cores']['box_capacity']:.2f}",
                f"{r['lost']} of {r['mentions']}",
            ]
        )
    out.append(md_table(header, rows))
    out.append(f"\n3 replicas / 1 replica: **{ratio:.2f}x** (target 2.4x).\n")
    procs = [p for p in CPU_ORDER if p in three["closed_loop"]["cpu_cores"]] + [
        "fake Gemini",
        "driver (fake Slack + load)",
        "other",
        "box",
    ]
    procs.insert(procs.index("other"), "all of ours")
    cpu_rows = []
    for p in procs:
        cells = [p]
        for r in configs.values():
            c = r["closed_loop"]
            mine = p == "all of ours"  # replicas, PostgreSQL, fakes, driver
            cores = ours(c) if mine else c["cpu_cores"].get(p)
            per = sum(c["cpu_ms_per_reply"].values()) if mine else c["cpu_ms_per_reply"].get(p)
            cells.append(
                "–"
                if cores is None
                else f"{cores:.2f}" + (f" ({per:.2f} ms/reply)" if per is not None else "")
            )
        cpu_rows.append(cells)
    out.append("CPU over the steady window, in cores (1.00 = one core busy), and per reply:\n")
    out.append(md_table(["process", "1 replica", "3 replicas"], cpu_rows))
    ks = [
        f"{n} replica(s): "
        + ", ".join(f"{k} {v:.0%}" for k, v in r["closed_loop"]["kernel_share"].items())
        for n, r in configs.items()
    ]
    out.append("\nShare of each process's CPU spent in the kernel: " + "; ".join(ks) + ".")
    out.append("\n" + ceiling(one, three))
    per_replica = three["closed_loop"]["per_replica"]
    c1, c3 = one["slack_calls_per_reply"], three["slack_calls_per_reply"]
    out.append(
        "\nReplies per replica in the 3-replica window: "
        + ", ".join(f"{k}: {v}" for k, v in sorted(per_replica.items()))
        + ". Slack calls per reply (1 / 3 replicas): "
        + "; ".join(f"{m} {c1.get(m, 0)} / {c3.get(m, 0)}" for m in sorted(set(c1) | set(c3)))
        + f"; 429s: {one['slack_429s']} / {three['slack_429s']}. PostgreSQL transactions "
        f"per reply (1 / 3 replicas, every phase): {one['db_transactions_per_reply']} / "
        f"{three['db_transactions_per_reply']}."
    )
    out.append("\n" + slow_note(configs))
    cl = [
        f"{n} replica(s): {r['claims']['calls']} rate_take() calls for {r['completed']} "
        f"replies = **{r['claims']['per_reply']} per reply**; claims minus paced writes "
        f"(chat.postMessage + chat.update): {r['claims']['beyond_one_per_write']} (about one "
        "claim per write; a claim the shared budget refuses is made again after its wait); "
        f"mean time inside PostgreSQL {r['claims']['server_ms_mean']} ms; "
        f"{r['claims']['budget_rows']} budget rows"
        for n, r in configs.items()
    ]
    out.append("\nShared-budget claims made by the service (counted by PostgreSQL, every phase):\n")
    out.append("\n".join(f"- {line}" for line in cl) + "\n")
    lat = run["claim_latency"]
    lat_rows = [
        [label, f_ms(v["claim"]), f_ms(v["select1"]), str(v["claim"]["n"])]
        for label, v in lat.items()
        if isinstance(v, dict)
    ]
    out.append(
        "One claim (PgLimits.take) as the service makes it, on a budget that never runs out:\n"
    )
    out.append(md_table(["clients", "claim p50 / p99", "`SELECT 1` p50 / p99", "claims"], lat_rows))
    if "server_ms_mean" in lat:
        out.append(f"\nrate_take() inside PostgreSQL: {lat['server_ms_mean']} ms mean.")
    st = run.get("statements")
    if st:
        kinds = list(dict.fromkeys(k for v in st.values() for k in v["by_kind"]))
        out.append(
            "\nStatements one replica sends to PostgreSQL per turn (log_statement = 'all'; "
            "each is a round trip):\n"
        )
        out.append(
            md_table(
                ["kind", *st.keys()],
                [[k, *(str(v["by_kind"].get(k, 0)) for v in st.values())] for k in kinds]
                + [["**total**", *(f"**{v['statements']}**" for v in st.values())]],
            )
        )
        out.append(
            "\nThe follow-up turn's statements, in order: "
            + " · ".join(f"`{x}`" for x in st["follow-up"]["sql"])
        )
    for prof in run.get("profiles", []):
        out.append(render_profile(run, prof, full))
    return "\n".join(out)


def _fn_rows(entries: list[dict[str, Any]]) -> list[list[str]]:
    return [
        [
            f"`{e['function']}`",
            f"{e['calls_per_reply']:g}",
            f"{e['own_ms_per_reply']:.3f}",
            f"{e['cum_ms_per_reply']:.3f}",
        ]
        for e in entries
    ]


def render_profile(run: dict[str, Any], prof: dict[str, Any], full: bool) -> str:
    n = prof["replicas"]
    closed = run["configs"][str(n)]["closed_loop"]
    plain = sum(v for k, v in closed["cpu_ms_per_reply"].items() if k.startswith("replica "))
    who = "the replica" if n == 1 else f"all {n} replicas, added up"
    out = [
        f"\n#### Profile: {n} replica{'s' if n > 1 else ''} at saturation, {who}\n",
        f"cProfile on for {plan_s(run)} s of steady state only, timing the event loop "
        f"thread's CPU time (time.thread_time_ns), not the wall clock: "
        f"{prof['turns_s_under_cprofile']} turns/s, {prof['replies']} replies, "
        f"{prof['cpu_cores_under_cprofile']:.2f} cores of replicas, "
        f"{prof['cpu_ms_per_reply_under_cprofile']:.1f} CPU ms per reply (without the "
        f"profiler: {plain:.1f}), so the times below are inflated about "
        f"{prof['cpu_ms_per_reply_under_cprofile'] / plain:.1f}x, most where calls are many "
        "and short. Own time by package, ms per reply:\n",
        md_table(
            ["package", "ms/reply"],
            [[k, f"{v:.3f}"] for k, v in list(prof["by_package_ms_per_reply"].items())[:14]],
        ),
        "\nPer reply:\n",
        md_table(["", "calls/reply", "own ms", "cum ms"], _fn_rows_named(prof["focus"])),
    ]
    if full:
        out += [
            "\nTop functions by cumulative time (per reply; a coroutine's calls count its "
            "resumptions):\n",
            md_table(
                ["function", "calls/reply", "own ms", "cum ms"], _fn_rows(prof["top_cumulative"])
            ),
            "\nTop functions by own time (per reply):\n",
            md_table(["function", "calls/reply", "own ms", "cum ms"], _fn_rows(prof["top_own"])),
        ]
    else:
        out.append("\n(Top functions: in this run's JSON.)")
    return "\n".join(out)


def _fn_rows_named(focus: dict[str, dict[str, Any]]) -> list[list[str]]:
    rows = _fn_rows(list(focus.values()))
    return [[label, *row[1:]] for label, row in zip(focus, rows, strict=True)]


def plan_s(run: dict[str, Any]) -> str:
    return f"{run['plan']['profile_s']:g}"


def ceiling(one: dict[str, Any], three: dict[str, Any]) -> str:
    """What the measured CPU per reply allows on this box, whatever else ran on it."""
    c1, c3 = one["closed_loop"], three["closed_loop"]
    ours1, ours3 = sum(c1["cpu_ms_per_reply"].values()), sum(c3["cpu_ms_per_reply"].values())
    rep1 = c1["cpu_ms_per_reply"].get("replica 1", float("nan"))
    cores = c3["cpu_cores"]["box_capacity"]
    best1 = min(1000 / rep1, cores * 1000 / ours1)  # one event loop, or the box
    best3 = cores * 1000 / ours3
    return (
        f"CPU ceiling, from the CPU per reply measured: one replica is one event loop, at "
        f"most 1 core: 1000 / {rep1:.1f} ms = {1000 / rep1:.0f} turns/s (then all of ours "
        f"use {1000 / rep1 * ours1 / 1000:.2f} cores). 3 replicas: {ours3:.1f} CPU ms per "
        f"reply over all of ours, so {cores:.0f} cores allow at most {best3:.0f} turns/s with "
        f"nothing else running ({max(0.0, cores - c3['cpu_cores']['other']) * 1000 / ours3:.0f}"
        f" with the {c3['cpu_cores']['other']:.2f} cores others used in this window). Best "
        f"possible ratio on this box: {best3 / best1:.2f}x; 2.4x of {best1:.0f} turns/s "
        f"({2.4 * best1:.0f}) would need {2.4 * best1 * ours3 / 1000:.2f} cores."
    )


def slow_note(configs: dict[str, Any]) -> str:
    """Where the first texts slower than 1 s waited."""
    parts = []
    for n, r in configs.items():
        for phase, label in (("closed_loop", "saturated"), ("fixed_rate", "fixed rate")):
            sl = r[phase]["slow"]
            if not sl["n"]:
                parts.append(f"{n} replica(s), {label}: none over {sl['over_s']:g} s")
                continue
            parts.append(
                f"{n} replica(s), {label}: {sl['n']} over {sl['over_s']:g} s, "
                f"{sl['with_placeholder']} of them with a placeholder (sent -> placeholder "
                f"{f_ms(sl['sent_to_placeholder'])}, placeholder -> first text "
                f"{f_ms(sl['placeholder_to_text'])}, p50 / p99); "
                f"{sl['placeholder_share_all']:.0%} of all replies had a placeholder"
            )
    return "First texts over 1 s: " + "; ".join(parts) + "."


def ours(closed: dict[str, Any]) -> float:
    """Cores used by the bench's own processes (replicas, PostgreSQL, fakes, driver)."""
    return float(sum(closed["cpu_cores"][k] for k in closed["cpu_ms_per_reply"]))


def render(runs: list[dict[str, Any]]) -> str:
    m = runs[-1]["machine"]
    plan = runs[-1]["plan"]
    head = [
        f"Machine: {m['cpus']} cores ({m['cpu_model']}), Python {m['python']}, {m['postgres']}; "
        "PostgreSQL, the fake Gemini, the fake Slack with the load driver, and the replicas all "
        "share these cores, and other people's tests were running on the machine too.",
        "",
        f"Load: {plan['users']} closed-loop users, {plan['channels']} channels in "
        f"{plan['channels'] // plan['channels_per_team']} workspaces, {plan['turns_per_thread']} "
        "turns per thread; warm-up "
        f"{plan['warm_s']:g} s, steady window {plan['window_s']:g} s, fixed-rate phase "
        f"{plan['rate_s']:g} s. Instant fake model (2 chunks, no delay); the fake Slack's rate "
        "limits are off (no 429s), so the platform is not the bottleneck; events round-robin "
        "to the replicas' /slack/events. turns/s = replies whose final text the fake Slack "
        "showed, per second of the steady window; (service count) = the replicas' "
        "gemini_bot_turns_total over the same window. First text = event posted -> first bot "
        "write in the thread showing reply text.",
        "",
        "| run | 1 replica turns/s | 3 replicas turns/s | ratio | our CPU 1 / 3 (cores) "
        "| others' CPU 1 / 3 (cores) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for run in runs:
        one, three = run["configs"]["1"]["closed_loop"], run["configs"]["3"]["closed_loop"]
        head.append(
            f"| {run['when']}{' (quick)' if 'quick' in run['command'] else ''}"
            f"{' (pool reset off: experiment)' if run.get('pool_reset') == 'off' else ''} "
            f"| {one['turns_s']:.1f} | {three['turns_s']:.1f} "
            f"| {three['turns_s'] / max(0.1, one['turns_s']):.2f}x "
            f"| {ours(one):.2f} / {ours(three):.2f} "
            f"| {one['cpu_cores']['other']:.2f} / {three['cpu_cores']['other']:.2f} |"
        )
    body = [render_run(run, full=run is runs[-1]) for run in reversed(runs)]
    return "\n".join(head) + "\n\n" + "\n\n".join(body)


def earlier_runs(fresh: bool) -> list[dict[str, Any]]:
    path = REPORTS / f"{NAME}.json"
    if fresh or not path.exists():
        return []
    with contextlib.suppress(ValueError, KeyError, TypeError):
        runs = json.loads(path.read_text())["runs"]
        if isinstance(runs, list):
            return runs
    return []


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m bench.replicas",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help="shorter phases (about 2 minutes)")
    p.add_argument("--fresh", action="store_true", help="forget the earlier runs in the report")
    p.add_argument("--rate", type=float, help="fixed-rate phase: mentions per second")
    p.add_argument("--no-profile", action="store_true", help="skip the cProfile runs")
    p.add_argument(
        "--pool-reset",
        choices=("on", "off"),
        default="on",
        help="off: an experiment, not the product: the replicas' asyncpg pools skip the "
        "reset query on every connection release",
    )
    p.add_argument(
        "--channels-per-team",
        type=int,
        help="channels per workspace (default 1: the workspaces' chat.update budgets stay "
        "out of the way)",
    )
    p.add_argument(
        "--render", action="store_true", help="only write the report again from the saved runs"
    )
    p.add_argument("--serve-gemini", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--service", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--claim-client", nargs=4, help=argparse.SUPPRESS)
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    if args.service:
        wrapped_service()
        return
    if args.serve_gemini:
        asyncio.run(serve_gemini())
        return
    if args.claim_client:
        url, count, key, start_at = args.claim_client
        asyncio.run(claim_client(url, int(count), key, float(start_at)))
        return
    if args.render:
        runs = earlier_runs(False)
    else:
        run = asyncio.run(run_all(args))
        runs = [*earlier_runs(args.fresh), run][-RUNS_KEPT:]
        print(render_run(run))
    notes = kept_notes()
    path = write(NAME, {"runs": runs}, render(runs))
    if notes:
        with path.open("a") as md:
            md.write("\n" + notes)
    print(f"\nreport: {path}")


NOTES = "## Notes"


def kept_notes() -> str:
    """The report's hand-written notes (from a line `## Notes` to the end), kept when the
    bench writes the report again."""
    path = REPORTS / f"{NAME}.md"
    if not path.exists():
        return ""
    text = path.read_text()
    at = text.find("\n" + NOTES)
    return text[at + 1 :] if at >= 0 else ""


if __name__ == "__main__":
    main()
