"""Socket Mode end to end: slack-sdk's websocket client against the fake's socket."""

from __future__ import annotations

import time
from pathlib import Path

import aiohttp

from tests.adapters.slack_harness import idle, slack_service, until
from tests.fakes.gemini import FakeGemini, Reply
from tests.fakes.slack import APP_TOKEN, BOT_USER, TEAM, FakeSlack

C = "C1GEN"


async def test_socket_mode_events_and_commands(
    fake_gemini: FakeGemini, fake_slack: FakeSlack, tmp_path: Path
) -> None:
    async with slack_service(
        fake_gemini, fake_slack, tmp_path, SLACK_APP_TOKEN=APP_TOKEN, SLACK_SIGNING_SECRET=None
    ) as (service, driver):
        await until(lambda: bool(fake_slack.sockets))
        url = f"http://127.0.0.1:{service.http.port}/healthz"
        async with aiohttp.ClientSession() as http, http.get(url) as r:
            assert r.status == 200
            assert (await r.json())["components"]["slack"] == "connected"
        fake_gemini.enqueue(Reply(["Over the socket."]))
        ev = driver.as_mention(driver.message(C, "U1ADA", f"<@{BOT_USER}> hi"))
        t0 = time.monotonic()
        ack = await fake_slack.push("events_api", driver.envelope(ev))
        assert time.monotonic() - t0 < 3 and ack["envelope_id"]
        await idle(service)
        assert [m.visible() for m in fake_slack.bot_messages(C, ev["ts"])] == ["Over the socket."]
        command = {
            "team_id": TEAM,
            "channel_id": C,
            "user_id": "U1ADA",
            "command": "/gemini-usage",
            "text": "",
            "response_url": f"{fake_slack.base_url}/response/s1",
            "trigger_id": "t1",
            "api_app_id": "A0APP",
        }
        await fake_slack.push("slash_commands", command)
        await until(lambda: bool(fake_slack.responses))
        assert fake_slack.responses[-1]["text"].startswith("Today (")
        # The HTTP route is not mounted in Socket Mode.
        status, _ = await driver.event(ev)
        assert status == 404


async def test_socket_mode_odd_envelopes_log_no_traceback(
    fake_gemini: FakeGemini, fake_slack: FakeSlack, tmp_path: Path, caplog
) -> None:
    async with slack_service(
        fake_gemini, fake_slack, tmp_path, SLACK_APP_TOKEN=APP_TOKEN, SLACK_SIGNING_SECRET=None
    ) as (service, driver):
        await until(lambda: bool(fake_slack.sockets))
        ws = fake_slack.sockets[-1]
        for payload in ([1, 2], 5, None):  # slack_sdk itself cannot read these frames
            await ws.send_json({"envelope_id": "odd", "type": "events_api", "payload": payload})
        await ws.send_str("not json")
        odd_events = [
            {"type": "event_callback", "event": [1]},
            {"type": "event_callback", "event": {"type": "message", "subtype": ["x"]}},
            {"type": "event_callback", "team_id": 5, "event": {"type": "app_mention"}},
            {**driver.envelope({"type": "app_mention", "ts": "1.2.3", "user": "U1ADA"})},
        ]
        for body in odd_events:
            assert (await fake_slack.push("events_api", body))["envelope_id"]
        fake_gemini.enqueue(Reply(["Fine."]))
        ev = driver.as_mention(driver.message(C, "U1ADA", f"<@{BOT_USER}> still ok?"))
        await fake_slack.push("events_api", driver.envelope(ev))
        await idle(service)
        assert [m.visible() for m in fake_slack.bot_messages(C, ev["ts"])] == ["Fine."]
    assert [r.getMessage() for r in caplog.records if r.exc_info] == []
