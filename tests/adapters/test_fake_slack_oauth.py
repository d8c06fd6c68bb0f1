"""The fake Slack's workspaces and OAuth v2 install, driven by the real slack-sdk client and
by a real slack-bolt AsyncApp with its OAuth flow: the consent redirect, oauth.v2.access
(Basic auth or form credentials, one-time codes, redirect_uri), tokens bound to their
workspace, auth.test, revocation, the uninstall events and the driver's envelopes."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import aiohttp
import pytest
from aiohttp import web
from slack_bolt.async_app import AsyncApp
from slack_bolt.oauth.async_oauth_settings import AsyncOAuthSettings
from slack_sdk.errors import SlackApiError
from slack_sdk.oauth import AuthorizeUrlGenerator
from slack_sdk.oauth.installation_store import FileInstallationStore
from slack_sdk.oauth.state_store import FileOAuthStateStore
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from tests.fakes.slack import (
    BOT_ID,
    BOT_TOKEN,
    BOT_USER,
    GENERAL,
    INSTALLER,
    SIGNING_SECRET,
    TEAM,
    FakeSlack,
    SlackDriver,
)

# slack-sdk's oauth_v2_access builds an aiohttp BasicAuth, deprecated in aiohttp 3.14.
pytestmark = pytest.mark.filterwarnings("ignore:BasicAuth is deprecated:DeprecationWarning")

ACME = "T2ACME"
ACME_CHAN = "C2ACME"
REDIRECT = "https://bot.example/slack/oauth_redirect"
SCOPES = ["chat:write", "channels:read", "files:read"]


@pytest.fixture
def acme(fake_slack: FakeSlack) -> FakeSlack:
    fake_slack.add_workspace(ACME, "Acme Corp")
    fake_slack.add_channel(ACME_CHAN, "acme-general", team=ACME)
    return fake_slack


def api(fake: FakeSlack, token: str | None = None) -> AsyncWebClient:
    return AsyncWebClient(token=token, base_url=fake.api_url)


async def error_of(call: Any) -> SlackApiError:
    with pytest.raises(SlackApiError) as info:
        await call
    return info.value


async def consent(fake: FakeSlack, **query: str) -> tuple[int, str]:
    """The user's browser at the consent screen: (status, Location or body)."""
    params = {
        "client_id": fake.oauth_client_id,
        "scope": ",".join(SCOPES),
        "user_scope": "",
        "state": "st-1",
        "redirect_uri": REDIRECT,
        **query,
    }
    async with (
        aiohttp.ClientSession() as s,
        s.get(fake.authorize_url, params=params, allow_redirects=False) as r,
    ):
        return r.status, r.headers.get("Location") or await r.text()


