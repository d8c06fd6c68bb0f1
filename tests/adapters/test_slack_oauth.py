"""Many workspaces through the OAuth install, on the whole service (as `gemini-bot run`)
and the fake Slack: three workspaces install the app through /slack/install and Slack's
consent page, a mention in each is answered with that workspace's own token, one
uninstalls (its token is deleted, its mentions go unanswered, the others go on), and the
database never holds a token in plaintext."""

from __future__ import annotations

import html
import re
import sqlite3
from pathlib import Path

import aiohttp
import pytest
from cryptography.fernet import Fernet

from tests.adapters.slack_harness import drain, slack_service
from tests.fakes.gemini import FakeGemini, Reply
from tests.fakes.slack import FakeSlack

pytestmark = pytest.mark.filterwarnings("ignore:BasicAuth is deprecated:DeprecationWarning")

TEAMS = {"T1ACME": "Acme Corp", "T2BETA": "Beta Labs", "T3GAMMA": "Gamma Inc"}
KEY = Fernet.generate_key().decode()


def channel_of(team: str) -> str:
    return f"C{team[1:]}"


async def install(fake: FakeSlack, base: str, team: str) -> None:
    """What an admin's browser does: our install page, Slack's consent, our redirect."""
    async with aiohttp.ClientSession() as browser:
        async with browser.get(f"{base}/slack/install") as r:
            assert r.status == 200
            page = await r.text()
            cookie = r.headers["Set-Cookie"].split(";")[0]  # Secure: not sent over http
        link = html.unescape(re.search(r'href="([^"]+/oauth/v2/authorize[^"]*)"', page)[1])
        async with browser.get(f"{link}&team={team}", allow_redirects=False) as r:
            assert r.status == 302, await r.text()
            back = r.headers["Location"]
        async with browser.get(back, headers={"Cookie": cookie}, allow_redirects=False) as r:
            assert r.status == 200, await r.text()


async def test_three_workspaces_install_talk_and_one_uninstalls(
    fake_gemini: FakeGemini, fake_slack: FakeSlack, tmp_path: Path
) -> None:
    for team, name in TEAMS.items():
        fake_slack.add_workspace(team, name)
        fake_slack.add_channel(channel_of(team), "general", team=team)
    async with slack_service(
        fake_gemini,
        fake_slack,
        tmp_path,
        SLACK_BOT_TOKEN=None,
        SLACK_CLIENT_ID=fake_slack.oauth_client_id,
        SLACK_CLIENT_SECRET=fake_slack.oauth_client_secret,
        ENCRYPTION_KEYS=KEY,
    ) as (service, driver):
        base = f"http://127.0.0.1:{service.http.port}"
        fake_slack.oauth_redirect_uris = [f"{base}/slack/oauth_redirect"]
        for team in TEAMS:
            await install(fake_slack, base, team)
        assert sorted(i.team for i in fake_slack.installs) == sorted(TEAMS)

        async def mention(team: str, text: str) -> str:
            bot = fake_slack.bot_user_of(team)
            ev = driver.message(channel_of(team), "U1ADA", f"<@{bot}> {text}")
            status, _ = await driver.event(driver.as_mention(ev))
            assert status == 200
            await drain(service)
            return str(ev["ts"])

        for team in TEAMS:
            fake_gemini.enqueue(Reply([f"Hello from {team}"]))
            ts = await mention(team, "hi")
            [answer] = fake_slack.bot_messages(channel_of(team), thread_ts=ts)
            assert answer.visible() == f"Hello from {team}"
            assert answer.user == fake_slack.bot_user_of(team)
            posts = [c for c in fake_slack.calls_to("chat.postMessage") if c.status == 200]
            assert posts[-1].team == team  # with the workspace's own token

        # Uninstall Beta: Slack revokes its token and sends both events.
        for envelope in fake_slack.uninstall("T2BETA"):
            status, _ = await driver.post_envelope(envelope)
            assert status == 200
        await drain(service)
        db = sqlite3.connect(tmp_path / "gemini-bot.db")
        try:
            rows = db.execute("SELECT workspace_id, token FROM installations").fetchall()
        finally:
            db.close()
        assert sorted(ws for ws, _ in rows) == ["T1ACME", "T3GAMMA"]
        for _, token in rows:
            assert not token.startswith("xoxb-") and token.startswith("gAAAAA")
        assert all(
            install.bot_token not in (tmp_path / "gemini-bot.db").read_bytes().decode("latin-1")
            for install in fake_slack.installs
        )
        calls_before = len(fake_slack.calls)
        await mention("T2BETA", "still there?")  # nobody answers a workspace without the app
        assert not [c for c in fake_slack.calls[calls_before:] if c.method.startswith("chat.")]
        for team in ("T1ACME", "T3GAMMA"):
            fake_gemini.enqueue(Reply([f"Still here in {team}"]))
            ts = await mention(team, "and now?")
            [answer] = fake_slack.bot_messages(channel_of(team), thread_ts=ts)
            assert answer.visible() == f"Still here in {team}"


def test_the_installation_team_is_the_authorized_one() -> None:
    from adapters.slack.workspaces import installation_team

    connect = {"team_id": "T9OTHER", "authorizations": [{"team_id": "T1ACME"}]}
    assert installation_team(connect) == "T1ACME"  # Slack Connect: ours, not theirs
    assert installation_team({"team_id": "T1ACME"}) == "T1ACME"
    assert installation_team({"authorizations": "odd"}) == ""


def test_oauth_refuses_a_bot_token_or_socket_mode_beside_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from bot.settings import load_settings

    values = {
        "SLACK_CLIENT_ID": "1111.2222",
        "SLACK_CLIENT_SECRET": "s",
        "SLACK_SIGNING_SECRET": "x",
        "ENCRYPTION_KEYS": KEY,
        "SLACK_BOT_TOKEN": "xoxb-1",
        "SLACK_APP_TOKEN": "xapp-1",
    }
    problems = load_settings(_env_file=None, **values).oauth_problems()
    assert [p.split(":")[0] for p in problems] == ["SLACK_APP_TOKEN", "SLACK_BOT_TOKEN"]


async def test_a_late_uninstall_does_not_delete_a_reinstall() -> None:
    from datetime import UTC, datetime, timedelta
    from types import SimpleNamespace

    from adapters.slack.installs import SlackInstalls
    from adapters.slack.uninstall import Uninstalls
    from adapters.slack.workspaces import Workspaces
    from bot.crypto import Cipher
    from bot.types import Installation
    from storage.memory import MemoryStore

    store = MemoryStore()
    installs = SlackInstalls(store, Cipher([KEY]))
    now = datetime.now(UTC)
    await store.save_installation(
        Installation("slack", "T1ACME", "U0BOT1", "B1", "c", installed_at=now)
    )
    workspaces = Workspaces(api_url="http://127.0.0.1:9/api/", max_file_bytes=1, installs=installs)
    adapter = SimpleNamespace(workspaces=workspaces, forget_on_uninstall=False, core=None)
    uninstalls = Uninstalls(adapter)  # type: ignore[arg-type]
    await uninstalls.uninstall("T1ACME", now - timedelta(minutes=5))  # before the reinstall
    assert await store.get_installation("slack", "T1ACME") is not None
    await uninstalls.uninstall("T1ACME", now.replace(microsecond=0))  # this install's own
    assert await store.get_installation("slack", "T1ACME") is None
