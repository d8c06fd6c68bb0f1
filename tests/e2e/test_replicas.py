"""Three `gemini-bot run` replicas on one PostgreSQL database behind one Slack app (issue 11).

The fake Slack (HTTP mode) delivers 300 messages, 30 threads of a mention and 9 follow-ups,
each to a random replica, as a load balancer would; every mention also as its twin
`message` event (another event id, the same channel:ts) to another replica at once, and a
share of the follow-ups twice: a Slack retry (X-Slack-Retry-Num, the same event id) to
another replica, at once (both handled together) or after the first was accepted. A
thread's next message goes out once the previous one is accepted (its user turn is in the
database), not once it is answered, so one thread's replies overlap across replicas and only
the thread gate (storage/pg_gate.py) keeps them in order.

Mid-run one replica, the victim, gets no new traffic but five messages (one in each of five
threads) whose answers the model stalls mid-stream. Once those show their first text in
Slack (and its other replies are finished: see `Run.kill_the_victim` for why), the victim
is SIGKILLed: the survivors must claim its replies and answer each again in its own message
("_Regenerated after a restart._" and the whole answer), in thread order, while the rest of
the traffic goes on on them.

What must hold:
- every thread shows exactly one bot message per user message, in the order of the user
  messages, each with the whole answer the model gave for that message (each answer names
  its message); the model was asked once per message, twice for the five taken over;
- the workspace's successful chat.update calls, all replicas together, fit Slack's bucket
  (50/min, burst 5) in every window with at most MAX_UPDATE_429 429s, although the streamed
  answers want several times that many edits;
- in the database: every model turn complete with the answer shown, turns numbered 1..20 per
  thread in message order (user, model, ...), one event id per message, nothing pending.

Slack's budgets are its documented ones, as the fake enforces them: one workspace, 15
channels of two threads, chat.postMessage 1/s per channel (burst 3). A reply costs a post,
plus a chat.update when its answer streams on after the post (or a placeholder was posted).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import re
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.fakes.gemini import FakeGemini, Recorded, Reply
from tests.fakes.slack import BOT_USER, FakeSlack, SlackDriver
from tests.service_process import ServiceProcess, slack_replica_env, until

REPLICAS = 3
THREADS = 30
MESSAGES = 10  # per thread: a mention, then follow-ups without one
CHANNELS = 15  # thread i is in channel i % CHANNELS
USERS = ("U1ADA", "U2BOB")
SEED = 11
THINK_S = 1.0  # the most a thread waits (drawn uniformly) before its next message
CONCURRENT_RETRY = 0.15  # share of follow-ups delivered twice at once
LATE_RETRY = 0.15  # share delivered again once the first delivery was accepted

# Answers come in one chunk (the post shows all of it) or, for these messages and the
# stalled ones, in CHUNKS chunks CHUNK_DELAY s apart (the post shows the start, the rest
# wants edits, and the final text costs a chat.update).
CHUNKS = 12
CHUNK_DELAY = 0.1
STREAMED = {(0, 3), (7, 8), (12, 1), (18, 6), (25, 9), (29, 2)}  # (thread, message)

# The kill: once KILL_AFTER messages are accepted, message STALL_AT of each KILLED thread goes
# to the victim alone, and the model stalls its answer after STALL_AFTER chunks.
VICTIM = 1
KILLED = (2, 9, 14, 21, 27)  # in five channels
STALL_AT = 5
STALL_AFTER = 3
KILL_AFTER = 60

UPDATE_RATE = 50 / 60  # chat.update per workspace (Slack's Tier 3), as the fake enforces it
UPDATE_BURST = 5
MAX_UPDATE_429 = 2

ACCEPT_S = 15.0  # a message not accepted by then is lost
DRAIN_S = 45.0
TAKEOVER_S = 30.0
DONE_S = 60.0

REGENERATED = "_Regenerated after a restart._"
THINKING = "Thinking…"
TAG = re.compile(r"\bt\d\dm\d\d\b")


def tag(i: int, k: int) -> str:
    """The name of message k of thread i; the answer to it names it too."""
    return f"t{i:02d}m{k:02d}"


def place(name: str) -> tuple[int, int]:
    """(thread, message) of a message's name."""
    return int(name[1:3]), int(name[4:6])


