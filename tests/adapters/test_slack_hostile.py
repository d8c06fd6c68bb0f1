"""Slack, in-process: hostile or odd input, model text that would ping, parsing once,
name lookups that fail, and draining instead of waiting for quiet."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from pathlib import Path
from urllib.parse import urlencode

import pytest

from tests.adapters.slack_harness import drain, idle, slack_service
from tests.fakes.gemini import FakeGemini, Reply
from tests.fakes.slack import BOT_USER, SIGNING_SECRET, FakeSlack

C = "C1GEN"
MENTION = f"<@{BOT_USER}>"
PINGS = (
    "Hi <@U123> and <@W456|bob>, also <!channel> <!here> <!everyone> "
    "<!subteam^S1|@team> and <!here|here> done."
)


@pytest.fixture
async def svc(fake_gemini: FakeGemini, fake_slack: FakeSlack, tmp_path: Path):
    async with slack_service(fake_gemini, fake_slack, tmp_path) as pair:
        yield pair


def sign(timestamp: str, body: bytes) -> str:
    base = f"v0:{timestamp}:".encode() + body
    return "v0=" + hmac.new(SIGNING_SECRET.encode(), base, hashlib.sha256).hexdigest()


def tracebacks(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


async def test_unsigned_and_malformed_requests_never_reach_bolt(svc, caplog) -> None:
    service, driver = svc
    now = str(int(time.time()))
    unsigned = [
        ("not json at all", {}),
        ("[1, 2, 3]", {}),
        ('{"type": "event_callback"}', {"X-Slack-Request-Timestamp": "soon"}),
        ('{"type": "event_callback"}', {"X-Slack-Request-Timestamp": "1e3"}),
        ("{}", {"X-Slack-Signature": "v0=\u00e9"}),
    ]
    for body, headers in unsigned:
        status, _ = await driver.post(body, "application/json", headers=headers, forge=True)
        assert status == 401, body
    bare = await driver.session.post(driver.url, data=b"[]")  # no Slack headers at all
    assert bare.status == 401
    stale = int(time.time()) - 301
    assert (await driver.post("{}", "application/json", timestamp=stale))[0] == 401
    for body in ("not json", "[1]", '"text"', "{bad", "{}", '{"type": 5}'):
        status, _ = await driver.post(body, "application/json")
        assert status == 400, body
    raw = b'{"type": "\xff"}'  # not UTF-8, correctly signed
    headers = {"X-Slack-Request-Timestamp": now, "X-Slack-Signature": sign(now, raw)}
    async with driver.session.post(driver.url, data=raw, headers=headers) as r:
        assert r.status == 400
    form = await driver.post("payload=%5B1%5D", "application/x-www-form-urlencoded")
    assert form[0] == 400
    big = "x" * (1024 * 1024 + 1)
    assert (await driver.post(big, "application/json"))[0] == 413

    async def chunks():  # no Content-Length: the limit holds while reading
        for _ in range(20):
            yield b"x" * 65536

    h = {"X-Slack-Request-Timestamp": now, "X-Slack-Signature": "v0=" + "0" * 64}
    async with driver.session.post(driver.url, data=chunks(), headers=h) as r:
        assert r.status == 413
    await drain(service)
    assert tracebacks(caplog) == []


async def test_odd_signed_events_are_dropped_once_or_noted(svc, fake_slack, caplog) -> None:
    service, driver = svc
    ts = fake_slack.next_ts()
    base = {"type": "app_mention", "channel": C, "user": "U1ADA", "text": f"{MENTION} hi"}
    odd = {
        "EvSUBTYPE": {**base, "ts": ts, "subtype": ["file_share"]},
        "EvTS": {**base, "ts": "1.2.3", "thread_ts": "1.2.3"},
        "EvTHREAD": {**base, "ts": ts, "thread_ts": "1700000000.1.2"},
        "EvUSER": {**base, "ts": ts, "user": {"id": "U1ADA"}},
        "EvTEXT": {**base, "ts": ts, "text": ["hi"]},
    }
    # Nulls are a shape Slack uses (no user: not a person's message): ignored, not warned.
    nulls = {"type": "app_mention", "channel": None, "user": None, "ts": None, "text": None}
    for event_id, event in {**odd, "EvNULLS": nulls}.items():
        status, _ = await driver.event(event, event_id=event_id)
        assert status == 200, event_id
    await drain(service)
    assert tracebacks(caplog) == []
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    for event_id in odd:
        assert sum(event_id in w for w in warned) == 1, (event_id, warned)
    assert not any("EvNULLS" in w for w in warned)
    assert fake_slack.bot_messages(C) == []


async def test_bad_file_size_is_a_note_and_the_rest_is_answered(
    svc, fake_slack, fake_gemini, caplog
) -> None:
    service, driver = svc
    good = fake_slack.add_file("notes.txt", b"real notes", mimetype="text/plain")
    bad = {**fake_slack.add_file("big.bin", b"x", mimetype="text/plain"), "size": "huge"}
    ev = driver.message(C, "U1ADA", f"{MENTION} read these", files=[bad, good])
    await driver.event(ev)
    await drain(service)
    assert tracebacks(caplog) == []
    assert fake_gemini.generate_requests()[-1].inline_mimes() == ["text/plain"]
    [msg] = fake_slack.bot_messages(C, ev["ts"])
    assert "Skipped big.bin: Slack described this file in a way I cannot read" in msg.visible()


async def test_odd_commands_and_shortcuts_get_a_short_note(svc, fake_slack, caplog) -> None:
    service, driver = svc

    form = {"command": "/gemini-usage", "text": "", "team_id": "T0TEAM", "channel_id": C}
    form["response_url"] = f"{fake_slack.base_url}/response/odd1"  # no user_id
    status, _ = await driver.post(urlencode(form), "application/x-www-form-urlencoded")
    assert status == 200
    payload = {
        "type": "message_action",
        "callback_id": "forget_thread",
        "team": {"id": "T0TEAM"},
        "user": {"id": "U1ADA"},
        "channel": {"id": C},
        "message": {"ts": "not-a-ts"},
        "response_url": f"{fake_slack.base_url}/response/odd2",
    }
    body = urlencode({"payload": json.dumps(payload)})
    assert (await driver.post(body, "application/x-www-form-urlencoded"))[0] == 200
    await drain(service)
    assert tracebacks(caplog) == []
    assert [r["text"] for r in fake_slack.responses] == [
        "Sorry, I could not read that request from Slack. Please try again."
    ] * 2


@pytest.mark.parametrize("mode", ["edit", "native"])
async def test_model_mentions_ping_nobody(fake_gemini, fake_slack, tmp_path, mode: str) -> None:
    async with slack_service(fake_gemini, fake_slack, tmp_path, SLACK_STREAM_MODE=mode) as (
        service,
        driver,
    ):
        for size in (1, 3, 7, 500):  # every split point, then all at once
            chunks = [PINGS[i : i + size] for i in range(0, len(PINGS), size)]
            fake_gemini.enqueue(Reply(chunks, delay=0.001))
            ev = driver.as_mention(driver.message(C, "U1ADA", f"{MENTION} ping {size}"))
            await driver.event(ev)
            await idle(service)
            [msg] = fake_slack.bot_messages(C, ev["ts"])
            shown = msg.visible() if mode == "edit" else msg.text
            assert shown == (
                "Hi @U123 and @bob, also @\u200bchannel @\u200bhere @\u200beveryone "
                "@\u200bteam and @\u200bhere done."
            )
    texts = fake_slack.sent_texts()
    assert texts and [t for t in texts if "<@" in t or "<!" in t] == []


async def test_persona_prefix_keeps_names_and_decodes_entities_once(
    svc, fake_slack, fake_gemini
) -> None:
    service, driver = svc
    text = f"{MENTION} +coder ask <@U2BOB> why &amp;lt;b&amp;gt; shows as &lt;b&gt;"
    await driver.event(driver.as_mention(driver.message(C, "U1ADA", text)))
    await drain(service)
    req = fake_gemini.generate_requests()[-1]
    assert req.texts() == ["[Ada] ask @Bob Builder why &lt;b&gt; shows as <b>"]
    assert "software engineer" in req.system_instruction()  # the coder persona


async def test_failed_name_lookup_is_logged_and_not_kept(
    svc, fake_slack, fake_gemini, caplog
) -> None:
    service, driver = svc
    [slack] = service.adapters
    slack.names.retry_s = 0.0  # retry at once, not in 5 min
    fake_slack.forced_429["users.info"] = 1
    first = driver.as_mention(driver.message(C, "U1ADA", f"{MENTION} one"))
    await driver.event(first)
    await drain(service)
    assert any(
        r.levelno == logging.WARNING and "users.info" in r.getMessage() for r in caplog.records
    )
    second = driver.as_mention(driver.message(C, "U1ADA", f"{MENTION} two"))
    await driver.event(second)
    await drain(service)
    assert [r.texts()[0] for r in fake_gemini.generate_requests()] == [
        "[U1ADA] one",
        "[Ada] two",
    ]


async def test_idle_waits_for_slow_command_work(svc, fake_slack) -> None:
    service, driver = svc
    fake_slack.delays["conversations.history"] = 0.6  # longer than any quiet window
    status, _ = await driver.command("/summarize", "", user="U2BOB")
    assert status == 200
    await idle(service)
    assert [r["text"][:30] for r in fake_slack.responses] == ["I found no files to summarise."]
