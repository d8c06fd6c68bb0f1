"""Replies survive a crash: `gemini-bot run` is SIGKILLed while 20 replies stream, then
started again on the same DATA_DIR with the same fakes (Slack in HTTP mode, Discord over
its gateway, Gemini), in this process.

What a user must see afterwards (bot/engine/recovery.py): every reply the crash froze is
either answered again in place, prefixed "_Regenerated after a restart._" (RECOVERY=resume,
at most once per reply), or shows its saved text plus the "interrupted when the bot
restarted" note (RECOVERY=mark, and a reply whose regenerated answer was cut by a second
crash). Never a placeholder left "Thinking…", never half an answer without a note. The
database passes `PRAGMA integrity_check`, holds no 'pending' turn, and each thread goes on:
a follow-up (no mention) is answered with the original question in the model's history.

The fake Gemini answers in chunks; in the "slow" phases each answer stalls after half of
its chunks (`Reply.hold`), so the kill lands with exactly half of every answer on screen.

Both platforms run in one service process (as deployed; it halves the process starts):
threads 0-19 are Slack threads, 20-39 Discord threads. Slack's chat.update budget is per
workspace (50/min): the 20 Slack threads are spread over ten workspaces (two threads each,
one channel per thread) so a run takes seconds, not minutes, while threads still share a
budget with another.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import sqlite3
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pytest

from tests.fakes.discord import CHANNEL, FakeDiscord
from tests.fakes.discord import TOKEN as DISCORD_TOKEN
from tests.fakes.discord_gateway import BOT_ID as DISCORD_BOT
from tests.fakes.gemini import FakeGemini, Recorded, Reply
from tests.fakes.slack import BOT_TOKEN, BOT_USER, SIGNING_SECRET, FakeSlack, SlackDriver
from tests.service_process import ServiceProcess, until

ADA_DISCORD = "100000000000000001"
ADA_SLACK = "U1ADA"

THREADS = 20
CHUNKS = 40  # words per answer; the slow phases stall after HALF of them
HALF = CHUNKS // 2
CHUNK_DELAY = 0.05

REGENERATED = "_Regenerated after a restart._"
INTERRUPTED = "interrupted when the bot restarted"
THINKING = "Thinking…"


# -- the scripted model ---------------------------------------------------------


def question(i: int) -> str:
    return f"q{i:02d} what does the crash recovery do"


def follow_up(i: int) -> str:
    return f"f{i:02d} does that still hold"


def words(prefix: str, i: int) -> list[str]:
    return [f"{prefix}{i:02d}w{k:02d} " for k in range(CHUNKS)]


def original(i: int) -> str:
    """The answer the first process was streaming when it was killed."""
    return "".join(words("o", i))


def fresh(i: int) -> str:
    """The answer a restarted process gets for the same question."""
    return "".join(words("n", i))


def half(prefix: str, i: int) -> str:
    """What a stalled stream has sent: the first HALF words."""
    return "".join(words(prefix, i)[:HALF]).strip()


def follow_answer(i: int) -> str:
    return f"Follow-up answer for thread {i:02d}, with the whole history."


class Script:
    """Answers by what is asked: `q07` (a thread's question) by phase, `f07` (a follow-up)
    at once. Phases: "slow" streams the original answer and stalls at half; "slow-fresh"
    does the same with the fresh answer; "fast" sends the fresh answer at once."""

    def __init__(self, gemini: FakeGemini) -> None:
        self.gemini = gemini
        self.phase = "slow"
        self.stall: set[int] = set()  # questions answered "slow-fresh" in the "fast" phase
        self.hold = asyncio.Event()
        self.asked: dict[int, list[str]] = defaultdict(list)  # question -> phases asked in
        self.follow_ups: dict[int, Recorded] = {}
        gemini.responder = self

    def release(self) -> None:
        """Let stalled streams end (their client is gone) and stall the next ones anew."""
        self.hold.set()
        self.hold = asyncio.Event()

    def __call__(self, rec: Recorded) -> Reply:
        texts = rec.texts()
        last = texts[-1] if texts else ""
        if m := re.search(r"\bf(\d\d)\b", last):
            i = int(m.group(1))
            self.follow_ups[i] = rec
            return Reply([follow_answer(i)])
        m = re.search(r"\bq(\d\d)\b", last)
        assert m is not None, f"unexpected model request: {texts!r}"
        i = int(m.group(1))
        phase = "slow-fresh" if self.phase == "fast" and i in self.stall else self.phase
        self.asked[i].append(phase)
        if phase == "fast":
            return Reply(words("n", i))
        if phase == "first-word":  # Slack: stalls before the first word; Discord: after it
            first = 0 if i < THREADS else 1
            return Reply(words("o", i), delay=CHUNK_DELAY, hold_after=first, hold=self.hold)
        chunks = words("o", i) if phase == "slow" else words("n", i)
        return Reply(chunks, delay=CHUNK_DELAY, hold_after=HALF, hold=self.hold)


# -- the database, read from outside --------------------------------------------------


@dataclass(frozen=True)
class ModelTurn:
    thread_id: str
    seq: int
    status: str
    attempts: int
    text: str
    message_ids: list[str]
    error: str | None


def _ro(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)


def model_turns(db: Path) -> list[ModelTurn]:
    """Every model turn, read-only (the service may be running)."""
    con = _ro(db)
    try:
        rows = con.execute(
            "SELECT c.thread_id, t.seq, t.status, t.attempts, t.parts, t.message_ids, t.error "
            "FROM turns t JOIN conversations c ON c.id = t.conversation_id "
            "WHERE t.role = 'model' ORDER BY t.id"
        ).fetchall()
    finally:
        con.close()
    return [
        ModelTurn(
            thread_id=str(th),
            seq=int(seq),
            status=str(status),
            attempts=int(attempts),
            text="".join(p.get("text", "") for p in json.loads(parts)),
            message_ids=list(json.loads(mids)),
            error=err,
        )
        for th, seq, status, attempts, parts, mids, err in rows
    ]


def integrity(db: Path) -> str:
    con = _ro(db)
    try:
        return ", ".join(str(r[0]) for r in con.execute("PRAGMA integrity_check"))
    finally:
        con.close()


def integrity_after_crash(db: Path, scratch: Path) -> str:
    """integrity_check of the files a kill left (database, WAL, shared memory), on a copy:
    the next process must find them sound, and the check must not change them."""
    scratch.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        src = db.with_name(db.name + suffix)
        if src.exists():
            shutil.copy2(src, scratch / (db.name + suffix))
    con = sqlite3.connect(scratch / db.name)
    try:
        return ", ".join(str(r[0]) for r in con.execute("PRAGMA integrity_check"))
    finally:
        con.close()


# -- waiting ----------------------------------------------------------------------------


# -- the platforms -----------------------------------------------------------------------


class Side(Protocol):
    """What the scenarios need from a platform: post questions and follow-ups, read what
    the bot's messages in each thread show now."""

    def env(self) -> dict[str, str]: ...

    async def attach(self, service: ServiceProcess) -> None: ...

    async def ask(self, i: int) -> str: ...

    async def follow(self, i: int) -> None: ...

    def texts(self, i: int) -> list[str]: ...

    async def aclose(self) -> None: ...


class SlackSide:
    """Fake Slack, HTTP mode: signed events to the service's /slack/events."""

    TEAMS = 10

    def __init__(self, fake: FakeSlack) -> None:
        self.fake = fake
        self.driver: SlackDriver | None = None
        self.roots: dict[int, tuple[str, str, str]] = {}  # i -> (team, channel, root ts)

    def env(self) -> dict[str, str]:
        return {
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": self.fake.api_url,
        }

    async def attach(self, service: ServiceProcess) -> None:
        if self.driver is None:
            self.driver = SlackDriver(self.fake, service.events_url)

    def _where(self, i: int) -> tuple[str, str]:
        team = f"T{i % self.TEAMS:02d}TEAM"
        channel = f"C{i:02d}CRASH"
        self.fake.channel_team[channel] = team
        return team, channel

    async def ask(self, i: int) -> str:
        assert self.driver is not None
        team, channel = self._where(i)
        ev = self.driver.message(channel, ADA_SLACK, f"<@{BOT_USER}> {question(i)}")
        ev["team"] = team
        status, body = await self.driver.event(self.driver.as_mention(ev))
        assert status == 200, body
        self.roots[i] = (team, channel, str(ev["ts"]))
        return str(ev["ts"])

    async def follow(self, i: int) -> None:
        assert self.driver is not None
        team, channel, root = self.roots[i]
        ev = self.driver.message(channel, ADA_SLACK, follow_up(i), thread_ts=root)
        ev["team"] = team
        status, body = await self.driver.event(ev)
        assert status == 200, body

    def texts(self, i: int) -> list[str]:
        _, channel, root = self.roots[i]
        return [m.visible() for m in self.fake.bot_messages(channel, root)]

    async def aclose(self) -> None:
        if self.driver is not None:
            await self.driver.close()


class DiscordSide:
    """Fake Discord: mentions in #general open a thread from the message."""

    def __init__(self, fake: FakeDiscord) -> None:
        self.fake = fake
        self.threads: dict[int, str] = {}  # i -> thread id (= the mention's message id)

    def env(self) -> dict[str, str]:
        return {
            "DISCORD_TOKEN": DISCORD_TOKEN,
            "DISCORD_API_URL": self.fake.api_url,
            "DISCORD_GATEWAY_URL": self.fake.gateway_url,
        }

    async def attach(self, service: ServiceProcess) -> None:
        return None

    async def ask(self, i: int) -> str:
        msg = await self.fake.say(CHANNEL, ADA_DISCORD, f"<@{DISCORD_BOT}> {question(i)}")
        self.threads[i] = str(msg["id"])
        return str(msg["id"])

    async def follow(self, i: int) -> None:
        await self.fake.say(self.threads[i], ADA_DISCORD, follow_up(i))

    def texts(self, i: int) -> list[str]:
        tid = self.threads[i]
        if tid not in self.fake.channels:
            return []
        msgs = sorted(self.fake.bot_messages(tid), key=lambda m: int(m["id"]))
        return [str(m["content"]) for m in msgs]

    async def aclose(self) -> None:
        return None


# -- fixtures -------------------------------------------------------------------------------


@dataclass
class World:
    """The fakes, the service (Slack and Discord in one process) and which thread is where:
    thread ids 0-19 are Slack threads, 20-39 Discord threads."""

    sides: dict[str, Side]
    service: ServiceProcess
    script: Script
    gemini: FakeGemini
    tmp: Path
    marks: dict[str, float]

    def side(self, i: int) -> Side:
        return self.sides["slack" if i < THREADS else "discord"]

    @staticmethod
    def ids(per_platform: int) -> list[int]:
        return [*range(per_platform), *range(THREADS, THREADS + per_platform)]

    @staticmethod
    def platform(i: int) -> str:
        return "slack" if i < THREADS else "discord"

    def texts(self, i: int) -> list[str]:
        return [t.strip() for t in self.side(i).texts(i)]

    def index(self, turn: ModelTurn) -> int:
        """Which of our threads a stored turn belongs to."""
        slack, discord = self.sides["slack"], self.sides["discord"]
        assert isinstance(slack, SlackSide) and isinstance(discord, DiscordSide)
        for i, (_, _, root) in slack.roots.items():
            if root == turn.thread_id:
                return i
        for i, tid in discord.threads.items():
            if tid == turn.thread_id:
                return i
        raise AssertionError(f"a turn in no thread of ours: {turn!r}")

    def state(self, ids: list[int]) -> str:
        seen = {f"{self.platform(i)}:{i}": self.texts(i) for i in ids}
        return f"bot messages per thread: {seen!r}"[:4000] + "\n" + self.service.log()[-6000:]

    def mark(self, label: str) -> None:
        self.marks[label] = time.monotonic()


@pytest.fixture
async def world(
    fake_gemini: FakeGemini,
    fake_slack: FakeSlack,
    fake_discord: FakeDiscord,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> AsyncIterator[World]:
    sides: dict[str, Side] = {"slack": SlackSide(fake_slack), "discord": DiscordSide(fake_discord)}
    env = {"GEMINI_BASE_URL": fake_gemini.base_url}
    for side in sides.values():
        env.update(side.env())
    service = ServiceProcess(tmp_path, env)
    script = Script(fake_gemini)
    w = World(sides, service, script, fake_gemini, tmp_path, {"begin": time.monotonic()})
    try:
        yield w
    finally:
        script.hold.set()
        await service.stop()
        for side in sides.values():
            await side.aclose()
        begin = w.marks["begin"]
        spans = sorted(w.marks.items(), key=lambda kv: kv[1])
        print(f"\n{request.node.name}: " + " ".join(f"{k}={v - begin:.1f}s" for k, v in spans))


# -- the scenario's steps ------------------------------------------------------------------


def pending(w: World) -> list[ModelTurn]:
    return [t for t in model_turns(w.service.db) if t.status == "pending"]


async def start(w: World, label: str, **env: str) -> None:
    await w.service.start(**env)
    for side in w.sides.values():
        await side.attach(w.service)
    w.mark(label)


async def kill(w: World, ids: list[int], label: str) -> None:
    """SIGKILL; the replies of `ids` (only) are left pending, with their message ids; the
    files are sound."""
    await w.service.kill()
    w.mark(label)
    w.script.release()
    crashed = pending(w)
    assert sorted(w.index(t) for t in crashed) == sorted(ids), f"pending: {crashed!r}"
    assert all(t.message_ids for t in crashed), f"message ids not checkpointed: {crashed!r}"
    assert integrity_after_crash(w.service.db, w.tmp / f"crash-{label}") == "ok"


async def until_checkpointed(w: World, want: list[str]) -> None:
    """Until the pending replies' saved texts are exactly `want`."""

    def saved() -> bool:
        return sorted(t.text.strip() for t in pending(w)) == sorted(want)

    await until(saved, limit=10, what=lambda: repr(pending(w))[:4000])


async def crash_mid_answer(w: World, ids: list[int], *, wait_checkpoint: bool) -> None:
    """Ask every question; once each thread shows exactly half its answer (the streams
    stall there), SIGKILL the service. With `wait_checkpoint`, first wait until the half
    texts are checkpointed in the database too (else the kill may come before that)."""
    await start(w, "started")
    await asyncio.gather(*(w.side(i).ask(i) for i in ids))

    def half_shown() -> bool:
        return all(w.texts(i) == [half("o", i)] for i in ids)

    await until(half_shown, limit=30, what=lambda: w.state(ids))
    w.mark("half-shown")
    if wait_checkpoint:
        await until_checkpointed(w, [half("o", i) for i in ids])
        w.mark("checkpointed")
    await kill(w, ids, "killed")


async def until_recovered(
    w: World, ids: list[int], shows: Callable[[int, list[str]], bool]
) -> None:
    """Until every thread's messages satisfy `shows` and nothing is pending."""

    def done() -> bool:
        return all(shows(i, w.texts(i)) for i in ids) and not pending(w)

    await until(done, limit=30, what=lambda: w.state(ids))
    w.mark("recovered")


async def follow_ups_answered(w: World, ids: list[int], *, history: Callable[[int], str]) -> None:
    """A follow-up in every thread (no mention) is answered, and the model is sent the
    thread's original question and `history(i)` (the stored reply) with it."""
    before = {i: len(w.texts(i)) for i in ids}
    await asyncio.gather(*(w.side(i).follow(i) for i in ids))

    def answered() -> bool:
        shown = all(
            len(t := w.texts(i)) == before[i] + 1 and t[-1] == follow_answer(i) for i in ids
        )
        return shown and not pending(w)  # a reply is stored once it is delivered

    await until(answered, limit=30, what=lambda: w.state(ids))
    w.mark("followed-up")
    for i in ids:
        texts = w.script.follow_ups[i].texts()
        where = f"{w.platform(i)} thread {i}"
        assert any(question(i) in t for t in texts), f"{where}: question not sent: {texts!r}"
        want = history(i).strip()
        assert any(want and want in t for t in texts), (
            f"{where}: stored reply {want!r} not in the history sent: {texts!r}"
        )


def no_pending_and_sound(w: World) -> list[ModelTurn]:
    turns = model_turns(w.service.db)
    assert not [t for t in turns if t.status == "pending"], f"left pending: {turns!r}"
    assert integrity(w.service.db) == "ok"
    return turns


def assert_no_bare_text(w: World, ids: list[int]) -> None:
    """No message shows a placeholder, or half an answer without a note."""
    for i in ids:
        for text in w.texts(i):
            where = f"{w.platform(i)} thread {i}"
            assert THINKING not in text, f"{where}: placeholder left: {text!r}"
            complete = text == f"{REGENERATED}\n\n{fresh(i)}".strip()
            marked = INTERRUPTED in text
            followed = text == follow_answer(i)
            assert complete or marked or followed, f"{where}: shows {text!r}"


# -- the tests -------------------------------------------------------------------------------


async def test_resume_answers_every_frozen_reply_again_in_place(world: World) -> None:
    """RECOVERY=resume (default): 20 Slack and 20 Discord replies killed mid-stream are
    regenerated in their own messages after the restart, once each. Two replies per
    platform are killed again while their regenerated answer streams: the third process
    marks those instead of calling the model again, and leaves the others alone. Every
    thread then goes on."""
    w, ids = world, World.ids(THREADS)
    twice = [0, 1, THREADS, THREADS + 1]  # the second crash catches these mid-resume
    once = [i for i in ids if i not in twice]
    await crash_mid_answer(w, ids, wait_checkpoint=False)

    # 1. Restart: every reply is answered again; `twice` stall at half of the new answer.
    w.script.phase, w.script.stall = "fast", set(twice)
    await start(w, "restarted")
    regenerated = {i: [f"{REGENERATED}\n\n{fresh(i)}".strip()] for i in ids}
    resuming = {i: [f"{REGENERATED}\n\n{half('n', i)}"] for i in twice}

    def resumed() -> bool:
        turns = {w.index(t): t for t in model_turns(w.service.db)}
        return (
            all(w.texts(i) == regenerated[i] and turns[i].status == "complete" for i in once)
            and all(w.texts(i) == resuming[i] for i in twice)
            # checkpointed: the next start-up has the new half answer to show
            and all(turns[i].text.strip() == half("n", i) for i in twice)
        )

    await until(resumed, limit=30, what=lambda: w.state(ids))
    w.mark("resumed")
    turns = model_turns(w.service.db)
    assert all(t.attempts == 1 for t in turns), f"attempt not counted before the call: {turns!r}"
    assert f"recovery: {len(ids)} unfinished repl(ies) found (RECOVERY=resume)" in w.service.log(2)

    # 2. Killed again mid-resume, restarted: those replies are marked, not answered again.
    await kill(w, twice, "killed-again")
    await start(w, "restarted-again")
    await until_recovered(w, twice, lambda i, texts: len(texts) == 1 and INTERRUPTED in texts[0])
    assert f"recovery: {len(twice)} unfinished repl(ies) found (RECOVERY=resume)" in w.service.log(
        3
    )
    assert_no_bare_text(w, ids)
    for i in once:
        assert w.texts(i) == regenerated[i], f"{w.platform(i)} thread {i} changed: {w.texts(i)!r}"
    for i in twice:
        (text,) = w.texts(i)
        assert text.startswith(f"{half('n', i)} \n\n_"), f"{w.platform(i)} thread {i}: {text!r}"
    turns = no_pending_and_sound(w)
    status = {w.index(t): t.status for t in turns}
    assert status == {i: "partial" if i in twice else "complete" for i in ids}, status
    assert all(t.attempts == 1 for t in turns), turns
    stored = {w.index(t): t.text.strip() for t in turns}
    assert stored == {i: half("n", i) if i in twice else fresh(i).strip() for i in ids}
    asked = {i: ["slow", "slow-fresh" if i in twice else "fast"] for i in ids}
    assert dict(w.script.asked) == asked, "a reply was answered more than once"

    # 3. Every thread goes on, with its stored reply in the history.
    await follow_ups_answered(w, ids, history=lambda i: half("n", i) if i in twice else fresh(i))
    assert dict(w.script.asked) == asked, "asked again"
    no_pending_and_sound(w)


async def test_mark_shows_the_saved_text_with_a_note(world: World) -> None:
    """RECOVERY=mark: each frozen reply is edited to its checkpointed text plus the
    interrupted note and stored as partial; the model is not asked again; threads go on."""
    w, ids = world, World.ids(THREADS)
    await crash_mid_answer(w, ids, wait_checkpoint=True)
    w.script.phase = "fast"
    await start(w, "restarted", RECOVERY="mark")
    await until_recovered(w, ids, lambda i, texts: len(texts) == 1 and INTERRUPTED in texts[0])
    assert_no_bare_text(w, ids)
    for i in ids:
        (text,) = w.texts(i)
        assert text.startswith(f"{half('o', i)} \n\n_"), f"{w.platform(i)} thread {i}: {text!r}"
    turns = no_pending_and_sound(w)
    assert {t.status for t in turns} == {"partial"}, turns
    assert all(t.attempts == 0 for t in turns), turns
    assert sorted(t.text.strip() for t in turns) == sorted(half("o", i) for i in ids)
    assert dict(w.script.asked) == {i: ["slow"] for i in ids}, "mark must not call the model"
    assert f"recovery: {len(ids)} unfinished repl(ies) found (RECOVERY=mark)" in w.service.log(2)
    await follow_ups_answered(w, ids, history=lambda i: half("o", i))
    no_pending_and_sound(w)


async def test_a_kill_right_after_a_reply_message_appears_leaves_no_stale_message(
    world: World,
) -> None:
    """Killed as soon as every message is accepted (stored with its pending reply) and
    each reply's first message exists: Slack's "Thinking…" placeholder (posted before the
    model answers), Discord's first message (posted with the first word). After the
    restart each thread must hold exactly one message, the regenerated answer: the first
    message must be known to recovery, or it stays behind as a stale placeholder or an
    unmarked fragment.

    The kill comes as soon as each message's id is stored, which the engine does the moment
    the platform answers the post (TrackedTarget), before any other call. (Once this found
    ids saved only by a 0.1 s poll, so recovery posted a second message.) What remains is
    the platform's round trip itself: a message Discord or Slack created whose answer never
    reached the process is unknown to it."""
    w, ids = world, World.ids(THREADS)
    w.script.phase = "first-word"
    await start(w, "started")
    await asyncio.gather(*(w.side(i).ask(i) for i in ids))

    def accepted_and_shown() -> bool:
        crashed = pending(w)
        if len(crashed) != len(ids) or not all(t.message_ids for t in crashed):
            return False
        return all(
            w.texts(i) == ([f"_{THINKING}_"] if i < THREADS else [words("o", i)[0].strip()])
            for i in ids
        )

    await until(accepted_and_shown, limit=30, what=lambda: w.state(ids))
    w.mark("shown")
    await w.service.kill()
    w.mark("killed")
    w.script.release()
    crashed = pending(w)
    assert len(crashed) == len(ids), crashed
    assert integrity_after_crash(w.service.db, w.tmp / "crash") == "ok"
    saved_ids = {f"{w.platform(w.index(t))}:{w.index(t)}": t.message_ids for t in crashed}
    w.script.phase = "fast"
    await start(w, "restarted")
    regenerated = {i: [f"{REGENERATED}\n\n{fresh(i)}".strip()] for i in ids}

    def answered() -> bool:
        return all(fresh(i).strip() in "".join(w.texts(i)) for i in ids) and not pending(w)

    await until(answered, limit=30, what=lambda: w.state(ids))
    w.mark("recovered")
    left = {
        f"{w.platform(i)}:{i}": [t[:40] for t in w.texts(i)]
        for i in ids
        if w.texts(i) != regenerated[i]
    }
    unsaved = sorted(k for k, v in saved_ids.items() if not v)
    assert not left, (
        f"BUG (recovery): {len(left)} thread(s) keep a stale first message next to the "
        f"regenerated answer: {left!r}. Pending turns with no message ids at the kill: "
        f"{unsaved}. Recovery must edit the message whose id was saved "
        "(bot/engine/checkpoint.py TrackedTarget, recovery.py)."
    )
    assert_no_bare_text(w, ids)
    no_pending_and_sound(w)