def streams(i: int, k: int) -> bool:
    return (i, k) in STREAMED or (i in KILLED and k == STALL_AT)


def chunks(name: str) -> list[str]:
    if not streams(*place(name)):
        return [f"Answer to {name}: one piece."]
    return [f"Answer to {name}:"] + [f" {name}w{j}" for j in range(1, CHUNKS)]


def answer(name: str) -> str:
    return "".join(chunks(name))


def answered(text: str) -> str | None:
    """The message a bot message answers (None: a placeholder, a note)."""
    m = re.search(r"Answer to (t\d\dm\d\d):", text)
    return m.group(1) if m else None


class Script:
    """The model: answers each message by its name; the first answer to a `stall` message
    stops after STALL_AFTER chunks until `hold` is set (once its replica is dead)."""

    def __init__(self, gemini: FakeGemini) -> None:
        self.began = time.monotonic()
        self.asked: Counter[str] = Counter()
        self.asked_at: dict[str, list[float]] = {}
        self.stall: set[str] = set()
        self.hold = asyncio.Event()
        self.unexpected: list[list[str]] = []
        gemini.responder = self

    def __call__(self, rec: Recorded) -> Reply:
        texts = rec.texts()
        m = TAG.search(texts[-1] if texts else "")
        if m is None:
            self.unexpected.append(texts)
            return Reply(["unexpected request"])
        name = m.group(0)
        self.asked[name] += 1
        self.asked_at.setdefault(name, []).append(round(time.monotonic() - self.began, 2))
        parts = chunks(name)
        if name in self.stall and self.asked[name] == 1:
            return Reply(parts, delay=CHUNK_DELAY, hold_after=STALL_AFTER, hold=self.hold)
        return Reply(parts, delay=CHUNK_DELAY if len(parts) > 1 else 0.0)


# -- the database, read from outside ------------------------------------------------------


@dataclass(frozen=True)
class Row:
    thread_id: str
    seq: int
    role: str
    status: str
    attempts: int
    owner: str | None
    text: str
    message_ids: list[str]

    @property
    def name(self) -> str | None:
        m = TAG.search(self.text)
        return m.group(0) if m else None


async def read_turns(pool: asyncpg.Pool) -> list[Row]:
    rows = await pool.fetch(
        "SELECT c.thread_id, t.seq, t.role, t.status, t.attempts, t.owner, t.parts, "
        "t.message_ids FROM turns t JOIN conversations c ON c.id = t.conversation_id "
        "ORDER BY c.thread_id, t.seq"
    )
    return [
        Row(
            thread_id=r["thread_id"],
            seq=r["seq"],
            role=r["role"],
            status=r["status"],
            attempts=r["attempts"],
            owner=r["owner"],
            text="".join(p.get("text", "") for p in json.loads(r["parts"])),
            message_ids=list(json.loads(r["message_ids"])),
        )
        for r in rows
    ]


@dataclass(frozen=True)
class Stored:
    """A message as accepted, and the reply stored right after it."""

    user: Row
    model: Row | None


def stored_by_name(rows: list[Row]) -> dict[str, Stored]:
    by_key = {(r.thread_id, r.seq): r for r in rows}
    return {
        r.name: Stored(r, by_key.get((r.thread_id, r.seq + 1)))
        for r in rows
        if r.role == "user" and r.name is not None
    }


