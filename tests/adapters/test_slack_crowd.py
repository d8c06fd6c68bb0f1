"""Slack under a crowd: no placeholder when the workspace's chat.update budget cannot spare
its edit, and a post that waited for its channel's budget carries the newest text."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from adapters.slack.target import PLACEHOLDER
from tests.adapters.slack_harness import idle, retry_after_ignored, slack_service
from tests.fakes.gemini import FakeGemini, Reply
from tests.fakes.slack import BOT_USER, FakeSlack

MENTION = f"<@{BOT_USER}>"


@pytest.fixture
async def svc(fake_gemini: FakeGemini, fake_slack: FakeSlack, tmp_path: Path):
    async with slack_service(fake_gemini, fake_slack, tmp_path) as pair:
        yield pair


def answer(i: int) -> str:
    return f"Answer {i}: " + "word " * 30


async def test_a_lone_reply_shows_the_placeholder_first(svc, fake_slack, fake_gemini) -> None:
    service, driver = svc
    text = answer(0)
    fake_gemini.enqueue(Reply([text[:20], text[20:]], delay=0.2))
    ev = driver.as_mention(driver.message("C000", "U1ADA", f"{MENTION} q"))
    await driver.event(ev)
    await idle(service)
    posts = [c for c in fake_slack.calls if c.method == "chat.postMessage" and c.status == 200]
    assert posts[0].args["text"] == PLACEHOLDER
    assert fake_slack.bot_messages("C000", ev["ts"])[0].visible().strip() == text.strip()


async def test_a_crowd_skips_placeholders_its_update_budget_cannot_pay_for(
    svc, fake_slack, fake_gemini
) -> None:
    # 20 mentions at once in 20 channels of one workspace: each placeholder would need a
    # chat.update for its first text out of a budget of 5 (+ what probing finds), which
    # the 20 finals need. So most replies post their first text as the message.
    service, driver = svc
    for i in range(20):
        text = answer(i)
        fake_gemini.enqueue(Reply([text[j : j + 30] for j in range(0, len(text), 30)], delay=0.05))
    events = [
        driver.as_mention(driver.message(f"C{i:03d}", "U1ADA", f"{MENTION} q{i}"))
        for i in range(20)
    ]
    await asyncio.gather(*(driver.event(e) for e in events))
    await idle(service, limit=60)
    ok_posts = [c for c in fake_slack.calls if c.method == "chat.postMessage" and c.status == 200]
    placeholders = [c for c in ok_posts if c.args["text"] == PLACEHOLDER]
    assert len(placeholders) <= 8, len(placeholders)
    assert len(ok_posts) == 20  # one message per reply, placeholder or first text
    assert not service.engine.scheduler.promised  # every placeholder's edit was made
    shown = sorted(
        fake_slack.bot_messages(e["channel"], e["ts"])[0].visible().strip() for e in events
    )
    assert shown == sorted(answer(i).strip() for i in range(20))
    assert retry_after_ignored(fake_slack) == []


async def test_a_post_that_waited_for_its_channel_carries_the_newest_text(
    svc, fake_slack, fake_gemini
) -> None:
    # One post a second in the channel, no burst: the second and third replies' messages
    # can only go out 1 s and 2 s later, by which time their answers are complete. Each
    # is then one chat.postMessage with the whole answer, and no chat.update.
    fake_slack.limits["chat.postMessage"] = (1.0, 1, "channel")
    service, driver = svc
    for i in range(3):
        fake_gemini.enqueue(Reply([answer(i)[:15], answer(i)[15:]], delay=0.05))
    events = [
        driver.as_mention(driver.message("C000", "U1ADA", f"{MENTION} q{i}")) for i in range(3)
    ]
    for e in events:
        await driver.event(e)
    await idle(service, limit=30)
    for e in events:
        msgs = fake_slack.bot_messages("C000", e["ts"])
        assert len(msgs) == 1
        assert msgs[0].visible().strip() in {answer(i).strip() for i in range(3)}
    late = [e for e in events if len(fake_slack.bot_messages("C000", e["ts"])[0].history) == 1]
    # At least the last reply's message was posted complete and never edited.
    assert len(late) >= 1
    assert retry_after_ignored(fake_slack) == []
