"""Slack end to end: real slack-bolt, slack-sdk and google-genai against the fakes."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.adapters.slack_harness import idle, slack_service
from tests.fakes.gemini import FakeGemini, Reply
from tests.fakes.slack import BOT_USER, FakeSlack

C = "C1GEN"
MENTION = f"<@{BOT_USER}>"


@pytest.fixture
async def svc(fake_gemini: FakeGemini, fake_slack: FakeSlack, tmp_path: Path):
    async with slack_service(fake_gemini, fake_slack, tmp_path) as pair:
        yield pair


async def test_mention_is_answered_in_a_thread_and_the_thread_continues(
    svc, fake_slack, fake_gemini
) -> None:
    service, driver = svc
    fake_gemini.enqueue(Reply(["Hello ", "Ada!"]), Reply(["Still here."]))
    ev = driver.message(C, "U1ADA", f"{MENTION} hi there")
    status, _ = await driver.event(driver.as_mention(ev))
    assert status == 200
    await driver.event(ev)  # the same message as a `message` event
    await idle(service)
    replies = fake_slack.bot_messages(C, thread_ts=ev["ts"])
    assert [m.visible() for m in replies] == ["Hello Ada!"]
    assert fake_gemini.generate_requests()[-1].texts() == ["[Ada] hi there"]
    # A follow-up in the thread without a mention continues the conversation.
    follow = driver.message(C, "U2BOB", "and what about me?", thread_ts=ev["ts"])
    await driver.event(follow)
    await idle(service)
    assert [m.visible() for m in fake_slack.bot_messages(C, thread_ts=ev["ts"])] == [
        "Hello Ada!",
        "Still here.",
    ]
    assert fake_gemini.generate_requests()[-1].texts() == [
        "[Ada] hi there",
        "Hello Ada!",
        "[Bob Builder] and what about me?",
    ]
    assert len(fake_gemini.generate_requests()) == 2


async def test_unrelated_channel_messages_and_bot_messages_are_ignored(
    svc, fake_slack, fake_gemini
) -> None:
    service, driver = svc
    await driver.event(driver.message(C, "U1ADA", "just chatting"))
    other = driver.message(C, "U1ADA", "not for the bot", thread_ts="1690000000.000100")
    await driver.event(other)
    bot = driver.message(C, "U2BOB", f"{MENTION} hi")
    bot["bot_id"] = "B0OTHER"
    await driver.event(bot)
    edited = driver.message(C, "U1ADA", f"{MENTION} hi")
    edited["subtype"] = "message_changed"
    await driver.event(edited)
    await idle(service)
    assert fake_gemini.generate_requests() == []


async def test_same_event_three_times_is_answered_once(svc, fake_slack, fake_gemini) -> None:
    service, driver = svc
    ev = driver.as_mention(driver.message(C, "U1ADA", f"{MENTION} once please"))
    for retry in (None, 1, 2):
        status, _ = await driver.event(ev, event_id="EvSAME", retry=retry)
        assert status == 200
    await idle(service)
    assert len(fake_gemini.generate_requests()) == 1
    assert len(fake_slack.bot_messages(C, thread_ts=ev["ts"])) == 1


async def test_forged_and_stale_requests_get_401(svc, fake_slack, fake_gemini) -> None:
    service, driver = svc
    ev = driver.as_mention(driver.message(C, "U1ADA", f"{MENTION} hi"))
    status, _ = await driver.event(ev, forge=True)
    assert status == 401
    status, _ = await driver.event(ev, timestamp=int(time.time()) - 600)
    assert status == 401
    await idle(service)
    assert fake_gemini.generate_requests() == []


async def test_dm_each_top_level_message_is_its_own_conversation(
    svc, fake_slack, fake_gemini
) -> None:
    service, driver = svc
    d = "D0DM"
    first = driver.message(d, "U1ADA", "hello in a DM", channel_type="im")
    await driver.event(first)
    await idle(service)
    second = driver.message(d, "U1ADA", "new topic", channel_type="im")
    await driver.event(second)
    await idle(service)
    assert len(fake_slack.bot_messages(d, thread_ts=first["ts"])) == 1
    assert len(fake_slack.bot_messages(d, thread_ts=second["ts"])) == 1
    assert fake_gemini.generate_requests()[-1].texts() == ["[Ada] new topic"]


async def test_mention_in_a_thread_reads_the_thread_first(svc, fake_slack, fake_gemini) -> None:
    service, driver = svc
    root = driver.message(C, "U2BOB", "Should we ship on Friday?")
    driver.message(C, "U1ADA", "I think Monday is safer", thread_ts=root["ts"])
    ask = driver.message(C, "U1ADA", f"{MENTION} what do you think?", thread_ts=root["ts"])
    await driver.event(driver.as_mention(ask))
    await idle(service)
    sent = fake_gemini.generate_requests()[-1].texts()[0]
    assert "Bob Builder: Should we ship on Friday?" in sent
    assert "Ada: I think Monday is safer" in sent
    assert sent.endswith("what do you think?")
    assert len(fake_slack.bot_messages(C, thread_ts=root["ts"])) == 1


async def test_crowd_mentions_in_model_output_are_neutralised(svc, fake_slack, fake_gemini) -> None:
    service, driver = svc
    fake_gemini.enqueue(
        Reply(["Hey <!channel> and <!here|here> and <!subteam^S1|@devs> and @everyone"])
    )
    ev = driver.message(C, "U1ADA", f"{MENTION} ping everyone")
    await driver.event(driver.as_mention(ev))
    await idle(service)
    for call in fake_slack.calls_to("chat.update") + fake_slack.calls_to("chat.postMessage"):
        payload = str(call.args.get("text")) + str(call.args.get("blocks"))
        assert (
            "<!channel>" not in payload and "<!here" not in payload and "<!subteam" not in payload
        )
        assert "@everyone" not in payload
    assert "@\u200bchannel" in fake_slack.bot_messages(C, ev["ts"])[0].visible()
