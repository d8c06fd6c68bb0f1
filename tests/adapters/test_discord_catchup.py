"""Discord catch-ups and thread summaries, whole service in-process on the fakes: /catchup
(deferred ephemerally, progress, jump links, active threads, the cap, map/reduce on 5,000
messages), refusals by permission, /summarize in a thread and the "Summarize thread" menu,
and long answers in DMs (or ephemeral follow-ups when DMs are closed)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.adapters.discord_harness import discord_service, idle, until
from tests.catchup_helpers import (
    DISCORD_LINK,
    citing_every,
    is_map,
    is_reduce,
    summarising,
    transcript_lines,
)
from tests.conftest import ADA, BOB
from tests.fakes.discord import CHANNEL, GUILD, FakeDiscord, Interaction, is_ephemeral
from tests.fakes.gemini import FakeGemini, Reply

NOW = datetime.now(UTC)
STR = {"type": 3}


def ago(**kw: float) -> datetime:
    return datetime.now(UTC) - timedelta(**kw)


async def answered(inter: Interaction, limit: float = 30) -> str:
    """The deferred response's final text (once it is not a progress note)."""

    def done() -> bool:
        text = (inter.original or {}).get("content") or ""
        return text.startswith(("**", "You ", "I ", "That ", "Use ", "Attach "))

    await until(done, limit=limit)
    return str(inter.original["content"])  # type: ignore[index]


def check_links(fake: FakeDiscord, text: str, lines: dict[str, tuple[str, str]]) -> int:
    """Every link is the jump URL of the message its reference named."""
    where = {
        m["content"]: (cid, mid) for cid, msgs in fake.messages.items() for mid, m in msgs.items()
    }
    links = DISCORD_LINK.findall(text)
    for label, url in links:
        _, said = lines[f"m{label}"]
        cid, mid = where[said.split(" [files:")[0]]
        assert url == f"https://discord.com/channels/{GUILD}/{cid}/{mid}", (label, said)
    return len(links)


async def catchup(fake: FakeDiscord, user: str, since: str = "", **kw: Any) -> Interaction:
    options = [{"name": "since", **STR, "value": since}] if since else None
    return await fake.interact("catchup", user=user, options=options, **kw)


async def test_catchup_is_ephemeral_reads_threads_and_links_each_point(
    fake_gemini: FakeGemini, fake_discord: FakeDiscord, tmp_path: Path
) -> None:
    fake_discord.seed(CHANNEL, count=5, start=ago(days=4), step=timedelta(minutes=1))
    [old] = fake_discord.seed(CHANNEL, count=1, start=ago(days=5), step=timedelta(1), text=str)
    old["content"] = "old topic"
    fake_discord.seed(
        CHANNEL, count=30, start=ago(hours=36), step=timedelta(hours=1), text=lambda i: f"c{i}"
    )
    await fake_discord.seed_thread(
        CHANNEL, "old", count=3, start=ago(hours=2), root=old, text=lambda i: f"late {i}"
    )
    [root] = fake_discord.seed(CHANNEL, count=1, start=ago(hours=1), step=timedelta(1), text=str)
    root["content"] = "new topic"
    await fake_discord.seed_thread(
        CHANNEL, "new", count=4, start=ago(minutes=50), root=root, text=lambda i: f"re {i}"
    )
    fake_gemini.responder = citing_every
    async with discord_service(fake_gemini, fake_discord, tmp_path) as service:
        inter = await catchup(fake_discord, BOB, "2d")
        text = await answered(inter)
        await idle(service)
    assert inter.callbacks[0] == {"type": 5, "data": {"flags": 64}}  # deferred, ephemeral
    assert is_ephemeral(inter.original or {})
    lines = transcript_lines(fake_gemini.generate_requests())
    expected = {f"c{i}" for i in range(30)} | {f"late {i}" for i in range(3)}
    expected |= {f"re {i}" for i in range(4)} | {"old topic", "new topic"}
    assert {t for _, t in lines.values()} == expected
    header = "**Catch-up on #general, the last 2 days: 39 messages, 2 threads**"
    # 39 jump links do not fit Discord's 2,000 characters: the answer went to Bob's DMs.
    assert text == f"{header}: too long to show here, so I sent it to your DMs."
    dm = "\n".join(m["content"] for m in fake_discord.bot_messages(fake_discord.open_dm(BOB)))
    assert dm.startswith(header)
    assert check_links(fake_discord, dm, lines) == 39
    assert fake_discord.bot_messages(CHANNEL) == []  # nothing in the channel itself


