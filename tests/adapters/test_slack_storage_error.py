"""A storage error in the middle of a turn (`gemini-bot run` as a subprocess): the user gets
a note, never a frozen placeholder, and the service logs the error and keeps serving.

The error is the one production meets: another process holds the database's write lock
longer than the busy timeout, so SQLite answers "database is locked".
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.adapters.slack_harness import until
from tests.adapters.slack_process import SlackServiceProcess
from tests.fakes.gemini import FakeGemini, Reply
from tests.fakes.slack import BOT_USER, FakeSlack, SlackDriver

MENTION = f"<@{BOT_USER}>"
NOTE = "Something went wrong on our side"


@contextmanager
def write_locked(db: Path) -> Iterator[None]:
    """Hold the database's write lock, as a stuck second writer would."""
    conn = sqlite3.connect(db, isolation_level=None, timeout=10)
    try:
        conn.execute("BEGIN IMMEDIATE")
        yield
        conn.execute("ROLLBACK")
    finally:
        conn.close()


async def test_a_locked_database_mid_turn_gives_a_note_not_a_frozen_placeholder(
    fake_gemini: FakeGemini, fake_slack: FakeSlack, tmp_path: Path
) -> None:
    async with SlackServiceProcess(fake_gemini, fake_slack, tmp_path) as service:
        driver = SlackDriver(fake_slack, service.events_url)
        db = tmp_path / "gemini-bot.db"
        try:
            # 1. Locked before the message can be stored: the placeholder becomes the note.
            ev = driver.as_mention(driver.message("C1", "U1ADA", f"{MENTION} first"))
            with write_locked(db):
                assert (await driver.event(ev))[0] == 200

                def noted() -> bool:
                    msgs = fake_slack.bot_messages("C1", ev["ts"])
                    return len(msgs) == 1 and NOTE in msgs[0].visible()

                await until(noted, limit=30)
            # 2. Locked while the reply streams: the answer stays, a note follows it.
            fake_gemini.enqueue(Reply([f"w{i} " for i in range(30)], delay=0.05))
            ev2 = driver.as_mention(driver.message("C2", "U1ADA", f"{MENTION} second"))
            assert (await driver.event(ev2))[0] == 200
            await until(lambda: "w3" in "".join(m.visible() for m in fake_slack.bot_messages("C2")))
            with write_locked(db):

                def answered_and_noted() -> bool:
                    shown = [m.visible() for m in fake_slack.bot_messages("C2", ev2["ts"])]
                    return any("w29" in s for s in shown) and any(NOTE in s for s in shown)

                await until(answered_and_noted, limit=30)
            # 3. Still serving once the lock is gone.
            ev3 = driver.as_mention(driver.message("C3", "U1ADA", f"{MENTION} third"))
            assert (await driver.event(ev3))[0] == 200

            def third() -> bool:
                msgs = fake_slack.bot_messages("C3", ev3["ts"])
                return bool(msgs) and "echo" in msgs[0].visible() and "third" in msgs[0].visible()

            await until(third, limit=30)
            assert all("Thinking" not in m.visible() for m in fake_slack.bot_messages("C1"))
        finally:
            await driver.close()
    err = service.stderr()
    assert "database is locked" in err and "Traceback" in err  # logged with its traceback
    await asyncio.sleep(0)
