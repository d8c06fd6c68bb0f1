"""A replica draining on SIGTERM (a rolling deploy) with another replica up: the messages
it still receives are stored and left to the other replica, which answers them as new
messages. Nobody is told to ask again, and the reply in flight on the draining replica
still finishes there."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import asyncpg

from tests.fakes.gemini import FakeGemini, Recorded, Reply
from tests.fakes.slack import BOT_USER, FakeSlack, SlackDriver
from tests.service_process import ServiceProcess, slack_replica_env, until

REGENERATED = "_Regenerated after a restart._"
RESTARTING = "restarting"


async def test_a_draining_replica_leaves_new_messages_to_another(
    fake_gemini: FakeGemini, fake_slack: FakeSlack, database: str, tmp_path: Path
) -> None:
    hold = asyncio.Event()

    def respond(rec: Recorded) -> Reply:
        text = rec.texts()[-1]
        if "slow" in text:  # stalls until the test lets it go: the drain waits for it
            return Reply(["Slow answer", " at last."], hold_after=1, hold=hold)
        return Reply(["Quick answer."])

    fake_gemini.responder = respond
    env = slack_replica_env(fake_slack, fake_gemini, database)
    draining = ServiceProcess(tmp_path / "a", {**env, "SHUTDOWN_GRACE_SECONDS": "60"})
    other = ServiceProcess(tmp_path / "b", env)
    driver = None
    try:
        await asyncio.gather(draining.start(), other.start())
        driver = SlackDriver(fake_slack, draining.events_url)

        def shown(channel: str, ts: str) -> list[str]:
            return [m.visible() for m in fake_slack.bot_messages(channel, ts)]

        slow = driver.as_mention(driver.message("C1SLOW", "U1ADA", f"<@{BOT_USER}> slow one"))
        assert (await driver.event(slow))[0] == 200
        await until(
            lambda: any("Slow answer" in t for t in shown("C1SLOW", slow["ts"])),
            limit=15,
            what=lambda: f"{shown('C1SLOW', slow['ts'])}\n{draining.log()[-3000:]}",
        )
        assert draining.proc is not None
        draining.proc.terminate()  # SIGTERM: it drains, the slow reply holding it up
        await until(
            lambda: "shutting down" in draining.log(),
            limit=15,
            what=lambda: draining.log()[-3000:],
        )
        # A new thread's mention reaches the draining replica (a load balancer's choice).
        quick = driver.as_mention(driver.message("C2QUICK", "U2BOB", f"<@{BOT_USER}> quick one"))
        assert (await driver.event(quick))[0] == 200
        await until(
            lambda: shown("C2QUICK", quick["ts"]) == ["Quick answer."],
            limit=15,
            what=lambda: f"{shown('C2QUICK', quick['ts'])}\n{other.log()[-3000:]}",
        )
        assert draining.proc.returncode is None  # answered while the first one drained
        hold.set()
        await asyncio.wait_for(draining.proc.wait(), 30)
        assert draining.proc.returncode == 0, draining.log()[-3000:]
        assert shown("C1SLOW", slow["ts"]) == ["Slow answer at last."]
        texts = fake_slack.sent_texts()
        assert not [t for t in texts if RESTARTING in t or REGENERATED in t], texts
        pool = await asyncpg.create_pool(database, min_size=1, max_size=1)
        try:
            rows = await pool.fetch(
                "SELECT c.channel_id, t.status, t.owner, t.parts FROM turns t "
                "JOIN conversations c ON c.id = t.conversation_id WHERE t.role = 'model'"
            )
        finally:
            await pool.close()
        by_channel = {r["channel_id"]: r for r in rows}
        assert {c: r["status"] for c, r in by_channel.items()} == {
            "C1SLOW": "complete",
            "C2QUICK": "complete",
        }
        # The quick reply was answered by the other replica (a name is host:pid:suffix).
        assert by_channel["C2QUICK"]["owner"].split(":")[1] == str(other.pid)
        stored = "".join(p.get("text", "") for p in json.loads(by_channel["C2QUICK"]["parts"]))
        assert stored == "Quick answer."
        assert "answering 1 repl(ies) a draining" in other.log()
    finally:
        hold.set()
        await asyncio.gather(draining.stop(), other.stop())
        if driver is not None:
            await driver.close()
