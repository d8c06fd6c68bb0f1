"""Slack end to end: pacing, 429s, long replies, restarts, files, commands, shortcuts."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tests.adapters.slack_harness import drain, idle, retry_after_ignored, slack_service
from tests.fakes.gemini import FakeGemini, Reply
from tests.fakes.slack import BOT_USER, FakeSlack

C = "C1GEN"
MENTION = f"<@{BOT_USER}>"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 200


@pytest.fixture
async def svc(fake_gemini: FakeGemini, fake_slack: FakeSlack, tmp_path: Path):
    async with slack_service(fake_gemini, fake_slack, tmp_path, ADMIN_USERS="slack:U1ADA") as pair:
        yield pair


async def test_ten_replies_at_once_share_the_budget_losing_nothing(
    svc, fake_slack, fake_gemini
) -> None:
    service, driver = svc
    texts = [f"Answer number {i}: " + "word " * 40 for i in range(10)]
    for t in texts:
        fake_gemini.enqueue(Reply([t[j : j + 20] for j in range(0, len(t), 20)], delay=0.02))
    events = [
        driver.as_mention(driver.message(f"C{i:03d}", "U1ADA", f"{MENTION} q{i}"))
        for i in range(10)
    ]
    await asyncio.gather(*(driver.event(e) for e in events))
    await idle(service, limit=60)
    # The budget goes beyond Slack's documented burst one call at a time to learn the real
    # one: at most one 429 marks the edge, and its Retry-After is honoured.
    limited = [(c.method, round(c.at, 3)) for c in fake_slack.calls if c.status == 429]
    assert len(limited) <= 1, limited
    assert retry_after_ignored(fake_slack) == []
    errors = [
        (c.method, c.error)
        for c in fake_slack.calls
        if c.error and c.method != "users.info" and c.status != 429
    ]
    assert errors == []
    for e in events:
        msgs = fake_slack.bot_messages(e["channel"], e["ts"])
        assert len(msgs) == 1, [(m.ts, m.history) for m in msgs]
        assert msgs[0].visible() != "_Thinking…_", (
            msgs[0].history,
            [
                (c.method, c.args.get("ts"), str(c.args.get("text"))[:20], c.status)
                for c in fake_slack.calls
                if c.args.get("channel") == e["channel"]
            ],
        )
    shown = sorted(fake_slack.bot_messages(e["channel"], e["ts"])[0].visible() for e in events)
    assert shown == sorted(t.strip() for t in texts) or shown == sorted(texts)


async def test_forced_429_slows_down_and_loses_no_text(svc, fake_slack, fake_gemini) -> None:
    service, driver = svc
    fake_slack.forced_429["chat.update"] = 1
    full = "The whole answer arrives even after a 429."
    fake_gemini.enqueue(Reply([full[:10], full[10:]]))
    ev = driver.as_mention(driver.message(C, "U1ADA", f"{MENTION} q"))
    await driver.event(ev)
    await idle(service)
    assert fake_slack.count_429() == 1
    assert fake_slack.bot_messages(C, ev["ts"])[0].visible() == full
    assert service.engine.scheduler.rate_limited == 1


async def test_30000_character_reply_arrives_complete_across_messages(
    svc, fake_slack, fake_gemini
) -> None:
    service, driver = svc
    paragraphs = [f"Paragraph {i}. " + "lorem ipsum dolor sit amet " * 10 for i in range(110)]
    full = "\n\n".join(paragraphs)
    assert len(full) >= 30_000
    fake_gemini.enqueue(Reply([full[i : i + 500] for i in range(0, len(full), 500)]))
    ev = driver.as_mention(driver.message(C, "U1ADA", f"{MENTION} write a lot"))
    await driver.event(ev)
    await idle(service, limit=60)
    msgs = fake_slack.bot_messages(C, ev["ts"])
    assert len(msgs) >= 3
    assert all(len(m.visible()) <= 12_000 for m in msgs)
    joined = "\n\n".join(m.visible() for m in msgs)
    assert joined.split() == full.split()
    assert fake_slack.count_429() == 0


async def test_restart_keeps_the_thread_and_does_not_answer_twice(
    fake_gemini, fake_slack, tmp_path
) -> None:
    async with slack_service(fake_gemini, fake_slack, tmp_path) as (service, driver):
        fake_gemini.enqueue(Reply(["The code word is tulip."]))
        ev = driver.as_mention(driver.message(C, "U1ADA", f"{MENTION} remember a code word"))
        await driver.event(ev, event_id="EvFIRST")
        await idle(service)
    async with slack_service(fake_gemini, fake_slack, tmp_path) as (service, driver):
        await driver.event(ev, event_id="EvFIRST", retry=1)  # redelivered after the restart
        follow = driver.message(C, "U1ADA", "what was it?", thread_ts=ev["ts"])
        await driver.event(follow)
        await idle(service)
    reqs = fake_gemini.generate_requests()
    assert len(reqs) == 2
    assert reqs[-1].texts() == [
        "[Ada] remember a code word",
        "The code word is tulip.",
        "[Ada] what was it?",
    ]


async def test_files_are_downloaded_with_the_token_and_sent(svc, fake_slack, fake_gemini) -> None:
    service, driver = svc
    f1 = fake_slack.add_file("chart.png", PNG, mimetype="image/png")
    f2 = fake_slack.add_file(
        "notes.txt", b"connect notes", mimetype="text/plain", check_file_info=True
    )
    ev = driver.message(C, "U1ADA", f"{MENTION} look", files=[f1, f2])
    await driver.event(ev)
    await idle(service)
    req = fake_gemini.generate_requests()[-1]
    assert req.inline_mimes() == ["image/png", "text/plain"]
    assert fake_slack.calls_to("files.info")  # the Slack Connect file was looked up first


async def test_login_page_instead_of_file_is_reported_not_sent(
    svc, fake_slack, fake_gemini
) -> None:
    service, driver = svc
    fake_slack.files_scope = False
    f = fake_slack.add_file("report.pdf", b"%PDF-1.4 real", mimetype="application/pdf")
    ev = driver.message(C, "U1ADA", f"{MENTION} summarise", files=[f])
    await driver.event(ev)
    await idle(service)
    req = fake_gemini.generate_requests()[-1]
    assert req.inline_mimes() == [] and req.file_uris() == []
    shown = fake_slack.bot_messages(C, ev["ts"])[0].visible()
    assert "Skipped report.pdf: Slack sent a sign-in page instead of the file" in shown
    assert "files:read" in shown


async def test_persona_commands_and_plus_name(svc, fake_slack, fake_gemini) -> None:
    service, driver = svc
    texts = []
    for args, user in [("", "U1ADA"), ("editor", "U2BOB"), ("coder", "U1ADA"), ("a b", "U1ADA")]:
        await driver.command("/persona", args, user=user)
        await drain(service)  # commands run concurrently: one at a time keeps the order
        texts.append(fake_slack.responses[-1]["text"])
    assert len(fake_slack.responses) == 4
    assert "Personas:" in texts[0]
    assert texts[1] == "Only admins can set a channel's default persona."
    assert texts[2] == "New threads in this channel now use the coder persona."
    assert texts[3].startswith("Usage: /persona")
    ev = driver.as_mention(driver.message(C, "U1ADA", f"{MENTION} hello"))
    await driver.event(ev)
    ev2 = driver.as_mention(driver.message(C, "U1ADA", f"{MENTION} +editor fix: me no good"))
    await driver.event(ev2)
    await idle(service)
    by_text = {r.texts()[0]: r for r in fake_gemini.generate_requests()}  # threads run in parallel
    assert "software engineer" in by_text["[Ada] hello"].system_instruction()
    assert "careful editor" in by_text["[Ada] fix: me no good"].system_instruction()


async def test_forget_usage_help_and_unknown(svc, fake_slack, fake_gemini) -> None:
    service, driver = svc
    ev = driver.as_mention(driver.message(C, "U1ADA", f"{MENTION} secret 42"))
    await driver.event(ev)
    await idle(service)
    link = f"https://test.slack.com/archives/{C}/p{ev['ts'].replace('.', '')}"
    texts = []
    for name, args in [
        ("/forget", link),
        ("/forget", ""),
        ("/gemini-usage", ""),
        ("/gemini-help", ""),
    ]:
        await driver.command(name, args)
        await drain(service)
        texts.append(fake_slack.responses[-1]["text"])
    assert len(fake_slack.responses) == 4
    assert texts[0].startswith("Forgotten.")
    assert texts[1].startswith("Usage: /forget")
    assert texts[2].startswith("Today (") and "1 reply" in texts[2]
    assert "/summarize" in texts[3]
    follow = driver.message(C, "U1ADA", f"{MENTION} what was the number?", thread_ts=ev["ts"])
    await driver.event(driver.as_mention(follow))
    await idle(service)
    assert "secret 42" not in " ".join(fake_gemini.generate_requests()[-1].texts())


async def test_summarize_latest_files_and_shortcut(svc, fake_slack, fake_gemini) -> None:
    service, driver = svc
    f = fake_slack.add_file("q3.pdf", b"%PDF-1.4 quarterly numbers", mimetype="application/pdf")
    msg = fake_slack.add_message(C, "U1ADA", "here is the report", files=[f])
    fake_gemini.enqueue(Reply(["Summary: numbers went up."]), Reply(["Short summary."]))
    status, _ = await driver.command("/summarize", "risks")
    assert status == 200
    await idle(service)
    req = fake_gemini.generate_requests()[-1]
    assert "summarise material" in req.system_instruction()
    assert req.texts()[0] == "[Ada] Summarise the attached file(s). Focus on: risks"
    assert req.inline_mimes() == ["application/pdf"]
    assert [m.visible() for m in fake_slack.bot_messages(C, msg.ts)] == [
        "Summary: numbers went up."
    ]
    # The message shortcut does the same for any message; it goes on in the same thread.
    await driver.shortcut("summarize_attachments", msg)
    await idle(service)
    assert len(fake_slack.bot_messages(C, msg.ts)) == 2
    # No files: a clear answer.
    await driver.command("/summarize", "", user="U2BOB")
    await drain(service)
    assert fake_slack.responses[-1]["text"].startswith("I found no files to summarise")


async def test_native_streaming_mode(fake_gemini, fake_slack, tmp_path) -> None:
    async with slack_service(fake_gemini, fake_slack, tmp_path, SLACK_STREAM_MODE="native") as (
        service,
        driver,
    ):
        full = "Streaming natively, chunk by chunk, <!here> safely."
        fake_gemini.enqueue(Reply([full[i : i + 8] for i in range(0, len(full), 8)], delay=0.02))
        ev = driver.as_mention(driver.message(C, "U1ADA", f"{MENTION} stream please"))
        await driver.event(ev)
        await idle(service)
    start = fake_slack.calls_to("chat.startStream")
    assert len(start) == 1
    assert start[0].args["recipient_user_id"] == "U1ADA" and start[0].args["thread_ts"] == ev["ts"]
    assert (
        fake_slack.calls_to("chat.appendStream")
        and len(fake_slack.calls_to("chat.stopStream")) == 1
    )
    assert fake_slack.calls_to("chat.update") == []
    [msg] = fake_slack.bot_messages(C, ev["ts"])
    assert msg.text == full.replace("<!here>", "@\u200bhere")
    assert fake_slack.count_429() == 0


def test_settled_holds_back_unfinished_tokens() -> None:
    from adapters.slack.text import settled

    assert settled("hello <!he", final=False) == "hello "
    assert settled("hello <!here> x", final=False) == "hello @\u200bhere x"
    assert settled("ping @ever", final=False) == "ping "
    assert settled("ping @everyone", final=True) == "ping @\u200beveryone"
    assert settled("a < b", final=False) == "a < b"  # not a mention: shown at once
    assert settled("a <", final=False) == "a "  # could still become <@U…> or <!here>
    assert settled("hi <@W456|bo", final=False) == "hi "
    assert settled("hi <@W456|bob> x", final=False) == "hi @bob x"


async def test_native_streaming_long_reply_spans_messages(
    fake_gemini, fake_slack, tmp_path
) -> None:
    async with slack_service(fake_gemini, fake_slack, tmp_path, SLACK_STREAM_MODE="native") as (
        service,
        driver,
    ):
        full = "\n\n".join(f"Part {i}: " + "streamed words here " * 12 for i in range(100))
        fake_gemini.enqueue(Reply([full[i : i + 700] for i in range(0, len(full), 700)]))
        ev = driver.as_mention(driver.message(C, "U1ADA", f"{MENTION} long stream"))
        await driver.event(ev)
        await idle(service, limit=60)
    msgs = fake_slack.bot_messages(C, ev["ts"])
    assert len(msgs) >= 3
    assert len(fake_slack.calls_to("chat.stopStream")) == len(msgs)
    assert "\n\n".join(m.text for m in msgs).split() == full.split()
    assert fake_slack.count_429() == 0


async def test_assistant_view_status_prompts_and_title(svc, fake_slack, fake_gemini) -> None:
    service, driver = svc
    d = "D0ASSIST"
    root_ts = fake_slack.next_ts()
    started = {
        "type": "assistant_thread_started",
        "assistant_thread": {
            "user_id": "U1ADA",
            "channel_id": d,
            "thread_ts": root_ts,
            "context": {},
        },
        "event_ts": root_ts,
    }
    await driver.event(started)
    fake_gemini.enqueue(Reply(["Here is ", "the plan."], first_delay=0.2))
    msg = driver.message(d, "U1ADA", "Plan my week please", thread_ts=root_ts, channel_type="im")
    await driver.event(msg)
    await idle(service)
    prompts = fake_slack.calls_to("assistant.threads.setSuggestedPrompts")
    assert len(prompts) == 1 and len(prompts[0].args["prompts"]) == 3
    status = fake_slack.calls_to("assistant.threads.setStatus")
    assert status and status[0].args["status"] == "is thinking…"
    assert status[0].args["thread_ts"] == root_ts
    first_post = fake_slack.calls_to("chat.postMessage")[0]
    assert status[0].at < first_post.at  # the status came first, no placeholder
    assert [m.visible() for m in fake_slack.bot_messages(d, root_ts)] == ["Here is the plan."]
    titles = fake_slack.calls_to("assistant.threads.setTitle")
    assert [t.args["title"] for t in titles] == ["Plan my week please"]
    # A second message in the same assistant thread continues it and keeps the title.
    more = driver.message(d, "U1ADA", "and next week?", thread_ts=root_ts, channel_type="im")
    await driver.event(more)
    await idle(service)
    assert len(fake_slack.calls_to("assistant.threads.setTitle")) == 1
    assert fake_gemini.generate_requests()[-1].texts()[0] == "[Ada] Plan my week please"


async def test_a_plus_one_in_a_thread_is_a_reply_not_a_persona(
    svc, fake_slack, fake_gemini
) -> None:
    service, driver = svc
    ev = driver.as_mention(driver.message(C, "U1ADA", f"{MENTION} ship it?"))
    await driver.event(ev)
    await idle(service)
    follow = driver.message(C, "U2BOB", "+1 agreed", thread_ts=ev["ts"])
    await driver.event(follow)
    await idle(service)
    bot = [m.visible() for m in fake_slack.bot_messages(C, ev["ts"])]
    assert not any("persona" in t.lower() for t in bot), bot
    assert fake_gemini.generate_requests()[-1].texts()[-1].endswith("+1 agreed")


async def test_summarize_in_a_channel_the_bot_cannot_read_says_so(
    fake_gemini, fake_slack, tmp_path
) -> None:
    fake_slack.add_channel("C9PRIV", "secret", private=True, members={"U1ADA"})
    async with slack_service(fake_gemini, fake_slack, tmp_path) as (service, driver):
        await driver.command("/summarize", "", channel="C9PRIV")
        await drain(service)
    assert fake_slack.responses[-1]["text"] == (
        "I cannot read this channel's messages (channel_not_found)."
    )


async def test_the_model_never_waits_for_a_placeholder_and_early_text_is_the_message(
    fake_gemini, fake_slack, tmp_path
) -> None:
    # One channel whose chat.postMessage budget allows a post every 2 s: placeholders queue.
    fake_slack.limits["chat.postMessage"] = (0.5, 1, "channel")
    asked: list[float] = []

    def answer(rec):
        asked.append(time.monotonic())
        return Reply([f"Short answer to {rec.texts()[-1].split()[-1]}."])

    fake_gemini.responder = answer
    async with slack_service(fake_gemini, fake_slack, tmp_path) as (service, driver):
        events = [
            driver.as_mention(driver.message("C7CROWD", "U1ADA", f"{MENTION} q{i}"))
            for i in range(3)
        ]
        await asyncio.gather(*(driver.event(e) for e in events))
        await drain(service, limit=60)
    posts = sorted(
        (c for c in fake_slack.calls_to("chat.postMessage") if c.status == 200),
        key=lambda c: c.at,
    )
    assert len(posts) == 3 and len(asked) == 3
    # Every model call started before the channel allowed its second message.
    assert max(asked) < posts[1].at
    for e in events:
        (msg,) = fake_slack.bot_messages(e["channel"], e["ts"])
        assert msg.visible().startswith("Short answer to q")
    # The replies whose placeholder had to wait went out as their answer: one call each.
    waited = [p for p in posts[1:]]
    assert all(str(p.args["text"]).startswith("Short answer") for p in waited)
    assert len(fake_slack.calls_to("chat.update")) <= 1  # only the first reply's edit


async def test_summarize_a_link_to_files_in_a_channel_you_are_not_in_is_refused(
    fake_gemini, fake_slack, tmp_path
) -> None:
    fake_slack.add_channel("C8HR", "hr", members={"U1ADA", "U0BOT"})
    f = fake_slack.add_file("pay.pdf", b"%PDF-1.4 salaries", mimetype="application/pdf")
    msg = fake_slack.add_message("C8HR", "U1ADA", "salaries", files=[f])
    async with slack_service(fake_gemini, fake_slack, tmp_path) as (service, driver):
        link = fake_slack.permalink("C8HR", msg.ts)
        await driver.command("/summarize", link, user="U2BOB", channel="C1GEN")
        await drain(service)
        assert "You are not a member of #hr" in fake_slack.responses[-1]["text"]
        assert fake_gemini.generate_requests() == []
        fake_gemini.enqueue(Reply(["Summary for Ada."]))
        await driver.command("/summarize", link, user="U1ADA", channel="C1GEN")
        await drain(service)
    assert [m.visible() for m in fake_slack.bot_messages("C8HR", msg.ts)] == ["Summary for Ada."]


async def test_assistant_view_shows_tool_activity_as_its_status(
    svc, fake_slack, fake_gemini
) -> None:
    service, driver = svc
    d, root_ts = "D0ASSIST", fake_slack.next_ts()
    started = {
        "type": "assistant_thread_started",
        "assistant_thread": {"user_id": "U1ADA", "channel_id": d, "thread_ts": root_ts},
        "event_ts": root_ts,
    }
    await driver.event(started)
    fake_gemini.enqueue(Reply(["Found ", "it."], first_delay=0.2))
    text = "+researcher what is new?"
    await driver.event(driver.message(d, "U1ADA", text, thread_ts=root_ts, channel_type="im"))
    await idle(service)
    statuses = [c.args["status"] for c in fake_slack.calls_to("assistant.threads.setStatus")]
    assert statuses[:2] == ["is thinking…", "Searching the web…"]
    # The status is Slack's own line: it never became text in the answer.
    assert [m.visible() for m in fake_slack.bot_messages(d, root_ts)] == ["Found it."]
    assert not [t for t in fake_slack.sent_texts() if "Searching" in t]