async def test_refusals_say_why(
    fake_gemini: FakeGemini, fake_discord: FakeDiscord, tmp_path: Path
) -> None:
    fake_discord.add_channel("700000000000000002", "secret")
    fake_discord.add_channel("700000000000000003", "closed")
    async with discord_service(fake_gemini, fake_discord, tmp_path) as service:
        await fake_discord.hide_channel("700000000000000002", BOB)
        await fake_discord.hide_from_bot("700000000000000003")
        cases = [
            ("700000000000000002", "", "You cannot read the history of #secret"),
            ("700000000000000003", "", "I cannot read #closed. Give me View Channel"),
            (CHANNEL, "soonish", "I could not read 'soonish'"),
            (fake_discord.open_dm(BOB), "", "Use this in a server channel."),
        ]
        for channel, since, says in cases:
            inter = await catchup(fake_discord, BOB, since, channel_id=channel)
            await until(lambda i=inter: bool(i.callbacks))
            reply = inter.callbacks[0]
            assert reply["type"] == 4 and reply["data"]["flags"] == 64
            assert says in reply["data"]["content"]
        await idle(service)
    assert fake_gemini.generate_requests() == []


async def test_thread_summaries_by_command_and_menu(
    fake_gemini: FakeGemini, fake_discord: FakeDiscord, tmp_path: Path
) -> None:
    [root] = fake_discord.seed(CHANNEL, count=1, start=ago(hours=3), step=timedelta(1), text=str)
    root["content"] = "release plan?"
    thread, replies = await fake_discord.seed_thread(
        CHANNEL, "release", count=25, start=ago(hours=2), root=root, text=lambda i: f"r{i}"
    )
    fake_discord.add_attachment(replies[3], "notes.txt", b"ship on friday", "text/plain")
    [lonely] = fake_discord.seed(CHANNEL, count=1, start=ago(minutes=5), step=timedelta(1))
    fake_gemini.responder = summarising
    async with discord_service(fake_gemini, fake_discord, tmp_path) as service:
        inter = await fake_discord.interact(
            "summarize",
            user=ADA,
            channel_id=thread["id"],
            options=[{"name": "focus", **STR, "value": "dates"}],
        )
        text = await answered(inter)
        req = fake_gemini.generate_requests()[-1]
        assert "Summarise the thread “release”" in req.texts()[0]
        assert "Pay most attention to: dates." in req.texts()[0]
        assert len(transcript_lines([req])) == 26  # its first message and 25 replies
        assert req.inline_mimes() == ["text/plain"]
        assert text.startswith("**Summary of the thread “release”: 26 messages**")
        assert is_ephemeral(inter.original or {})
        assert check_links(fake_discord, text, transcript_lines([req])) == 3
        # The menu on a reply, and on the message the thread started from.
        for target in (replies[10], root):
            inter = await fake_discord.interact("Summarize thread", user=BOB, target=target)
            assert (await answered(inter)).startswith("**Summary of the thread “release”")
        inter = await fake_discord.interact("Summarize thread", user=BOB, target=lonely)
        await until(lambda: bool(inter.callbacks))
        assert "not in a thread" in inter.callbacks[0]["data"]["content"]
        # /summarize outside a thread and without a file says what to do.
        inter = await fake_discord.interact("summarize", user=BOB)
        await until(lambda: bool(inter.callbacks))
        assert "inside a thread" in inter.callbacks[0]["data"]["content"]
        await idle(service)


async def test_five_thousand_messages_in_parts(
    fake_gemini: FakeGemini, fake_discord: FakeDiscord, tmp_path: Path
) -> None:
    fake_discord.seed(
        CHANNEL, count=5000, start=ago(hours=47), step=timedelta(seconds=30), text=lambda i: f"m{i}"
    )
    fake_gemini.responder = summarising
    async with discord_service(
        fake_gemini,
        fake_discord,
        tmp_path,
        HISTORY_TOKEN_BUDGET=20_000,
        CATCHUP_MAX_MESSAGES=6000,
    ) as service:
        inter = await catchup(fake_discord, ADA, "2d")
        text = await answered(inter, limit=60)
        await idle(service)
    reqs = fake_gemini.generate_requests()
    maps, reduces = [r for r in reqs if is_map(r)], [r for r in reqs if is_reduce(r)]
    assert len(maps) >= 3 and reduces and reqs[-1] is reduces[-1]
    lines = transcript_lines(reqs)
    assert len(lines) == 5000
    assert text.startswith("**Catch-up on #general, the last 2 days: 5,000 messages**")
    assert f"Read in {len(maps)} parts with {len(reqs)} Gemini requests" in text
    assert check_links(fake_discord, text, lines) >= 3 * len(maps) - 2
    edits = [c for c in fake_discord.calls if c.method == "PATCH" and "@original" in c.path]
    assert len(edits) >= 2  # progress, then the answer