def redirected(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


async def code_for(fake: FakeSlack, team: str, **query: str) -> str:
    status, location = await consent(fake, team=team, **query)
    assert status == 302, location
    return redirected(location)["code"]


# -- workspaces ---------------------------------------------------------------------


def test_add_workspace_gives_its_own_bot(fake_slack: FakeSlack) -> None:
    fake_slack.add_workspace(ACME, "Acme Corp")
    ws = fake_slack.workspaces[ACME]
    assert (ws.id, ws.name, ws.domain) == (ACME, "Acme Corp", "acme-corp")
    assert (ws.bot_user, ws.bot_id) == ("U0BOT2ACME", "B02ACME")
    default = fake_slack.workspaces[TEAM]
    assert (default.bot_user, default.bot_id) == (BOT_USER, BOT_ID)
    with pytest.raises(ValueError):
        fake_slack.add_workspace(ACME, "again")
    fake_slack.add_channel("C3X", team=ACME)
    assert fake_slack.team_of("C3X") == ACME and fake_slack.team_of(GENERAL) == TEAM
    assert fake_slack.bot_in("C3X") == "U0BOT2ACME" and fake_slack.bot_in(GENERAL) == BOT_USER


# -- consent and oauth.v2.access ------------------------------------------------------


async def test_install_round_trip_with_the_sdk_client(acme: FakeSlack) -> None:
    status, location = await consent(acme, team=ACME, state="xyz")
    assert status == 302
    assert location.startswith(REDIRECT + "?")
    q = redirected(location)
    assert q["state"] == "xyz" and q["code"]
    resp = await api(acme).oauth_v2_access(
        client_id=acme.oauth_client_id,
        client_secret=acme.oauth_client_secret,
        code=q["code"],
        redirect_uri=REDIRECT,
    )
    token = resp["access_token"]
    assert token.startswith(f"xoxb-{ACME}-")
    assert resp.data == {
        "ok": True,
        "access_token": token,
        "token_type": "bot",
        "scope": "chat:write,channels:read,files:read",
        "bot_user_id": "U0BOT2ACME",
        "app_id": "A0APP",
        "team": {"id": ACME, "name": "Acme Corp"},
        "enterprise": None,
        "authed_user": {"id": INSTALLER},
        "is_enterprise_install": False,
    }
    # slack-sdk sent the credentials as HTTP Basic auth, not in the form.
    call = acme.calls_to("oauth.v2.access")[-1]
    assert "client_secret" not in call.args and call.team == ACME
    [install] = acme.installs
    assert (install.team, install.bot_token, install.user) == (ACME, token, INSTALLER)
    # The code is single use.
    err = await error_of(
        api(acme).oauth_v2_access(
            client_id=acme.oauth_client_id,
            client_secret=acme.oauth_client_secret,
            code=q["code"],
            redirect_uri=REDIRECT,
        )
    )
    assert err.response["error"] == "invalid_code"
    # auth.test with the new token: its workspace and bot (what Bolt reads bot_id from).
    me = await api(acme, token).auth_test()
    assert me["team_id"] == ACME and me["team"] == "Acme Corp"
    assert me["user_id"] == "U0BOT2ACME" and me["bot_id"] == "B02ACME"
    assert me["url"] == "https://acme-corp.slack.com/" and me["is_enterprise_install"] is False
    assert me.headers["x-oauth-scopes"] == "channels:read,chat:write,files:read"
    assert acme.calls_to("auth.test")[-1].team == ACME
    # The default token is still the default workspace's.
    default = await api(acme, BOT_TOKEN).auth_test()
    assert (default["team_id"], default["user_id"], default["bot_id"]) == (TEAM, BOT_USER, BOT_ID)
    # Each install mints a new token; the earlier one keeps working.
    again = await api(acme).oauth_v2_access(
        client_id=acme.oauth_client_id,
        client_secret=acme.oauth_client_secret,
        code=await code_for(acme, ACME),
        redirect_uri=REDIRECT,
    )
    assert again["access_token"] != token
    assert acme.token_for(ACME) == again["access_token"]
    await api(acme, token).auth_test()


async def test_form_credentials_user_scopes_and_errors(acme: FakeSlack) -> None:
    async def exchange(**form: str) -> dict[str, Any]:
        async with (
            aiohttp.ClientSession() as s,
            s.post(acme.api_url + "oauth.v2.access", data=form) as r,
        ):
            return dict(await r.json())

    creds = {"client_id": acme.oauth_client_id, "client_secret": acme.oauth_client_secret}
    code = await code_for(acme, ACME, user_scope="search:read", user="U2BOB")
    assert (await exchange(**{**creds, "client_id": "9.9"}, code=code))["error"] == (
        "invalid_client_id"
    )
    assert (await exchange(**{**creds, "client_secret": "nope"}, code=code))["error"] == (
        "bad_client_secret"
    )
    assert (await exchange(**creds, code=code, redirect_uri="https://evil.example/"))[
        "error"
    ] == "bad_redirect_uri"
    assert (await exchange(**creds, code=code))["error"] == "bad_redirect_uri"
    assert (await exchange(**creds, code="made-up", redirect_uri=REDIRECT))["error"] == (
        "invalid_code"
    )
    # Failed attempts do not use the code up; form credentials are accepted.
    ok = await exchange(**creds, code=code, redirect_uri=REDIRECT)
    assert ok["ok"] is True and ok["team"] == {"id": ACME, "name": "Acme Corp"}
    user = ok["authed_user"]
    assert user["id"] == "U2BOB" and user["scope"] == "search:read"
    assert user["token_type"] == "user" and user["access_token"].startswith("xoxp-")
    me = await api(acme, user["access_token"]).auth_test()
    assert me["user_id"] == "U2BOB" and "bot_id" not in me.data and me["team_id"] == ACME
    # Without redirect_uri at consent, none is needed at the exchange (the app's default).
    acme.oauth_redirect_uris = [REDIRECT]
    status, location = await consent(acme, team=ACME, redirect_uri="")
    assert status == 302 and location.startswith(REDIRECT)
    assert (await exchange(**creds, code=redirected(location)["code"]))["ok"] is True
    # Redirect URLs outside the app's config are refused at the consent screen.
    status, _ = await consent(acme, team=ACME, redirect_uri="https://evil.example/cb")
    assert status == 400


async def test_consent_screen_refusals_and_cancel(acme: FakeSlack) -> None:
    status, body = await consent(acme, client_id="0000.0000")
    assert status == 400 and "client_id" in body
    status, _ = await consent(acme, team="T9NOPE")
    assert status == 400
    status, location = await consent(acme, team=ACME, deny="1", state="s9")
    assert status == 302
    assert redirected(location) == {"error": "access_denied", "state": "s9"}
    assert not acme.grants
    # No `team`: the user installs into the default workspace (its known bot user).
    code = await code_for(acme, "")
    resp = await api(acme).oauth_v2_access(
        client_id=acme.oauth_client_id,
        client_secret=acme.oauth_client_secret,
        code=code,
        redirect_uri=REDIRECT,
    )
    assert resp["team"]["id"] == TEAM and resp["bot_user_id"] == BOT_USER
    assert acme.consents[-1]["client_id"] == acme.oauth_client_id


async def test_authorize_url_generator_of_the_sdk(acme: FakeSlack) -> None:
    url = AuthorizeUrlGenerator(
        client_id=acme.oauth_client_id,
        scopes=SCOPES,
        redirect_uri=REDIRECT,
        authorization_url=acme.authorize_url,
    ).generate(state="gen-state", team=ACME)
    async with (
        aiohttp.ClientSession() as s,
        s.get(url, allow_redirects=False) as r,
    ):
        assert r.status == 302
        q = redirected(r.headers["Location"])
    assert q["state"] == "gen-state"
    assert acme.grants[q["code"]].team == ACME
    assert acme.grants[q["code"]].scopes == SCOPES


# -- tokens and workspaces ------------------------------------------------------------


async def install(fake: FakeSlack, team: str, scopes: list[str] | None = None) -> str:
    code = await code_for(fake, team, scope=",".join(scopes or SCOPES))
    resp = await api(fake).oauth_v2_access(
        client_id=fake.oauth_client_id,
        client_secret=fake.oauth_client_secret,
        code=code,
        redirect_uri=REDIRECT,
    )
    return str(resp["access_token"])


async def test_tokens_see_only_their_workspace(acme: FakeSlack) -> None:
    token = await install(acme, ACME)
    client = api(acme, token)
    resp = await client.chat_postMessage(channel=ACME_CHAN, text="hello Acme")
    [posted] = acme.bot_messages(ACME_CHAN)
    assert posted.ts == resp["ts"] and posted.user == "U0BOT2ACME" and posted.bot_id == "B02ACME"
    assert acme.calls_to("chat.postMessage")[-1].team == ACME
    await client.chat_update(channel=ACME_CHAN, ts=resp["ts"], text="edited")
    # Another workspace's channel does not exist for a token, in both directions.
    err = await error_of(client.chat_postMessage(channel=GENERAL, text="hi"))
    assert err.response["error"] == "channel_not_found"
    call = acme.calls_to("chat.postMessage")[-1]
    assert (call.team, call.error) == (ACME, "channel_not_found")
    default = api(acme, BOT_TOKEN)
    err = await error_of(default.chat_postMessage(channel=ACME_CHAN, text="hi"))
    assert err.response["error"] == "channel_not_found"
    err = await error_of(default.conversations_history(channel=ACME_CHAN))
    assert err.response["error"] == "channel_not_found"
    assert acme.calls_to("conversations.history")[-1].team == TEAM
    await default.chat_postMessage(channel=GENERAL, text="still fine")
    assert acme.bot_messages(GENERAL)[-1].user == BOT_USER
    # Reads in its own workspace: membership is that workspace's bot's.
    history = await client.conversations_history(channel=ACME_CHAN)
    assert [m["text"] for m in history["messages"]] == ["edited"]
    info = await client.conversations_info(channel=ACME_CHAN)
    assert info["channel"]["is_member"] is True
    assert info["channel"]["context_team_id"] == ACME
    team = await client.team_info()
    assert team["team"]["id"] == ACME and team["team"]["name"] == "Acme Corp"
    # A token has the scopes it was installed with.
    narrow = await install(acme, ACME, ["chat:write"])
    err = await error_of(api(acme, narrow).conversations_info(channel=ACME_CHAN))
    assert err.response["error"] == "missing_scope"
    assert err.response["needed"] == "channels:read" and err.response["provided"] == "chat:write"
    # Unknown tokens.
    err = await error_of(api(acme, "xoxb-made-up").auth_test())
    assert err.response["error"] == "invalid_auth"


async def test_rate_limits_stay_per_channel_workspace(acme: FakeSlack) -> None:
    token = await install(acme, ACME)
    acme.limits["conversations.history"] = (0.01, 2, "team")
    default, client = api(acme, BOT_TOKEN), api(acme, token)
    for _ in range(2):
        await default.conversations_history(channel=GENERAL)
    err = await error_of(default.conversations_history(channel=GENERAL))
    assert err.response.status_code == 429
    # Acme's bucket is its own; a refused cross-workspace call does not use it up.
    await error_of(default.conversations_history(channel=ACME_CHAN))
    for _ in range(2):
        await client.conversations_history(channel=ACME_CHAN)
    err = await error_of(client.conversations_history(channel=ACME_CHAN))
    assert err.response.status_code == 429


async def test_uninstall_revokes_and_returns_the_events(acme: FakeSlack) -> None:
    token = await install(acme, ACME)
    older = await install(acme, ACME)
    events = acme.uninstall(ACME)
    for t in (token, older):
        err = await error_of(api(acme, t).auth_test())
        assert err.response["error"] == "token_revoked"
    err = await error_of(api(acme, token).chat_postMessage(channel=ACME_CHAN, text="hi"))
    assert err.response["error"] == "token_revoked"
    assert acme.calls_to("chat.postMessage")[-1].error == "token_revoked"
    await api(acme, BOT_TOKEN).auth_test()  # other workspaces keep theirs
    uninstalled, revoked = events
    for env in events:
        assert env["type"] == "event_callback" and env["team_id"] == ACME
        assert env["api_app_id"] == "A0APP" and env["event_id"].startswith("Ev")
        assert isinstance(env["event_time"], int)
        assert env["authorizations"] == [
            {
                "enterprise_id": None,
                "team_id": ACME,
                "user_id": "U0BOT2ACME",
                "is_bot": True,
                "is_enterprise_install": False,
            }
        ]
    assert uninstalled["event_id"] != revoked["event_id"]
    assert uninstalled["event"] == {"type": "app_uninstalled"}
    assert revoked["event"] == {
        "type": "tokens_revoked",
        "tokens": {"oauth": [], "bot": ["U0BOT2ACME"]},
    }
    # Reinstalling mints a working token again.
    fresh = await install(acme, ACME)
    assert (await api(acme, fresh).auth_test())["team_id"] == ACME
    # auth.revoke revokes the calling token.
    assert (await api(acme, fresh).auth_revoke())["revoked"] is True
    err = await error_of(api(acme, fresh).auth_test())
    assert err.response["error"] == "token_revoked"


# -- the driver ----------------------------------------------------------------------


async def test_driver_events_of_another_workspace(
    acme: FakeSlack, receiver: tuple[str, list[tuple[dict[str, str], str]]]
) -> None:
    url, got = receiver
    driver = SlackDriver(acme, url)
    verifier = SignatureVerifier(SIGNING_SECRET)
    try:
        ev = driver.message(ACME_CHAN, "U1ADA", "hi from Acme")
        assert ev["team"] == ACME
        await driver.event(driver.as_mention(ev))
        headers, body = got[-1]
        assert verifier.is_valid_request(body, headers)
        env = json.loads(body)
        assert env["team_id"] == ACME and env["event"]["team"] == ACME
        assert env["authorizations"][0]["team_id"] == ACME
        assert env["authorizations"][0]["user_id"] == "U0BOT2ACME"
        # The default workspace as before; `team=` chooses explicitly.
        await driver.event(driver.message(GENERAL, "U1ADA", "hi"))
        env = json.loads(got[-1][1])
        assert env["team_id"] == TEAM and env["event"]["team"] == TEAM
        assert env["authorizations"][0]["user_id"] == BOT_USER
        await driver.event({"type": "app_home_opened", "user": "U1ADA"}, team=ACME)
        assert json.loads(got[-1][1])["team_id"] == ACME
        # Uninstall events go out as they are, signed.
        for envelope in acme.uninstall(ACME):
            status, _ = await driver.post_envelope(envelope)
            assert status == 200
            headers, body = got[-1]
            assert verifier.is_valid_request(body, headers)
            assert json.loads(body) == envelope
    finally:
        await driver.close()


# -- a real Bolt app installing itself through the fake ------------------------------


async def test_bolt_oauth_flow_installs_and_uninstalls(acme: FakeSlack, tmp_path: Path) -> None:
    store = FileInstallationStore(base_dir=str(tmp_path / "installs"))
    app = AsyncApp(
        signing_secret=SIGNING_SECRET,
        client=AsyncWebClient(base_url=acme.api_url),
        oauth_settings=AsyncOAuthSettings(
            client_id=acme.oauth_client_id,
            client_secret=acme.oauth_client_secret,
            scopes=SCOPES,
            authorization_url=acme.authorize_url,
            install_page_rendering_enabled=False,
            installation_store=store,
            state_store=FileOAuthStateStore(
                expiration_seconds=600, base_dir=str(tmp_path / "states")
            ),
        ),
        logger=logging.getLogger("test-bolt"),
    )
    app.enable_token_revocation_listeners()  # app_uninstalled / tokens_revoked
    replies: list[str] = []

    @app.event("app_mention")
    async def mention(event: dict[str, Any], say: Any) -> None:
        replies.append(event["channel"])
        await say(f"hello {event['team']}")

    runner = web.AppRunner(app.web_app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    bolt = f"http://127.0.0.1:{runner.addresses[0][1]}"
    acme.oauth_redirect_uris = [f"{bolt}/slack/oauth_redirect"]  # Bolt sends none itself
    driver = SlackDriver(acme, f"{bolt}/slack/events")
    try:
        async with aiohttp.ClientSession() as browser:
            async with browser.get(
                f"{bolt}/slack/install?{urlencode({'team': ACME})}", allow_redirects=False
            ) as r:
                assert r.status == 302
                to_slack, cookie = r.headers["Location"], r.headers["Set-Cookie"]
            assert to_slack.startswith(acme.authorize_url + "?")
            async with browser.get(to_slack, allow_redirects=False) as r:
                assert r.status == 302
                back = r.headers["Location"]
            assert back.startswith(f"{bolt}/slack/oauth_redirect?code=")
            async with browser.get(
                back, headers={"Cookie": cookie.split(";")[0]}, allow_redirects=False
            ) as r:
                assert r.status == 200, await r.text()
        [install] = acme.installs
        saved = await store.async_find_installation(enterprise_id=None, team_id=ACME)
        assert saved is not None
        assert saved.bot_token == install.bot_token and saved.bot_id == "B02ACME"
        assert saved.bot_user_id == "U0BOT2ACME" and saved.user_id == INSTALLER
        assert saved.bot_scopes == SCOPES and saved.team_name == "Acme Corp"
        # An event of Acme: Bolt finds Acme's token and answers in Acme's channel with it.
        ev = driver.message(ACME_CHAN, "U1ADA", "<@U0BOT2ACME> hi")
        status, _ = await driver.event(driver.as_mention(ev))
        assert status == 200
        for _ in range(200):
            if acme.bot_messages(ACME_CHAN):
                break
            await asyncio.sleep(0.01)
        [answer] = acme.bot_messages(ACME_CHAN)
        assert answer.text == f"hello {ACME}" and answer.user == "U0BOT2ACME"
        assert acme.calls_to("chat.postMessage")[-1].team == ACME
        assert replies == [ACME_CHAN]
        # Uninstall: Bolt's built-in listeners delete the installation.
        for envelope in acme.uninstall(ACME):
            status, _ = await driver.post_envelope(envelope)
            assert status == 200
        for _ in range(200):
            if await store.async_find_installation(enterprise_id=None, team_id=ACME) is None:
                break
            await asyncio.sleep(0.01)
        assert await store.async_find_installation(enterprise_id=None, team_id=ACME) is None
    finally:
        await driver.close()
        await runner.cleanup()