def fullest_window(times: list[float]) -> tuple[float, int, float]:
    """The window of calls that comes closest to (or beyond) Slack's bucket, burst + rate *
    length: its excess over that bound (<= 0: within), its calls, its length."""
    times = sorted(times)
    worst = (-float("inf"), 0, 0.0)
    for a in range(len(times)):
        for b in range(a, len(times)):
            n, span = b - a + 1, times[b] - times[a]
            excess = n - (UPDATE_BURST + UPDATE_RATE * span)
            if excess > worst[0]:
                worst = (excess, n, span)
    return worst


# -- the run --------------------------------------------------------------------------------


@dataclass
class Thread:
    i: int
    rng: random.Random
    root: str = ""

    @property
    def channel(self) -> str:
        return f"C{self.i % CHANNELS:02d}REPL"


@dataclass
class Run:
    """The fakes, the replicas, the database (read-only) and what was sent where."""

    fake: FakeSlack
    script: Script
    replicas: list[ServiceProcess]
    drivers: list[SlackDriver]
    pool: asyncpg.Pool
    threads: list[Thread]
    marks: dict[str, float]
    live: list[int] = field(default_factory=lambda: list(range(REPLICAS)))
    rows: list[Row] = field(default_factory=list)
    accepted: dict[str, asyncio.Event] = field(default_factory=dict)
    sent_to: dict[int, set[str]] = field(default_factory=dict)  # replica -> names sent there
    deliveries: Counter[str] = field(default_factory=Counter)
    background: set[asyncio.Task[None]] = field(default_factory=set)
    kill_phase: asyncio.Event = field(default_factory=asyncio.Event)
    at_stall: dict[int, asyncio.Event] = field(
        default_factory=lambda: {i: asyncio.Event() for i in KILLED}
    )
    killed: asyncio.Event = field(default_factory=asyncio.Event)
    stalled: list[str] = field(default_factory=list)
    takeover_s: dict[str, float] = field(default_factory=dict)
    # Replies seen pending while an earlier reply of their thread was pending on another
    # replica (the gate had to order them across processes).
    overlaps: set[str] = field(default_factory=set)
    drain_log: list[str] = field(default_factory=list)

    def mark(self, label: str) -> None:
        self.marks[label] = time.monotonic()

    def at(self) -> str:
        return f"{time.monotonic() - self.marks['begin']:.1f}s"

    def thread(self, name: str) -> Thread:
        return self.threads[place(name)[0]]

    def texts(self, th: Thread) -> list[str]:
        return [m.visible().strip() for m in self.fake.bot_messages(th.channel, th.root)]

    # -- watching the database ------------------------------------------------------

    def accepted_event(self, name: str) -> asyncio.Event:
        return self.accepted.setdefault(name, asyncio.Event())

    async def poll(self) -> None:
        """Keep `rows` fresh: set `accepted` as user turns appear, note overlaps."""
        while True:
            self.rows = await read_turns(self.pool)
            pending: dict[str, list[Row]] = {}
            for r in self.rows:
                if r.role == "user" and r.name is not None:
                    self.accepted_event(r.name).set()
                if r.role == "model" and r.status == "pending":
                    pending.setdefault(r.thread_id, []).append(r)
            for replies in pending.values():
                for earlier, later in itertools.pairwise(replies):
                    if earlier.owner != later.owner:
                        self.overlaps.add(f"{later.thread_id}:{later.seq}")
            if sum(e.is_set() for e in self.accepted.values()) >= KILL_AFTER:
                self.kill_phase.set()
            await asyncio.sleep(0.02)

    def owned_by_victim(self, r: Row) -> bool:
        """Accepted by the victim (a replica's name is host:pid:suffix)."""
        pid = str(self.replicas[VICTIM].pid)
        return r.owner is not None and r.owner.rsplit(":", 2)[1] == pid

    # -- delivering events ------------------------------------------------------------

    async def deliver(
        self, ev: dict[str, Any], *, event_id: str, to: int, name: str, retry: int | None = None
    ) -> None:
        self.sent_to.setdefault(to, set()).add(name)
        self.deliveries[name] += 1
        status, body = await self.drivers[to].event(ev, event_id=event_id, retry=retry)
        assert status == 200, (to, status, body)

    async def wait_accepted(self, name: str) -> None:
        try:
            await asyncio.wait_for(self.accepted_event(name).wait(), ACCEPT_S)
        except TimeoutError:
            raise AssertionError(f"{name} not accepted within {ACCEPT_S}s: lost") from None

    async def send(self, th: Thread, k: int, *, only: int | None = None) -> None:
        """Message k of a thread to a random live replica (or to `only`), with its twin
        event or a retry as drawn; returns once it is accepted."""
        name = tag(th.i, k)
        user = USERS[(th.i + k) % len(USERS)]
        author = self.drivers[0]  # records the message in the fake and builds its event
        if k == 0:
            ev = author.message(th.channel, user, f"<@{BOT_USER}> {name} please start")
            th.root = str(ev["ts"])
        else:
            ev = author.message(th.channel, user, f"{name} and then?", thread_ts=th.root)
        event_id = f"Ev{name}"
        rng = th.rng
        first = rng.choice(self.live) if only is None else only
        other = rng.choice([r for r in self.live if r != first] or [first])
        how = rng.random()
        if only is not None:
            await self.deliver(ev, event_id=event_id, to=only, name=name)
        elif k == 0:  # Slack sends app_mention and message (two event ids) for a mention
            await asyncio.gather(
                self.deliver(author.as_mention(ev), event_id=event_id, to=first, name=name),
                self.deliver(ev, event_id=f"{event_id}m", to=other, name=name),
            )
        elif how < CONCURRENT_RETRY:
            await asyncio.gather(
                self.deliver(ev, event_id=event_id, to=first, name=name),
                self.deliver(ev, event_id=event_id, to=other, name=name, retry=1),
            )
        else:
            await self.deliver(ev, event_id=event_id, to=first, name=name)
            if how < CONCURRENT_RETRY + LATE_RETRY:
                retry = self.retry_later(ev, name, first, rng)
                task = asyncio.create_task(retry)
                self.background.add(task)
                task.add_done_callback(self.background.discard)
        await self.wait_accepted(name)

    async def retry_later(
        self, ev: dict[str, Any], name: str, first: int, rng: random.Random
    ) -> None:
        await self.wait_accepted(name)
        await asyncio.sleep(rng.uniform(0, 0.5))  # Slack's retry comes some time later
        to = rng.choice([r for r in self.live if r != first] or self.live)
        await self.deliver(ev, event_id=f"Ev{name}", to=to, name=name, retry=1)

    async def converse(self, th: Thread) -> None:
        for k in range(MESSAGES):
            if th.i in KILLED and k == STALL_AT:
                self.at_stall[th.i].set()  # this one goes to the victim (kill_the_victim)
                await self.killed.wait()
                continue
            await self.send(th, k)
            await asyncio.sleep(th.rng.uniform(0, THINK_S))  # the user types

    # -- the kill ---------------------------------------------------------------------

    def not_ready_to_kill(self) -> list[str]:
        """What the kill still waits for: every message sent to the victim accepted, its
        other replies finished, the stalled ones showing text (their message ids saved)."""
        got = stored_by_name(self.rows)
        out = []
        for name in sorted(self.sent_to.get(VICTIM, set())):
            s = got.get(name)
            if s is None or s.model is None:
                out.append(f"{name} not accepted")
            elif name in self.stalled:
                shown = any(answered(t) == name for t in self.texts(self.thread(name)))
                if not shown or not s.model.message_ids:
                    out.append(f"{name} not shown ({s.model.message_ids})")
            elif self.owned_by_victim(s.user) and s.model.status == "pending":
                out.append(f"{name} pending on the victim")
        return out

    async def kill_the_victim(self) -> None:
        """Send the KILLED threads' next messages to the victim alone and SIGKILL it once
        their answers, stalled mid-stream, show in Slack.

        From then on the victim takes no new traffic, and the kill waits until each other
        reply it accepted is finished: killed between Slack's answer to a chat.postMessage
        and saving that message's id, a replica leaves a message nobody knows of, and the
        replica that takes its reply over posts it again (a known limit of crash recovery,
        bot/engine/checkpoint.py; test_crash_recovery.py waits for the ids too).
        """
        await self.kill_phase.wait()
        await asyncio.gather(*(e.wait() for e in self.at_stall.values()))
        self.live = [r for r in range(REPLICAS) if r != VICTIM]
        self.mark("drain")
        self.stalled = [tag(i, STALL_AT) for i in KILLED]
        self.script.stall.update(self.stalled)
        await asyncio.gather(*(self.send(self.threads[i], STALL_AT, only=VICTIM) for i in KILLED))
        self.mark("stalled-sent")
        seen: list[str] = []

        def ready() -> bool:
            now = self.not_ready_to_kill()
            if now != seen:
                seen[:] = now
                self.drain_log.append(f"{self.at()} waiting for {now}")
            return not now

        await until(ready, limit=DRAIN_S, what=lambda: f"{seen}\n{self.state()}")
        self.mark("stalled-shown")
        await self.replicas[VICTIM].kill()
        self.mark("killed")
        self.script.hold.set()  # the stalled streams end (their client is gone)
        self.killed.set()

    async def taken_over(self) -> None:
        """Each stalled reply is answered again, in its own message, by a survivor."""
        killed_at = self.marks["killed"]

        async def one(name: str) -> None:
            th = self.thread(name)
            (ts,) = [
                m.ts
                for m in self.fake.bot_messages(th.channel, th.root)
                if answered(m.visible()) == name
            ]
            want = f"{REGENERATED}\n\n{answer(name)}"

            def done() -> bool:
                return self.fake.messages[(th.channel, ts)].visible().strip() == want

            await until(
                done,
                limit=TAKEOVER_S,
                what=lambda: f"asked at {self.script.asked_at.get(name)}\n{self.dump(th)}",
            )
            self.takeover_s[name] = time.monotonic() - killed_at

        await asyncio.gather(*(one(n) for n in self.stalled))
        self.mark("taken-over")

    # -- telling what happened --------------------------------------------------------------

    def report(self) -> str:
        """The run in numbers: phases, Slack calls, deliveries, takeover latencies."""
        spans = sorted(self.marks.items(), key=lambda kv: kv[1])
        began = self.marks["begin"]
        traffic = self.marks.get("answered", time.monotonic()) - self.marks["started"]
        updates = self.fake.calls_to("chat.update")
        ok = [c.at for c in updates if c.status != 429]
        _, n, span = fullest_window(ok)
        posts = self.fake.calls_to("chat.postMessage")
        signs = sum(1 for c in posts if c.status != 429 and THINKING in str(c.args.get("text")))
        streamed = sum(streams(i, k) for i in range(THREADS) for k in range(MESSAGES))
        takeover = ", ".join(f"{k} {v:.1f}s" for k, v in sorted(self.takeover_s.items()))
        return "\n".join(
            [
                "",
                "phases: " + " ".join(f"{k}={v - began:.1f}s" for k, v in spans),
                f"chat.update: {len(ok)} ok, {len(updates) - len(ok)} refused (429) in "
                f"{traffic:.1f}s of traffic, Slack's budget "
                f"{UPDATE_BURST + UPDATE_RATE * traffic:.0f}; wanted >= "
                f"{streamed * (CHUNKS - 1)} ({streamed} answers of {CHUNKS} chunks); fullest "
                f"window {n} calls in {span:.1f}s (bound {UPDATE_BURST + UPDATE_RATE * span:.1f})",
                f"chat.postMessage: {len(posts)} calls, "
                f"{sum(1 for c in posts if c.status == 429)} refused (429), {signs} placeholders",
                f"deliveries: {sum(self.deliveries.values())} for {len(self.deliveries)} "
                f"messages; model asked {sum(self.script.asked.values())} times; replies "
                f"ordered behind another replica's: {len(self.overlaps)}",
                f"takeover after the kill: {takeover}",
                *self.drain_log[-4:],
            ]
        )

    def dump(self, th: Thread) -> str:
        """A thread as Slack has it: each message, every text a bot message showed, and
        the calls on it (times from the start)."""
        began = self.marks["begin"]
        lines = [f"thread {th.i} in {th.channel}:"]
        for m in self.fake.thread(th.channel, th.root):
            lines.append(f"  {m.ts} {m.user}: {m.visible()[:60]!r}")
            if m.user != BOT_USER:
                continue
            lines += [f"      showed {h[:70]!r}" for h in m.history]
            for c in self.fake.calls:
                posted = (
                    c.method == "chat.postMessage"
                    and c.args.get("thread_ts") == th.root
                    and str(c.args.get("text")) == (m.history or [""])[0]
                )
                if posted or (c.method == "chat.update" and c.args.get("ts") == m.ts):
                    text = str(c.args.get("text"))[:40]
                    lines.append(f"      {c.method} at {c.at - began:.2f}s: {c.status} {text!r}")
        return "\n".join(lines)

    def state(self) -> str:
        shown = {th.i: [t[:30] for t in self.texts(th)] for th in self.threads}
        logs = "\n".join(r.log()[-2000:] for r in self.replicas)
        return f"bot messages: {shown!r}"[:6000] + "\n" + logs


