"""Slack catch-ups and thread summaries, whole service in-process on the fakes: /catchup
reads the window and its threads, links each point, answers only the requester, refuses
with a reason; /summarize <thread link> and the "Summarize thread" shortcut; Retry-After;
the cap; a long answer goes to a DM."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.adapters.slack_harness import drain, slack_service
from tests.catchup_helpers import SLACK_LINK, citing_every, summarising, transcript_lines
from tests.fakes.gemini import FakeGemini, Reply
from tests.fakes.slack import BOT_USER, FakeSlack, Message

C = "C1GEN"


@pytest.fixture
async def svc(fake_gemini: FakeGemini, fake_slack: FakeSlack, tmp_path: Path):
    fake_slack.add_channel(C, "general")
    fake_gemini.responder = summarising
    async with slack_service(fake_gemini, fake_slack, tmp_path) as pair:
        yield pair


def answers(fake: FakeSlack, url: str) -> list[dict[str, Any]]:
    rid = url.rsplit("/", 1)[1]
    return [r for r in fake.responses if r["id"] == rid]


def by_text(fake: FakeSlack) -> dict[str, Message]:
    return {m.text: m for m in fake.messages.values()}


def check_links(fake: FakeSlack, text: str, lines: dict[str, tuple[str, str]]) -> int:
    """Every link in `text` is the permalink of the message its reference named."""
    msgs = by_text(fake)
    links = SLACK_LINK.findall(text)
    for url, label in links:
        _, said = lines[f"m{label}"]
        m = msgs[said.split(" [files:")[0]]
        assert url == fake.permalink(m.channel, m.ts), (label, said)
    return len(links)


async def test_catchup_reads_the_window_and_its_threads_and_links_each_point(
    svc, fake_slack, fake_gemini
) -> None:
    service, driver = svc
    now = time.time()
    [old] = fake_slack.seed(C, count=1, start=now - 5 * 86400, text=lambda i: "old topic")
    fake_slack.seed(C, count=5, start=now - 4 * 86400, step=60, text=lambda i: f"ancient {i}")
    chat = fake_slack.seed(C, count=40, start=now - 36 * 3600, step=600, text=lambda i: f"chat {i}")
    fake_slack.seed(
        C, count=3, start=now - 3600, step=60, thread_ts=old.ts, text=lambda i: f"late {i}"
    )
    fake_slack.seed(
        C, count=5, start=now - 7200, step=60, thread_ts=chat[10].ts, text=lambda i: f"re {i}"
    )
    fake_gemini.responder = citing_every
    await driver.command("/catchup", "2d")
    url = driver.last_response_url
    await drain(service)
    sent = {text for _, text in transcript_lines(fake_gemini.generate_requests()).values()}
    expected = {f"chat {i}" for i in range(40)} | {f"late {i}" for i in range(3)}
    expected |= {f"re {i}" for i in range(5)} | {"old topic"}  # the old thread's first message
    assert sent == expected
    shown = answers(fake_slack, url)
    assert shown[0]["text"] == "Reading #general…" and not shown[0]["replace_original"]
    final = shown[-1]
    assert final["response_type"] == "ephemeral" and final["replace_original"]
    assert final["text"].startswith(
        "*Catch-up on #general, the last 2 days: 49 messages, 2 threads*"
    )
    lines = transcript_lines(fake_gemini.generate_requests())
    assert check_links(fake_slack, final["text"], lines) == 49
    assert final["text"].count("?thread_ts=") == 8  # points from threads link to the reply
    # Nothing was posted in the channel: the answer went to the requester only.
    assert not fake_slack.bot_messages(C)
    await driver.command("/gemini-usage", "")
    await drain(service)
    assert "1 reply" in fake_slack.responses[-1]["text"]


async def test_since_my_last_message(svc, fake_slack, fake_gemini) -> None:
    service, driver = svc
    now = time.time()
    fake_slack.seed(C, count=10, start=now - 7200, step=60, user_cycle=["U2BOB"])
    fake_slack.seed(C, count=1, start=now - 3000, user_cycle=["U1ADA"], text=lambda i: "mine")
    fake_slack.seed(C, count=4, start=now - 600, step=60, user_cycle=["U2BOB"], text=str)
    await driver.command("/catchup", "since my last message")
    await drain(service)
    sent = {t for _, t in transcript_lines(fake_gemini.generate_requests()).values()}
    assert sent == {"0", "1", "2", "3"}
    assert "since your last message (" in fake_slack.responses[-1]["text"]


async def test_refusals_say_why_and_read_nothing(svc, fake_slack, fake_gemini) -> None:
    service, driver = svc
    fake_slack.add_channel("C2TEAM", "team", members={"U1ADA", BOT_USER})
    fake_slack.add_channel("C3OUT", "outside", members={"U1ADA", "U2BOB"})
    fake_slack.add_channel("G4PRIV", "secret", private=True, members={"U1ADA"})
    fake_slack.seed("C2TEAM", count=5, start=time.time() - 600)
    cases = [
        ("C2TEAM", "U2BOB", "", "You are not a member of #team"),
        ("C3OUT", "U1ADA", "", "I am not in #outside. Invite me first: /invite @gemini"),
        ("G4PRIV", "U1ADA", "", "I cannot read that channel. Invite me first"),
        (C, "U1ADA", "soon", "I could not read 'soon'"),
    ]
    for channel, user, since, says in cases:
        await driver.command("/catchup", since, user=user, channel=channel)
        url = driver.last_response_url
        await drain(service)
        [shown] = answers(fake_slack, url)
        assert says in shown["text"] and shown["response_type"] == "ephemeral"
    assert fake_gemini.generate_requests() == []
    assert not fake_slack.calls_to("conversations.history")


async def test_thread_by_link_and_by_shortcut(svc, fake_slack, fake_gemini) -> None:
    service, driver = svc
    now = time.time()
    [root] = fake_slack.seed(C, count=1, start=now - 9000, text=lambda i: "release plan?")
    replies = fake_slack.seed(
        C, count=30, start=now - 8000, step=60, thread_ts=root.ts, text=lambda i: f"reply {i}"
    )
    fake_slack.attach_file(replies[4], "notes.txt", b"ship on friday", "text/plain")
    link = fake_slack.permalink(C, replies[7].ts)
    await driver.command("/summarize", f"{link} risks")
    url = driver.last_response_url
    await drain(service)
    req = fake_gemini.generate_requests()[-1]
    assert "Summarise the thread in #general" in req.texts()[0]
    assert "Pay most attention to: risks." in req.texts()[0]
    assert len(transcript_lines([req])) == 31
    assert req.inline_mimes() == ["text/plain"]  # the small file's bytes went too
    final = answers(fake_slack, url)[-1]
    assert final["text"].startswith("*Summary of the thread in #general: 31 messages*")
    assert check_links(fake_slack, final["text"], transcript_lines([req])) == 3
    # The shortcut on any reply does the same.
    await driver.shortcut("summarize_thread", replies[20], user="U2BOB")
    url = driver.last_response_url
    await drain(service)
    assert len(transcript_lines([fake_gemini.generate_requests()[-1]])) == 31
    assert answers(fake_slack, url)[-1]["text"].startswith("*Summary of the thread")
    # The shortcut on a message outside any thread says so.
    [lone] = fake_slack.seed(C, count=1, start=now - 100)
    await driver.shortcut("summarize_thread", lone)
    await drain(service)
    assert "not in a thread" in fake_slack.responses[-1]["text"]
    # No link and no files: the usage says how to summarise a thread.
    await driver.command("/summarize", "", user="U2BOB")
    await drain(service)
    text = fake_slack.responses[-1]["text"]
    assert text.startswith("I found no files to summarise") and "Summarize thread" in text


async def test_retry_after_is_honoured(svc, fake_slack, fake_gemini) -> None:
    service, driver = svc
    fake_slack.seed(C, count=20, start=time.time() - 3600, step=60)
    fake_slack.forced_429["conversations.history"] = 1
    await driver.command("/catchup", "")
    await drain(service)
    calls = fake_slack.calls_to("conversations.history")
    assert [c.status for c in calls[:2]] == [429, 200]
    assert calls[1].at - calls[0].at >= 0.95  # the fake's Retry-After: 1
    assert "20 messages" in fake_slack.responses[-1]["text"]


async def test_the_cap_is_stated_and_keeps_the_newest(
    fake_gemini, fake_slack, tmp_path: Path
) -> None:
    fake_slack.add_channel(C, "general")
    fake_gemini.responder = summarising
    now = time.time()
    fake_slack.seed(C, count=300, start=now - 3600, step=10, text=lambda i: f"n{i}")
    roots = fake_slack.seed(C, count=2, start=now - 7200, step=10, text=lambda i: f"root {i}")
    for k, (root, replies) in enumerate(zip(roots, (99, 100), strict=True)):  # 100, 101
        fake_slack.seed(C, count=replies, start=now - 7000 + 500 * k, thread_ts=root.ts)
    async with slack_service(fake_gemini, fake_slack, tmp_path, CATCHUP_MAX_MESSAGES=100) as (
        service,
        driver,
    ):
        await driver.command("/catchup", "")
        await drain(service)
        sent = {t for _, t in transcript_lines(fake_gemini.generate_requests()).values()}
        assert sent == {f"n{i}" for i in range(200, 300)}
        text = fake_slack.responses[-1]["text"]
        assert "100 messages" in text
        assert "Only the newest 100 messages of this window were read" in text
        # A thread of exactly the cap is whole; one more message and the note says so.
        finals = []
        for root in roots:
            await driver.command("/summarize", fake_slack.permalink(C, root.ts))
            await drain(service)
            finals.append(answers(fake_slack, driver.last_response_url)[-1]["text"])
        whole, cut = finals
    assert "100 messages" in whole and "Only the" not in whole
    assert "Only the first 100 messages were read" in cut


async def test_a_long_answer_goes_to_a_dm(svc, fake_slack, fake_gemini) -> None:
    service, driver = svc
    fake_slack.seed(C, count=5, start=time.time() - 600, step=60)
    long = "\n".join(f"- point {i} " + "detail " * 12 + "[m1]" for i in range(60))
    fake_gemini.responder = lambda rec: Reply([long])
    await driver.command("/catchup", "", user="U2BOB")
    await drain(service)
    dms = [c for c in fake_slack.calls_to("chat.postMessage") if c.args["channel"] == "U2BOB"]
    assert dms and all(c.status == 200 for c in dms)
    assert "point 59" in dms[-1].args["text"]
    assert "sent it to you in a DM" in fake_slack.responses[-1]["text"]
