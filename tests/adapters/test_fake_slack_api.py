"""The fake Slack Web API driven by the real slack-sdk client: cursor paging of history,
replies and members, windows, membership errors, Tier 3 limits, permalinks, ephemeral
messages and the external file upload flow; and the driver's commands and shortcuts."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

import aiohttp
import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from tests.fakes.slack import (
    BOT_ID,
    BOT_TOKEN,
    BOT_USER,
    GENERAL,
    SIGNING_SECRET,
    TEAM,
    FakeSlack,
    SlackDriver,
)
from tests.fakes.slack_history import decode_cursor

START = 1_600_000_000.0
C = "C7HIST"


@pytest.fixture
def client(fake_slack: FakeSlack) -> AsyncWebClient:
    return AsyncWebClient(token=BOT_TOKEN, base_url=fake_slack.api_url)


@pytest.fixture
def unlimited(fake_slack: FakeSlack) -> FakeSlack:
    """Reads are not what is under test: no 429s."""
    for method in fake_slack.limits:
        fake_slack.limits[method] = (1000.0, 1000, "team")
    return fake_slack


async def error_of(call: Any) -> SlackApiError:
    with pytest.raises(SlackApiError) as info:
        await call
    return info.value


# -- conversations.history ---------------------------------------------------------


async def test_history_pages_1050_messages_newest_first_each_once(
    unlimited: FakeSlack, client: AsyncWebClient
) -> None:
    seeded = unlimited.seed(C, count=1050, start=START, step=1.5, user_cycle=["U1ADA", "U2BOB"])
    assert seeded[1].ts == "1600000001.500000" and seeded[-1].ts == "1600001573.500000"
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        resp = await client.conversations_history(channel=C, limit=200, cursor=cursor)
        pages += 1
        seen += [m["ts"] for m in resp["messages"]]
        cursor = resp["response_metadata"]["next_cursor"]
        assert resp["has_more"] is bool(cursor)
        if not cursor:
            break
        assert decode_cursor(cursor, "next_ts") is not None  # opaque, but Slack's shape
    assert pages == 6
    assert seen == [m.ts for m in reversed(seeded)]
    assert len(set(seen)) == 1050
    # `limit` is clamped to 999; the default page is 100.
    big = await client.conversations_history(channel=C, limit=5000)
    assert len(big["messages"]) == 999 and big["has_more"]
    assert len((await client.conversations_history(channel=C))["messages"]) == 100
    # slack-sdk's own paginator follows next_cursor to the end.
    total = 0
    async for page in await client.conversations_history(channel=C, limit=400):
        total += len(page["messages"])
    assert total == 1050
    first = (await client.conversations_history(channel=C, limit=1))["messages"][0]
    assert first == {
        "type": "message",
        "user": seeded[-1].user,
        "text": "message 1049",
        "ts": seeded[-1].ts,
        "team": TEAM,
    }


async def test_history_window_oldest_latest_inclusive(
    unlimited: FakeSlack, client: AsyncWebClient
) -> None:
    seeded = unlimited.seed(C, count=50, start=START, step=10, text=lambda i: f"#{i}")
    oldest, latest = seeded[10].ts, seeded[20].ts
    resp = await client.conversations_history(channel=C, oldest=oldest, latest=latest)
    assert [m["text"] for m in resp["messages"]] == [f"#{i}" for i in range(19, 10, -1)]
    resp = await client.conversations_history(
        channel=C, oldest=oldest, latest=latest, inclusive=True
    )
    assert [m["text"] for m in resp["messages"]] == [f"#{i}" for i in range(20, 9, -1)]
    # Paging inside a window.
    texts: list[str] = []
    cursor = None
    while True:
        resp = await client.conversations_history(
            channel=C, oldest=oldest, latest=latest, inclusive=True, limit=4, cursor=cursor
        )
        texts += [m["text"] for m in resp["messages"]]
        if not (cursor := resp["response_metadata"]["next_cursor"]):
            break
    assert texts == [f"#{i}" for i in range(20, 9, -1)]
    # Only oldest: everything after it.
    resp = await client.conversations_history(channel=C, oldest=seeded[45].ts)
    assert [m["text"] for m in resp["messages"]] == ["#49", "#48", "#47", "#46"]
    assert (await error_of(client.conversations_history(channel=C, latest="soon"))).response[
        "error"
    ] == "invalid_ts_latest"
    assert (await error_of(client.conversations_history(channel=C, cursor="bogus"))).response[
        "error"
    ] == "invalid_cursor"


async def test_history_shows_thread_parents_with_reply_metadata(
    unlimited: FakeSlack, client: AsyncWebClient
) -> None:
    top = unlimited.seed(C, count=3, start=START, step=100)
    parent = top[1]
    replies = unlimited.seed(
        C,
        count=4,
        start=START + 150,
        step=1,
        user_cycle=["U2BOB", BOT_USER],
        thread_ts=parent.ts,
    )
    msgs = (await client.conversations_history(channel=C))["messages"]
    assert [m["ts"] for m in msgs] == [top[2].ts, top[1].ts, top[0].ts]  # no replies
    p = msgs[1]
    assert p["thread_ts"] == parent.ts and p["reply_count"] == 4
    assert p["latest_reply"] == replies[-1].ts
    assert p["reply_users"] == ["U2BOB", BOT_USER] and p["reply_users_count"] == 2
    assert "thread_ts" not in msgs[0] and "reply_count" not in msgs[0]
    # A reply the bot posts later moves latest_reply; a broadcast reply shows at top level.
    posted = await client.chat_postMessage(
        channel=C, thread_ts=parent.ts, text="also here", reply_broadcast=True
    )
    msgs = (await client.conversations_history(channel=C))["messages"]
    assert msgs[0]["ts"] == posted["ts"] and msgs[0]["subtype"] == "thread_broadcast"
    assert msgs[0]["thread_ts"] == parent.ts and msgs[0]["bot_id"] == BOT_ID
    assert msgs[2]["reply_count"] == 5 and msgs[2]["latest_reply"] == posted["ts"]
    # The seeded bot replies are bot messages.
    bot_reply = (await client.conversations_replies(channel=C, ts=parent.ts))["messages"][2]
    assert bot_reply["user"] == BOT_USER and bot_reply["bot_id"] == BOT_ID


# -- conversations.replies ---------------------------------------------------------


async def test_replies_of_a_300_message_thread_paged(
    unlimited: FakeSlack, client: AsyncWebClient
) -> None:
    (parent,) = unlimited.seed(C, count=1, start=START, text=lambda i: "the question")
    replies = unlimited.seed(
        C, count=300, start=START + 1, step=0.000001, thread_ts=parent.ts, user_cycle=["U2BOB"]
    )
    assert replies[1].ts == "1600000001.000001"  # microsecond steps stay exact
    got: list[dict[str, Any]] = []
    cursor = None
    pages = 0
    while True:
        resp = await client.conversations_replies(channel=C, ts=parent.ts, limit=64, cursor=cursor)
        pages += 1
        got += resp["messages"]
        if not (cursor := resp["response_metadata"]["next_cursor"]):
            assert resp["has_more"] is False
            break
    assert pages == 5
    assert [m["ts"] for m in got] == [parent.ts] + [r.ts for r in replies]
    assert got[0]["reply_count"] == 300 and got[0]["thread_ts"] == parent.ts
    assert all(m["thread_ts"] == parent.ts and m["parent_user_id"] == "U1ADA" for m in got[1:])
    # The ts of a reply reads its whole thread; the default page is 100.
    resp = await client.conversations_replies(channel=C, ts=replies[150].ts)
    assert resp["messages"][0]["ts"] == parent.ts and len(resp["messages"]) == 100
    # A window over the replies.
    resp = await client.conversations_replies(
        channel=C, ts=parent.ts, oldest=replies[9].ts, latest=replies[12].ts
    )
    assert [m["ts"] for m in resp["messages"]] == [replies[10].ts, replies[11].ts]
    # A message without replies is returned alone.
    (lone,) = unlimited.seed(C, count=1, start=START + 10_000)
    resp = await client.conversations_replies(channel=C, ts=lone.ts)
    assert [m["ts"] for m in resp["messages"]] == [lone.ts] and not resp["has_more"]
    err = await error_of(client.conversations_replies(channel=C, ts="1.000001"))
    assert err.response["error"] == "thread_not_found"


async def test_tier3_limit_answers_429_with_retry_after(
    fake_slack: FakeSlack, client: AsyncWebClient
) -> None:
    assert fake_slack.limits["conversations.history"] == (50 / 60, 10, "team")
    assert fake_slack.limits["conversations.replies"] == (50 / 60, 10, "team")
    (root,) = fake_slack.seed(C, count=1, start=START)
    fake_slack.limits["conversations.replies"] = (0.2, 3, "team")
    for _ in range(3):
        await client.conversations_replies(channel=C, ts=root.ts)
    err = await error_of(client.conversations_replies(channel=C, ts=root.ts))
    assert err.response.status_code == 429 and err.response["error"] == "ratelimited"
    assert int(err.response.headers["Retry-After"]) >= 1
    assert fake_slack.count_429() == 1
    # The bucket is per method and per workspace: history still has its burst, another
    # workspace's replies too.
    await client.conversations_history(channel=C)
    fake_slack.channel_team["C8OTHER"] = "T8OTHER"
    fake_slack.seed("C8OTHER", count=1, start=START)
    await client.conversations_replies(channel="C8OTHER", ts=f"{START:.6f}")
    # Hammering the default Tier 3 limit: a burst of 10, then 429s.
    statuses = []
    for _ in range(15):
        try:
            await client.conversations_history(channel="C8OTHER")
            statuses.append(200)
        except SlackApiError as exc:
            statuses.append(exc.response.status_code)
            assert int(exc.response.headers["Retry-After"]) >= 1
    assert statuses[:10] == [200] * 10 and 429 in statuses[10:]


async def test_non_marketplace_limits(fake_slack: FakeSlack, client: AsyncWebClient) -> None:
    fake_slack.seed(C, count=40, start=START)
    fake_slack.non_marketplace_limits()
    resp = await client.conversations_history(channel=C, limit=200)
    assert len(resp["messages"]) == 15 and resp["has_more"]
    err = await error_of(
        client.conversations_history(channel=C, cursor=resp["response_metadata"]["next_cursor"])
    )
    assert err.response.status_code == 429 and int(err.response.headers["Retry-After"]) >= 59


# -- membership, members, info ----------------------------------------------------


async def test_membership_errors(unlimited: FakeSlack, client: AsyncWebClient) -> None:
    unlimited.add_channel("C3PUB", "random", members={"U1ADA", "U2BOB"})
    unlimited.add_channel("G4PRIV", "secret", private=True, members={"U1ADA"})
    unlimited.seed("C3PUB", count=2, start=START)
    for call in (
        client.conversations_history(channel="C3PUB"),
        client.conversations_replies(channel="C3PUB", ts=f"{START:.6f}"),
    ):
        assert (await error_of(call)).response["error"] == "not_in_channel"
    for channel in ("G4PRIV", "C404"):
        err = await error_of(client.conversations_history(channel=channel))
        assert err.response["error"] == "channel_not_found"
    info = (await client.conversations_info(channel="C3PUB"))["channel"]
    assert info["is_member"] is False and info["name"] == "random" and info["is_channel"]
    assert (await error_of(client.conversations_info(channel="G4PRIV"))).response[
        "error"
    ] == "channel_not_found"
    # Invited: now it reads.
    unlimited.channel_members["C3PUB"].add(BOT_USER)
    assert len((await client.conversations_history(channel="C3PUB"))["messages"]) == 2
    # A channel without a member list has everybody in it, the bot included.
    info = (await client.conversations_info(channel=GENERAL, include_num_members=True))["channel"]
    assert info["is_member"] is True and info["name"] == "general" and info["is_general"]
    assert info["num_members"] == len(unlimited.users) + 1
    unlimited.add_channel("D7DM")
    dm = (await client.conversations_info(channel="D7DM"))["channel"]
    assert dm["is_im"] is True and dm["id"] == "D7DM"


async def test_members_paged(unlimited: FakeSlack, client: AsyncWebClient) -> None:
    everyone = {f"U{i:05d}" for i in range(250)} | {BOT_USER}
    unlimited.add_channel("C5BIG", "big", members=everyone)
    got: list[str] = []
    cursor = None
    while True:
        resp = await client.conversations_members(channel="C5BIG", limit=100, cursor=cursor)
        got += resp["members"]
        if not (cursor := resp["response_metadata"]["next_cursor"]):
            break
        assert decode_cursor(cursor, "user") in everyone
    assert sorted(got) == sorted(everyone) and len(got) == 251
    resp = await client.conversations_members(channel=GENERAL)
    assert set(resp["members"]) == {*unlimited.users, BOT_USER}
    assert resp["response_metadata"]["next_cursor"] == ""
    err = await error_of(client.conversations_members(channel="C404"))
    assert err.response["error"] == "channel_not_found"


# -- permalinks, team, status --------------------------------------------------------


async def test_permalinks_team_info_and_statuses(
    unlimited: FakeSlack, client: AsyncWebClient
) -> None:
    (parent,) = unlimited.seed(C, count=1, start=START)
    (reply,) = unlimited.seed(C, count=1, start=START + 5, thread_ts=parent.ts)
    link = (await client.chat_getPermalink(channel=C, message_ts=parent.ts))["permalink"]
    assert link == f"https://test.slack.com/archives/{C}/p1600000000000000"
    link = (await client.chat_getPermalink(channel=C, message_ts=reply.ts))["permalink"]
    assert link == (
        f"https://test.slack.com/archives/{C}/p1600000005000000?thread_ts={parent.ts}&cid={C}"
    )
    err = await error_of(client.chat_getPermalink(channel=C, message_ts="1.000002"))
    assert err.response["error"] == "message_not_found"
    err = await error_of(client.chat_getPermalink(channel="C404", message_ts=parent.ts))
    assert err.response["error"] == "channel_not_found"
    team = (await client.team_info())["team"]
    assert team["id"] == TEAM and team["domain"] == "test"
    assert team["url"] == "https://test.slack.com/"
    await client.assistant_threads_setStatus(
        channel_id="D0ASSIST", thread_ts=parent.ts, status="is reading the thread…"
    )
    await client.assistant_threads_setStatus(channel_id="D0ASSIST", thread_ts=parent.ts, status="")
    assert unlimited.statuses == [
        ("D0ASSIST", parent.ts, "is reading the thread…"),
        ("D0ASSIST", parent.ts, ""),
    ]


# -- chat.postEphemeral ------------------------------------------------------------


async def test_post_ephemeral_stored_and_refused(
    unlimited: FakeSlack, client: AsyncWebClient
) -> None:
    unlimited.add_channel("C6TEAM", "team", members={"U1ADA", BOT_USER})
    resp = await client.chat_postEphemeral(
        channel="C6TEAM",
        user="U1ADA",
        text="only you",
        thread_ts="1600000000.000000",
        blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": "*only* you"}}],
    )
    assert resp["message_ts"]
    (e,) = unlimited.ephemerals
    assert e["channel"] == "C6TEAM" and e["user"] == "U1ADA" and e["text"] == "only you"
    assert e["thread_ts"] == "1600000000.000000" and e["blocks"][0]["type"] == "section"
    assert e["message_ts"] == resp["message_ts"]
    assert not [m for m in unlimited.messages.values() if m.channel == "C6TEAM"]

    async def error(**kw: Any) -> str:
        args = {"channel": "C6TEAM", "user": "U1ADA", "text": "x", **kw}
        return str((await error_of(client.chat_postEphemeral(**args))).response["error"])

    assert await error(user="U2BOB") == "user_not_in_channel"
    assert await error(channel="C404") == "channel_not_found"
    assert await error(text="x" * 40_001) == "msg_too_long"
    await client.chat_postEphemeral(channel="C6TEAM", user="U1ADA", text="x" * 40_000)
    section = {"type": "section", "text": {"type": "mrkdwn", "text": "s"}}
    assert await error(blocks=[section] * 51) == "invalid_blocks"
    await client.chat_postEphemeral(channel="C6TEAM", user="U1ADA", text="x", blocks=[section] * 50)
    long_section = {"type": "section", "text": {"type": "mrkdwn", "text": "s" * 3001}}
    err = await error_of(
        client.chat_postEphemeral(channel="C6TEAM", user="U1ADA", text="x", blocks=[long_section])
    )
    assert err.response["error"] == "invalid_blocks"
    assert "/blocks/0/text/text" in err.response["response_metadata"]["messages"][0]
    md = {"type": "markdown", "text": "m" * 6_000}
    await client.chat_postEphemeral(channel="C6TEAM", user="U1ADA", text="x", blocks=[md, md])
    assert await error(blocks=[md, md, {"type": "markdown", "text": "m"}]) == "invalid_blocks"
    assert len(unlimited.ephemerals) == 4


async def test_response_url_takes_ephemeral_answers(fake_slack: FakeSlack) -> None:
    async with aiohttp.ClientSession() as http:
        url = f"{fake_slack.base_url}/response/r1"
        async with http.post(url, json={"response_type": "ephemeral", "text": "hi"}) as r:
            assert r.status == 200
    assert fake_slack.responses == [{"id": "r1", "response_type": "ephemeral", "text": "hi"}]


# -- files ---------------------------------------------------------------------------


async def download(url: str, token: str = BOT_TOKEN) -> bytes:
    async with (
        aiohttp.ClientSession() as http,
        http.get(url, headers={"Authorization": f"Bearer {token}"}) as r,
    ):
        return await r.read()


async def test_files_upload_v2_round_trip_into_a_thread(
    unlimited: FakeSlack, client: AsyncWebClient
) -> None:
    (parent,) = unlimited.seed(C, count=1, start=START)
    data = bytes(range(256)) * 40
    resp = await client.files_upload_v2(
        channel=C,
        thread_ts=parent.ts,
        content=data,
        filename="report.pdf",
        title="Q3 report",
        initial_comment="Here it is",
    )
    f = resp["file"]
    assert f["name"] == "report.pdf" and f["title"] == "Q3 report"
    assert f["mimetype"] == "application/pdf" and f["size"] == len(data)
    assert unlimited.uploaded(f["id"]) == data
    (posted,) = [m for m in unlimited.thread(C, parent.ts) if m.files]
    assert posted.thread_ts == parent.ts and posted.text == "Here it is"
    assert posted.user == BOT_USER and posted.bot_id == BOT_ID
    # The bot reads it back like any message, and downloads the bytes with its token.
    msgs = (await client.conversations_replies(channel=C, ts=parent.ts))["messages"]
    (shown,) = msgs[1]["files"]
    assert shown["id"] == f["id"]
    assert await download(shown["url_private_download"]) == data
    assert b"Sign in" in await download(shown["url_private_download"], token="x")
    assert (await client.files_info(file=f["id"]))["file"]["size"] == len(data)
    # file= bytes too, at the top of the channel, several files in one message.
    resp = await client.files_upload_v2(
        channel=C,
        file_uploads=[
            {"file": b"a,b\n1,2\n", "filename": "t.csv"},
            {"content": "print(1)\n", "filename": "x.py", "snippet_type": "python"},
        ],
    )
    assert [x["name"] for x in resp["files"]] == ["t.csv", "x.py"]
    newest = (await client.conversations_history(channel=C, limit=1))["messages"][0]
    assert [x["name"] for x in newest["files"]] == ["t.csv", "x.py"]
    assert "thread_ts" not in newest and newest["subtype"] == "file_share"
    assert [x["mimetype"] for x in newest["files"]] == ["text/csv", "text/plain"]
    assert await download(newest["files"][1]["url_private"]) == b"print(1)\n"
    assert unlimited.calls_to("files.getUploadURLExternal")[0].args["length"] == str(len(data))
    assert len(unlimited.calls_to("files.upload_url")) == 3  # the bytes went to the upload URL


async def test_upload_url_multipart_mismatch_and_errors(
    unlimited: FakeSlack, client: AsyncWebClient
) -> None:
    got = await client.files_getUploadURLExternal(filename="a.txt", length=5)
    fid, url = got["file_id"], got["upload_url"]
    async with aiohttp.ClientSession() as http:
        async with http.post(url, data=b"toolong") as r:
            assert r.status == 400
        form = aiohttp.FormData()
        form.add_field("filename", b"hello", filename="a.txt")
        async with http.post(url, data=form) as r:
            assert r.status == 200 and await r.text() == "OK - 5"
    err = await error_of(client.files_completeUploadExternal(files=[{"id": "F9999"}]))
    assert err.response["error"] == "file_not_found"
    err = await error_of(
        client.files_completeUploadExternal(files=[{"id": fid}], channel_id="C404")
    )
    assert err.response["error"] == "invalid_channel"
    # No channel: the file is kept, private, and no message is posted.
    before = len(unlimited.messages)
    resp = await client.files_completeUploadExternal(files=[{"id": fid, "title": "A"}])
    assert resp["files"][0]["title"] == "A" and len(unlimited.messages) == before
    assert unlimited.uploaded(fid) == b"hello"
    err = await error_of(client.files_completeUploadExternal(files=[{"id": fid}]))
    assert err.response["error"] == "file_not_found"  # a ticket is used once
    # An upload never sent cannot be completed.
    pending = (await client.files_getUploadURLExternal(filename="b.txt", length=3))["file_id"]
    err = await error_of(client.files_completeUploadExternal(files=[{"id": pending}]))
    assert err.response["error"] == "file_not_found"
    for kw, error in (
        ({"length": 0}, "missing_argument"),
        ({"length": 1024**3 + 1}, "file_upload_size_restricted"),
        ({"length": 2 * 1024**2, "snippet_type": "python"}, "snippet_too_large"),
        ({"length": 3, "alt_txt": "a" * 1001}, "alt_txt_too_large"),
    ):
        err = await error_of(client.files_getUploadURLExternal(filename="c.txt", **kw))
        assert err.response["error"] == error
    # An upload URL whose ticket is gone answers 404, which files_upload_v2 reports.
    async with aiohttp.ClientSession() as http, http.post(url, data=b"hello") as r:
        assert r.status == 404


async def test_seed_attach_file_and_ts_order(unlimited: FakeSlack, client: AsyncWebClient) -> None:
    seeded = unlimited.seed(GENERAL, count=3, start=1_800_000_000, step=60)
    f = unlimited.attach_file(seeded[1], "notes.txt", b"the notes", "text/plain")
    msgs = (await client.conversations_history(channel=GENERAL))["messages"]
    assert msgs[1]["files"][0]["id"] == f["id"] and msgs[1]["subtype"] == "file_share"
    assert await download(msgs[1]["files"][0]["url_private_download"]) == b"the notes"
    # What the API posts afterwards is newer than anything seeded, as in Slack.
    posted = await client.chat_postMessage(channel=GENERAL, text="after")
    assert posted["ts"] > seeded[-1].ts
    assert (await client.conversations_history(channel=GENERAL, limit=1))["messages"][0][
        "text"
    ] == "after"
    with pytest.raises(ValueError):
        unlimited.seed(GENERAL, count=1, start=1_800_000_000)


# -- the driver: commands and shortcuts ---------------------------------------------


async def test_driver_command_and_shortcut_payloads(
    fake_slack: FakeSlack, receiver: tuple[str, list[tuple[dict[str, str], str]]]
) -> None:
    url, got = receiver
    driver = SlackDriver(fake_slack, url)
    verifier = SignatureVerifier(SIGNING_SECRET)
    try:
        root = fake_slack.add_message(C, "U1ADA", "the root")
        reply = fake_slack.add_message(C, "U2BOB", "a reply", thread_ts=root.ts)
        await driver.command("/summarize", "risks", channel=C)
        headers, body = got[-1]
        assert verifier.is_valid_request(body, headers)
        form = {k: v[0] for k, v in parse_qs(body).items()}
        assert form["command"] == "/summarize" and form["text"] == "risks"
        assert form["channel_id"] == C and form["user_id"] == "U1ADA"
        assert form["team_id"] == TEAM and form["trigger_id"]
        assert form["response_url"] == driver.last_response_url
        assert "thread_ts" not in form  # Slack does not say which thread it was typed in
        await driver.shortcut("summarize_attachments", reply, user="U2BOB")
        headers, body = got[-1]
        assert verifier.is_valid_request(body, headers)
        payload = json.loads(parse_qs(body)["payload"][0])
        assert payload["type"] == "message_action"
        assert payload["callback_id"] == "summarize_attachments"
        assert payload["message"]["ts"] == reply.ts
        assert payload["message"]["thread_ts"] == root.ts
        assert payload["message_ts"] == reply.ts
        assert payload["channel"]["id"] == C and payload["user"]["id"] == "U2BOB"
        assert payload["team"]["id"] == TEAM
        assert payload["response_url"] == driver.last_response_url
        # On a thread parent the message carries its thread metadata.
        await driver.shortcut("summarize_attachments", root)
        payload = json.loads(parse_qs(got[-1][1])["payload"][0])
        assert payload["message"]["thread_ts"] == root.ts
        assert payload["message"]["reply_count"] == 1
    finally:
        await driver.close()