# -- the checks ------------------------------------------------------------------------------


def check_threads(run: Run) -> None:
    """Every thread: one whole answer per message, in message order, none twice."""
    problems: list[str] = []
    for th in run.threads:
        names = [tag(th.i, k) for k in range(MESSAGES)]
        want = [f"{REGENERATED}\n\n{answer(n)}" if n in run.stalled else answer(n) for n in names]
        if run.texts(th) != want:
            got = [answered(t) for t in run.texts(th)]
            problems.append(f"thread {th.i}: answers {got}, want {names}\n{run.dump(th)}")
            continue
        # Each answer below its own message (Slack's thread order is ts order).
        order = [m.ts for m in run.fake.thread(th.channel, th.root)]
        users = [m.ts for m in run.fake.thread(th.channel, th.root) if m.user != BOT_USER]
        bots = [m.ts for m in run.fake.bot_messages(th.channel, th.root)]
        for u, b in zip(users, bots, strict=True):
            if order.index(b) < order.index(u):
                problems.append(f"thread {th.i}: an answer above its message\n{run.dump(th)}")
    assert not problems, "\n".join(problems[:10])


def check_database(run: Run, events: int) -> None:
    """Every reply stored complete, with the text and message shown, in message order."""
    assert not [r for r in run.rows if r.status == "pending"], "left pending"
    turns: dict[str, list[Row]] = {}
    for r in run.rows:
        turns.setdefault(r.thread_id, []).append(r)
    roots = {th.root: th for th in run.threads}
    assert set(turns) == set(roots), "a conversation missing, or one of no thread of ours"
    for root, rows in turns.items():
        th = roots[root]
        assert [t.seq for t in rows] == list(range(1, 2 * MESSAGES + 1)), (th.i, rows)
        users, models = rows[0::2], rows[1::2]
        assert {t.role for t in users} == {"user"} and {t.role for t in models} == {"model"}
        # Accepted in message order: seq is the order the gate lets replies out in.
        assert [u.name for u in users] == [tag(th.i, k) for k in range(MESSAGES)], th.i
        messages = {m.ts: m for m in run.fake.bot_messages(th.channel, th.root)}
        for u, m in zip(users, models, strict=True):
            assert u.name is not None
            assert m.status == "complete", (u.name, m)
            assert m.text.strip() == answer(u.name), (u.name, m.text)
            assert m.attempts == (1 if u.name in run.stalled else 0), (u.name, m)
            (ts,) = m.message_ids
            assert answered(messages[ts].visible()) == u.name, (u.name, m.message_ids)
    assert events == THREADS * MESSAGES, f"{events} event ids stored for 300 messages"