async def test_the_cap_is_stated(
    fake_gemini: FakeGemini, fake_discord: FakeDiscord, tmp_path: Path
) -> None:
    fake_discord.seed(
        CHANNEL, count=250, start=ago(hours=5), step=timedelta(minutes=1), text=lambda i: f"n{i}"
    )
    fake_gemini.responder = summarising
    async with discord_service(
        fake_gemini, fake_discord, tmp_path, CATCHUP_MAX_MESSAGES=120
    ) as service:
        text = await answered(await catchup(fake_discord, BOB))
        await idle(service)
    sent = {t for _, t in transcript_lines(fake_gemini.generate_requests()).values()}
    assert sent == {f"n{i}" for i in range(130, 250)}
    assert "120 messages" in text
    assert "Only the newest 120 messages of this window were read" in text


async def test_long_answers_go_to_dms_or_stay_ephemeral(
    fake_gemini: FakeGemini, fake_discord: FakeDiscord, tmp_path: Path
) -> None:
    fake_discord.seed(CHANNEL, count=5, start=ago(hours=1), step=timedelta(minutes=1))
    long = "\n".join(f"- point {i} " + "detail " * 10 + "[m1]" for i in range(30))
    fake_gemini.responder = lambda rec: Reply([long])
    fake_discord.closed_dms.add(ADA)
    async with discord_service(fake_gemini, fake_discord, tmp_path) as service:
        inter = await catchup(fake_discord, BOB)
        text = await answered(inter)
        assert "sent it to your DMs" in text
        dm = fake_discord.open_dm(BOB)
        got = [m["content"] for m in fake_discord.bot_messages(dm)]
        assert len(got) >= 2 and "point 29" in got[-1] and all(len(g) <= 2000 for g in got)
        inter = await catchup(fake_discord, ADA)  # DMs closed: ephemeral follow-ups
        await answered(inter)
        await until(lambda: "point 29" in inter.messages()[-1]["content"])
        await idle(service)
    assert len(inter.messages()) >= 2 and all(is_ephemeral(m) for m in inter.messages())


async def test_a_private_thread_is_summarised_only_for_its_members(
    fake_gemini: FakeGemini, fake_discord: FakeDiscord, tmp_path: Path
) -> None:
    fake_discord.seed(
        CHANNEL, count=3, start=ago(hours=3), step=timedelta(minutes=1), text=lambda i: f"pub {i}"
    )
    thread, _ = await fake_discord.seed_thread(
        CHANNEL, "hr", count=3, start=ago(hours=1), authors=[ADA], owner=ADA,
        text=lambda i: f"SECRET {i}",
    )  # fmt: skip
    thread["type"] = 12  # a private thread: Bob is not in it
    thread["thread_metadata"]["invitable"] = False
    fake_gemini.responder = citing_every
    async with discord_service(fake_gemini, fake_discord, tmp_path) as service:
        await answered(await catchup(fake_discord, BOB, "1d"))
        await idle(service)
        for_bob = {t for _, t in transcript_lines(fake_gemini.generate_requests()).values()}
        await answered(await catchup(fake_discord, ADA, "1d"))
        await idle(service)
        for_ada = {t for _, t in transcript_lines(fake_gemini.generate_requests()[-1:]).values()}
        fake_discord.thread_members[thread["id"]].add(BOB)  # Bob joins (not its owner)
        await answered(await catchup(fake_discord, BOB, "1d"))
        await idle(service)
        member = {t for _, t in transcript_lines(fake_gemini.generate_requests()[-1:]).values()}
    assert "pub 0" in for_bob and not [t for t in for_bob if "SECRET" in t]
    assert "SECRET 0" in for_ada and "SECRET 0" in member
