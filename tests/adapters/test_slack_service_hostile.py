"""`gemini-bot run` as a subprocess against the fakes: forged and malformed requests, odd
signed payloads, and model text full of mentions. The service's stderr must hold no
traceback, and no text the bot sends to Slack may carry live mention markup."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest

from tests.adapters.slack_harness import until
from tests.adapters.slack_process import SlackServiceProcess
from tests.fakes.gemini import FakeGemini, Recorded, Reply
from tests.fakes.slack import BOT_USER, SIGNING_SECRET, FakeSlack, SlackDriver

MENTION = f"<@{BOT_USER}>"
ODD: list[Any] = [
    None,
    0,
    -1,
    1.5,
    True,
    "",
    "1.2.3",
    "x" * 50_000,
    [],
    ["a"],
    [[1]],
    {},
    {"id": 5},
    {"a": [None]},
]
EVENT_FIELDS = [
    "type",
    "subtype",
    "user",
    "channel",
    "ts",
    "thread_ts",
    "text",
    "team",
    "channel_type",
    "bot_id",
    "bot_profile",
    "files",
    "user_team",
]
FILE_FIELDS = ["size", "name", "id", "url_private_download", "mimetype", "file_access"]
ENVELOPE_FIELDS = ["event", "team_id", "event_id", "authorizations", "api_app_id", "type"]
SHORTCUT_FIELDS = ["team", "user", "channel", "message", "message.ts", "message.files"]
COMMAND_FIELDS = ["user_id", "team_id", "channel_id", "text"]
PINGS = (
    "Hi <@U123> and <@W456|bob>, also <!channel> <!here> <!everyone> "
    "<!subteam^S1|@team> and <!here|here>, <@U9|x> done."
)
SHOWN = (
    "Hi @U123 and @bob, also @\u200bchannel @\u200bhere @\u200beveryone "
    "@\u200bteam and @\u200bhere, @x done."
)


def sign(timestamp: str, body: bytes, secret: str = SIGNING_SECRET) -> str:
    base = f"v0:{timestamp}:".encode() + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


@pytest.fixture
async def fast_slack(fake_slack: FakeSlack) -> FakeSlack:
    # Hundreds of replies in a few seconds: the fake's own limits are not under test here.
    for method in fake_slack.limits:
        fake_slack.limits[method] = (1000.0, 1000, "team")
    return fake_slack


def hostile_requests() -> Iterator[tuple[bytes, dict[str, str], set[int]]]:
    """(body, headers, acceptable statuses): 200 requests, forged, stale or malformed."""
    event = json.dumps({"type": "event_callback", "event": {"type": "app_mention"}}).encode()
    for i in itertools.count():
        now = str(int(time.time()))
        ok = {"X-Slack-Request-Timestamp": now, "X-Slack-Signature": sign(now, event)}
        kind = i % 20
        if kind == 0:
            yield event, {**ok, "X-Slack-Signature": "v0=" + f"{i:064x}"}, {401}
        elif kind == 1:
            old = str(int(time.time()) - 301 - i)
            yield (
                event,
                {"X-Slack-Request-Timestamp": old, "X-Slack-Signature": sign(old, event)},
                {401},
            )
        elif kind == 2:
            soon = str(int(time.time()) + 400 + i)
            yield (
                event,
                {"X-Slack-Request-Timestamp": soon, "X-Slack-Signature": sign(soon, event)},
                {401},
            )
        elif kind == 3:
            bad = ["abc", "", "1e9", "-5", " 12", "0x10", "9" * 40][i % 7]
            yield (
                event,
                {"X-Slack-Request-Timestamp": bad, "X-Slack-Signature": sign(bad, event)},
                {401},
            )
        elif kind == 4:
            yield event, {"X-Slack-Request-Timestamp": now}, {401}
        elif kind == 5:
            yield event, {"X-Slack-Signature": sign(now, event)}, {401}
        elif kind == 6:
            yield event, {**ok, "X-Slack-Signature": ["v1=abc", "garbage", "v0=", ""][i % 4]}, {401}
        elif kind in (7, 8, 9):
            body = [b"not json", b"[1, 2]", b"\xff\xfe", b"{", b'"s"', b"null"][i % 6]
            yield body, {**ok, "X-Slack-Signature": "v0=" + "a" * 64}, {401}
        elif kind in (10, 11, 12, 13, 14):
            body = [b"not json", b"[1, 2]", b"\xff\xfe{}", b"{", b'"s"', b"null", b"{}"][i % 7]
            yield (
                body,
                {"X-Slack-Request-Timestamp": now, "X-Slack-Signature": sign(now, body)},
                {400},
            )
        elif kind in (15, 16):
            body = ["payload=%5B1%5D", "payload=nope", "payload=%7B%7D", "a=b"][i % 4].encode()
            headers = {"X-Slack-Request-Timestamp": now, "X-Slack-Signature": sign(now, body)}
            yield body, {**headers, "Content-Type": "application/x-www-form-urlencoded"}, {400}
        elif kind == 17:
            body = b'{"type": "event_callback", "team_id": ' + [b"5", b"[]", b"{}"][i % 3] + b"}"
            yield (
                body,
                {"X-Slack-Request-Timestamp": now, "X-Slack-Signature": sign(now, body)},
                {400},
            )
        else:
            big = b"{" + b" " * (1024 * 1024) + b"}"
            yield (
                big,
                {"X-Slack-Request-Timestamp": now, "X-Slack-Signature": sign(now, big)},
                {413},
            )


async def test_200_forged_or_malformed_requests_get_4xx_and_no_traceback(
    fake_gemini: FakeGemini, fast_slack: FakeSlack, tmp_path: Path
) -> None:
    async with (
        SlackServiceProcess(fake_gemini, fast_slack, tmp_path) as service,
        aiohttp.ClientSession() as http,
    ):
        wrong = []
        for body, headers, allowed in itertools.islice(hostile_requests(), 200):
            headers = {"Content-Type": "application/json", **headers}
            async with http.post(service.events_url, data=body, headers=headers) as r:
                if r.status not in allowed:
                    wrong.append((r.status, allowed, body[:40], headers))
        assert wrong == []
        assert fake_gemini.generate_requests() == []
    assert service.stderr().count("Traceback") == 0, service.stderr()[-3000:]


def _set(obj: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    head, _, rest = path.partition(".")
    if rest:
        inner = obj[head] if isinstance(obj.get(head), dict) else {}
        return {**obj, head: _set(dict(inner), rest, value)}
    return {**obj, head: value}


def _without(obj: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k != key}


def odd_payloads(fake: FakeSlack, driver: SlackDriver) -> Iterator[tuple[str, str]]:
    """(body, content type): events, files, envelopes, shortcuts and commands, each with one
    field made odd (every odd value in turn) or missing."""
    n = itertools.count()

    def event() -> dict[str, Any]:
        i = next(n)
        channel = f"C{i:05d}"
        root = fake.add_message(channel, "U2BOB", "root")  # a thread with a message in it
        f = fake.add_file(f"f{i}.txt", b"file text", mimetype="text/plain")
        return {
            "type": "app_mention",
            "channel": channel,
            "user": "U1ADA",
            "text": f"{MENTION} hi <@U2BOB> &amp;lt;",
            "ts": fake.next_ts(),
            "thread_ts": root.ts,
            "team": f"T{i:05d}",
            "files": [f],
        }

    def envelope(ev: Any) -> str:
        return json.dumps({**driver.envelope({}), "event": ev})

    for field in EVENT_FIELDS:
        for value in ODD:
            yield envelope(_set(event(), field, value)), "application/json"
        yield envelope(_without(event(), field)), "application/json"
    for field in FILE_FIELDS:
        for value in ODD:
            ev = event()
            yield envelope({**ev, "files": [{**ev["files"][0], field: value}]}), "application/json"
        ev = event()
        yield envelope({**ev, "files": [_without(ev["files"][0], field)]}), "application/json"
    for value in ODD:  # a file list holding something that is not a file object
        yield envelope({**event(), "files": [value]}), "application/json"
    for value in ODD:  # a nested message (as message_changed carries) of odd shape
        yield envelope({**event(), "message": value}), "application/json"
    for field in ENVELOPE_FIELDS:
        for value in ODD:
            yield json.dumps({**driver.envelope(event()), field: value}), "application/json"
        yield json.dumps(_without(driver.envelope(event()), field)), "application/json"
    for field in SHORTCUT_FIELDS:
        for value in ODD:
            ev = event()
            payload = {
                "type": "message_action",
                "callback_id": ["forget_thread", "summarize_attachments"][len(field) % 2],
                "team": {"id": "T0TEAM"},
                "user": {"id": "U1ADA"},
                "channel": {"id": ev["channel"]},
                "message": {"ts": ev["ts"], "files": ev["files"]},
                "response_url": f"{fake.base_url}/response/odd",
            }
            form = urlencode({"payload": json.dumps(_set(payload, field, value))})
            yield form, "application/x-www-form-urlencoded"
    for field in COMMAND_FIELDS:
        for value in ("", "x" * 5000, "<@U1>", "&amp;"):
            form = {
                "command": "/summarize",
                "team_id": "T0TEAM",
                "channel_id": "C1GEN",
                "user_id": "U1ADA",
                "text": "",
                "response_url": f"{fake.base_url}/response/odd",
                field: value,
            }
            yield urlencode(form), "application/x-www-form-urlencoded"


async def test_500_odd_signed_payloads_no_traceback_and_still_answering(
    fake_gemini: FakeGemini, fast_slack: FakeSlack, tmp_path: Path
) -> None:
    async with SlackServiceProcess(fake_gemini, fast_slack, tmp_path) as service:
        driver = SlackDriver(fast_slack, service.events_url)
        try:
            payloads = list(itertools.islice(odd_payloads(fast_slack, driver), 500))
            assert len(payloads) == 500
            statuses = [(await driver.post(b, t))[0] for b, t in payloads]
            # 404: Bolt's answer to a well-formed payload of a type nothing listens to.
            assert set(statuses) <= {200, 400, 404}, sorted(set(statuses))
            # A normal mention is still answered (a fresh channel: its own rate budget).
            ev = driver.as_mention(driver.message("C9NORMAL", "U1ADA", f"{MENTION} still there?"))
            assert (await driver.event(ev))[0] == 200

            def answered() -> bool:
                msgs = fast_slack.bot_messages("C9NORMAL", ev["ts"])
                return bool(msgs) and "still there?" in msgs[0].visible()

            await until(answered, limit=60)
        finally:
            await driver.close()
    assert service.stderr().count("Traceback") == 0, service.stderr()[-5000:]


@pytest.mark.parametrize("mode", ["edit", "native"])
async def test_50_replies_full_of_mentions_ping_nobody(
    fake_gemini: FakeGemini, fast_slack: FakeSlack, tmp_path: Path, mode: str
) -> None:
    def reply(rec: Recorded) -> Reply:
        size = 1 + len(rec.texts()[-1]) % 11  # 1..11: the chunks split the tokens everywhere
        return Reply([PINGS[i : i + size] for i in range(0, len(PINGS), size)], delay=0.002)

    fake_gemini.responder = reply
    async with SlackServiceProcess(
        fake_gemini, fast_slack, tmp_path, SLACK_STREAM_MODE=mode
    ) as service:
        driver = SlackDriver(fast_slack, service.events_url)
        try:
            events = []
            for i in range(50):
                text = f"{MENTION} ping {'x' * i}"
                ev = driver.as_mention(driver.message(f"C{i:03d}", "U1ADA", text))
                ev["team"] = f"T{i:03d}"  # each its own workspace budget: fast
                events.append(ev)
                assert (await driver.event(ev))[0] == 200

            def shown(ev: dict[str, Any]) -> str:
                msgs = fast_slack.bot_messages(ev["channel"], ev["ts"])
                if not msgs:
                    return ""
                return msgs[0].visible() if mode == "edit" else msgs[0].text

            await until(lambda: all(shown(ev) == SHOWN for ev in events), limit=90)
        finally:
            await driver.close()
    texts = fast_slack.sent_texts()
    assert len(texts) >= 100
    assert [t for t in texts if "<@" in t or "<!" in t] == []
    assert service.stderr().count("Traceback") == 0