# -- the test ----------------------------------------------------------------------------------


@pytest.fixture
async def run(
    fake_gemini: FakeGemini, fake_slack: FakeSlack, database: str, tmp_path: Path
) -> AsyncIterator[Run]:
    env = slack_replica_env(fake_slack, fake_gemini, database)
    replicas = [ServiceProcess(tmp_path / f"replica{r}", env) for r in range(REPLICAS)]
    script = Script(fake_gemini)
    threads = [Thread(i, random.Random(SEED * 1000 + i)) for i in range(THREADS)]
    pool = await asyncpg.create_pool(
        database, min_size=1, max_size=2, server_settings={"default_transaction_read_only": "on"}
    )
    drivers: list[SlackDriver] = []
    the_run: Run | None = None
    try:
        await asyncio.gather(*(r.start() for r in replicas))
        drivers = [SlackDriver(fake_slack, r.events_url) for r in replicas]
        marks = {"begin": script.began}
        the_run = Run(fake_slack, script, replicas, drivers, pool, threads, marks)
        the_run.mark("started")
        yield the_run
    finally:
        script.hold.set()
        await asyncio.gather(*(r.stop() for r in replicas))
        for d in drivers:
            await d.close()
        await pool.close()
        print(the_run.report() if the_run else "\nthe replicas did not start")


