"""Replicas draining on SIGTERM (a rolling deploy), as processes on one PostgreSQL database.

While another replica serves, a draining one stores the plain messages it still receives
and leaves their replies to it: answered as new messages (no "regenerated" note), after any
earlier reply of their thread, and nobody is told to ask again. A message that picks a
persona, or one reaching the last replica as it drains, is told the bot is restarting. The
reply in flight on a draining replica still finishes there.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import asyncpg

from tests.fakes.gemini import FakeGemini, Recorded, Reply
from tests.fakes.slack import BOT_USER, FakeSlack, SlackDriver
from tests.service_process import ServiceProcess, slack_replica_env, until

REGENERATED = "_Regenerated after a restart._"
RESTARTING = ":warning: The bot is restarting; please try again in a minute."
MENTION = f"<@{BOT_USER}>"


class Model:
    """Answers by the message: "slow …" stalls after its first chunk until released."""

    def __init__(self, gemini: FakeGemini) -> None:
        self.holds = {"slow one": asyncio.Event(), "slow two": asyncio.Event()}
        self.asked: list[list[str]] = []
        gemini.responder = self

    def __call__(self, rec: Recorded) -> Reply:
        texts = rec.texts()
        self.asked.append(texts)
        last = texts[-1]
        for name, hold in self.holds.items():
            if name in last:
                return Reply([f"Answer to {name}", ", at last."], hold_after=1, hold=hold)
        return Reply([f"Answer to {last.split('] ', 1)[-1]}."])

    def release(self) -> None:
        for hold in self.holds.values():
            hold.set()


class Replicas:
    """Two replicas, the fake Slack seen from outside, and what each thread shows."""

    def __init__(self, fake: FakeSlack, draining: ServiceProcess, other: ServiceProcess) -> None:
        self.fake = fake
        self.draining = draining
        self.other = other
        self.to_draining = SlackDriver(fake, draining.events_url)
        self.to_other = SlackDriver(fake, other.events_url)

    def shown(self, ev: dict[str, Any]) -> list[str]:
        return [m.visible() for m in self.fake.bot_messages(ev["channel"], ev["ts"])]

    async def mention(self, driver: SlackDriver, channel: str, text: str) -> dict[str, Any]:
        ev = driver.as_mention(driver.message(channel, "U1ADA", f"{MENTION} {text}"))
        assert (await driver.event(ev))[0] == 200
        return ev

    async def shows(self, ev: dict[str, Any], want: list[str], why: ServiceProcess) -> None:
        await until(
            lambda: self.shown(ev) == want,
            limit=15,
            what=lambda: f"{self.shown(ev)} != {want}\n{why.log()[-3000:]}",
        )

    async def sigterm(self, replica: ServiceProcess) -> None:
        """SIGTERM, and wait until it drains (a reply in flight holds it there)."""
        assert replica.proc is not None
        replica.proc.terminate()
        await until(lambda: "shutting down" in replica.log(), limit=15, what=replica.log)

    async def aclose(self) -> None:
        await self.to_draining.close()
        await self.to_other.close()


async def model_turns(database: str) -> dict[str, list[tuple[str, str, str]]]:
    """Each channel's model turns: (status, owner, text), in thread order."""
    pool = await asyncpg.create_pool(database, min_size=1, max_size=1)
    try:
        rows = await pool.fetch(
            "SELECT c.channel_id, t.status, t.owner, t.parts FROM turns t JOIN conversations c "
            "ON c.id = t.conversation_id WHERE t.role = 'model' ORDER BY c.id, t.seq"
        )
    finally:
        await pool.close()
    out: dict[str, list[tuple[str, str, str]]] = {}
    for r in rows:
        text = "".join(p.get("text", "") for p in json.loads(r["parts"]))
        out.setdefault(r["channel_id"], []).append((r["status"], r["owner"] or "", text))
    return out


def pid_of(owner: str) -> str:
    """The process id in a replica's name (host:pid:suffix)."""
    return owner.split(":")[-2]


async def test_a_draining_replica_leaves_new_messages_to_another(
    fake_gemini: FakeGemini, fake_slack: FakeSlack, database: str, tmp_path: Path
) -> None:
    model = Model(fake_gemini)
    env = slack_replica_env(fake_slack, fake_gemini, database)
    a = ServiceProcess(tmp_path / "a", {**env, "SHUTDOWN_GRACE_SECONDS": "60"})
    b = ServiceProcess(tmp_path / "b", {**env, "SHUTDOWN_GRACE_SECONDS": "60"})
    try:
        await asyncio.gather(a.start(), b.start())
        r = Replicas(fake_slack, a, b)
        try:
            slow = await r.mention(r.to_draining, "C1SLOW", "slow one")
            await until(lambda: bool(r.shown(slow)), limit=15, what=a.log)
            await r.sigterm(a)
            # A new thread's mention, then a follow-up in the slow thread, reach the
            # draining replica (a load balancer's choice): b answers both.
            quick = await r.mention(r.to_draining, "C2QUICK", "quick one")
            await r.shows(quick, ["Answer to quick one."], b)
            follow = r.to_draining.message("C1SLOW", "U1ADA", "follow-up", thread_ts=slow["ts"])
            assert (await r.to_draining.event(follow))[0] == 200
            # Picking a persona is the thread's turn's to check: told to ask again.
            persona = await r.mention(r.to_draining, "C3PERSONA", "+researcher hi")
            await r.shows(persona, [RESTARTING], a)
            assert a.proc is not None and a.proc.returncode is None  # still draining
            model.holds["slow one"].set()
            await asyncio.wait_for(a.proc.wait(), 30)
            assert a.proc.returncode == 0, a.log()[-3000:]
            await r.shows(slow, ["Answer to slow one, at last.", "Answer to follow-up."], b)
            # The follow-up was asked after the slow answer was whole (its thread's order).
            asked = next(t for t in model.asked if t[-1].endswith("follow-up"))
            assert "Answer to slow one, at last." in asked

            # b alone now: as the last replica drains, a new message is told to ask again.
            slow2 = await r.mention(r.to_other, "C4SLOW", "slow two")
            await until(lambda: bool(r.shown(slow2)), limit=15, what=b.log)
            await r.sigterm(b)
            alone = await r.mention(r.to_other, "C5ALONE", "anyone there?")
            await r.shows(alone, [RESTARTING], b)
            model.holds["slow two"].set()
            assert b.proc is not None
            await asyncio.wait_for(b.proc.wait(), 30)
            await r.shows(slow2, ["Answer to slow two, at last."], b)
        finally:
            await r.aclose()
    finally:
        model.release()
        await asyncio.gather(a.stop(), b.stop())
    texts = fake_slack.sent_texts()
    assert not [t for t in texts if REGENERATED in t], texts
    turns = await model_turns(database)
    assert {c: [(s, t) for s, _o, t in v] for c, v in turns.items()} == {
        "C1SLOW": [
            ("complete", "Answer to slow one, at last."),
            ("complete", "Answer to follow-up."),
        ],
        "C2QUICK": [("complete", "Answer to quick one.")],
        "C4SLOW": [("complete", "Answer to slow two, at last.")],
    }  # nothing stored for the messages told to ask again
    assert pid_of(turns["C1SLOW"][0][1]) == str(a.pid)
    assert pid_of(turns["C1SLOW"][1][1]) == pid_of(turns["C2QUICK"][0][1]) == str(b.pid)
    assert "answering 1 repl(ies) a draining" in b.log()