async def test_three_replicas_answer_every_message_once_in_order(run: Run) -> None:
    poller = asyncio.create_task(run.poll())
    try:
        conversations = asyncio.gather(*(run.converse(th) for th in run.threads))
        try:
            await run.kill_the_victim()
            await asyncio.gather(run.taken_over(), conversations)
        finally:
            conversations.cancel()
        await asyncio.gather(*run.background)
        run.mark("all-sent")

        def answered_all() -> bool:
            got = stored_by_name(run.rows)
            return len(got) == THREADS * MESSAGES and all(
                s.model is not None and s.model.status != "pending" for s in got.values()
            )

        await until(answered_all, limit=DONE_S, what=run.state)
        run.mark("answered")
    finally:
        poller.cancel()
    run.rows = await read_turns(run.pool)
    events = await run.pool.fetchval("SELECT COUNT(*) FROM processed_events")

    check_threads(run)
    check_database(run, events)
    want = {tag(i, k): 1 for i in range(THREADS) for k in range(MESSAGES)}
    want.update({name: 2 for name in run.stalled})
    assert run.script.asked == want, {k: v for k, v in run.script.asked.items() if want.get(k) != v}
    assert not run.script.unexpected, run.script.unexpected[:3]
    logs = "\n".join(r.log() for r in run.replicas)
    assert logs.count("taking over 5 unfinished repl(ies)") == 1, "claimed once, by one survivor"
    assert run.overlaps, "no reply waited for another replica's: the gate was not exercised"

    updates = run.fake.calls_to("chat.update")
    excess, n, span = fullest_window([c.at for c in updates if c.status != 429])
    assert excess <= 0.05, f"{n} chat.update calls in {span:.2f}s: beyond Slack's bucket"
    refused = sum(1 for c in updates if c.status == 429)
    assert refused <= MAX_UPDATE_429, f"{refused} chat.update calls refused (429)"
    traffic = run.marks["answered"] - run.marks["started"]
    streamed = sum(streams(i, k) for i in range(THREADS) for k in range(MESSAGES))
    assert streamed * (CHUNKS - 1) > UPDATE_BURST + UPDATE_RATE * traffic, "too few edits wanted"
