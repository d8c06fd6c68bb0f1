"""Discord end to end: real discord.py and google-genai against the fakes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.adapters.discord_harness import discord_service, idle
from tests.conftest import ADA, BOB
from tests.fakes.discord import BOT_ID, CHANNEL, FakeDiscord
from tests.fakes.gemini import FakeGemini, Reply

MENTION = f"<@{BOT_ID}>"


@pytest.fixture
async def svc(fake_gemini: FakeGemini, fake_discord: FakeDiscord, tmp_path: Path):
    async with discord_service(fake_gemini, fake_discord, tmp_path) as service:
        yield service


async def test_mention_creates_a_thread_and_the_thread_continues(
    svc, fake_discord, fake_gemini
) -> None:
    fake_gemini.enqueue(Reply(["Hello ", "Ada!"]), Reply(["Still here."]))
    msg = await fake_discord.say(CHANNEL, ADA, f"{MENTION} what is **tea**?")
    await idle(svc)
    [thread] = fake_discord.threads()
    assert thread["id"] == msg["id"] and thread["name"] == "what is tea?"
    assert [m["content"] for m in fake_discord.bot_messages(thread["id"])] == ["Hello Ada!"]
    assert fake_gemini.generate_requests()[-1].texts() == ["[Ada] what is **tea**?"]
    await fake_discord.say(thread["id"], BOB, "and me?")
    await idle(svc)
    assert [m["content"] for m in fake_discord.bot_messages(thread["id"])] == [
        "Hello Ada!",
        "Still here.",
    ]
    assert fake_gemini.generate_requests()[-1].texts() == [
        "[Ada] what is **tea**?",
        "Hello Ada!",
        "[Bob] and me?",
    ]
    assert fake_discord.count_429() == 0


async def test_typing_shows_until_the_first_text(svc, fake_discord, fake_gemini) -> None:
    # A new thread is itself the sign; typing follows if the model is slow (1 s). In a
    # thread the bot is already in, typing is the sign and comes at once.
    fake_gemini.enqueue(Reply(["first"]), Reply(["late answer"], first_delay=0.3))
    await fake_discord.say(CHANNEL, ADA, f"{MENTION} think first")
    await idle(svc)
    [thread] = fake_discord.threads()
    assert not [c for c in fake_discord.calls if c.route == "typing"]
    await fake_discord.say(thread["id"], ADA, "and now?")
    await idle(svc)
    calls = [
        (c.method, c.route, round(c.at, 3))
        for c in fake_discord.calls
        if c.path.startswith(f"/channels/{thread['id']}/") and c.route in ("typing", "write")
    ]
    typing = [c for c in calls if c[1] == "typing"]
    posts = [c for c in calls if c[1] == "write" and c[0] == "POST"]
    assert len(typing) == 1 and len(posts) == 2
    assert posts[0][2] < typing[0][2] < posts[1][2]


async def test_bots_and_unaddressed_messages_are_ignored(svc, fake_discord, fake_gemini) -> None:
    other_bot = "100000000000000009"
    fake_discord.add_user(other_bot, "otherbot")
    fake_discord.users[other_bot]["bot"] = True
    await fake_discord.say(CHANNEL, ADA, "just chatting")
    await fake_discord.say(CHANNEL, other_bot, f"{MENTION} hi from a bot")
    await idle(svc)
    assert fake_gemini.generate_requests() == []
    assert fake_discord.threads() == []


async def test_dm_is_always_answered(svc, fake_discord, fake_gemini) -> None:
    fake_gemini.enqueue(Reply(["Hi in DM."]), Reply(["Again."]))
    dm = fake_discord.open_dm(ADA)
    await fake_discord.say(dm, ADA, "hello there")
    await idle(svc)
    await fake_discord.say(dm, ADA, "second")
    await idle(svc)
    assert [m["content"] for m in fake_discord.bot_messages(dm)] == ["Hi in DM.", "Again."]
    assert fake_gemini.generate_requests()[-1].texts() == [
        "[Ada] hello there",
        "Hi in DM.",
        "[Ada] second",
    ]


async def test_mention_in_an_existing_thread_starts_its_conversation(
    svc, fake_discord, fake_gemini
) -> None:
    # A thread people made themselves: the bot joins it when mentioned there.
    fake_gemini.enqueue(Reply(["Joined."]), Reply(["Continued."]))
    root = await fake_discord.say(CHANNEL, ADA, "a topic")
    await fake_discord.user_thread(root, "topic", ADA)
    await fake_discord.say(root["id"], BOB, "without a mention")
    await idle(svc)
    assert fake_gemini.generate_requests() == []
    await fake_discord.say(root["id"], BOB, f"{MENTION} now with one")
    await fake_discord.say(root["id"], ADA, "and a follow-up")
    await idle(svc)
    assert [m["content"] for m in fake_discord.bot_messages(root["id"])] == [
        "Joined.",
        "Continued.",
    ]
    assert len(fake_discord.threads()) == 1  # no new thread made


async def test_without_thread_permission_it_answers_as_a_reply_chain(fake_gemini, tmp_path) -> None:
    fake = FakeDiscord()
    fake.add_user(ADA, "ada")
    fake.can_create_threads = False
    await fake.start()
    try:
        async with discord_service(fake_gemini, fake, tmp_path) as service:
            fake_gemini.enqueue(
                Reply(["First answer."]), Reply(["Second answer."]), Reply(["Third."])
            )
            q = await fake.say(CHANNEL, ADA, f"{MENTION} question")
            await idle(service)
            [a1] = fake.bot_messages(CHANNEL)
            assert a1["message_reference"]["message_id"] == q["id"]
            assert a1["allowed_mentions"] == {"parse": [], "replied_user": False}
            q2 = await fake.say(CHANNEL, ADA, "follow-up, no mention", reference=a1["id"])
            await idle(service)
            a2 = fake.bot_messages(CHANNEL)[-1]
            assert a2["content"] == "Second answer."
            await fake.say(CHANNEL, ADA, "third, deeper in the chain", reference=a2["id"])
            await idle(service)
            assert fake_gemini.generate_requests()[-1].texts() == [
                "[Ada] question",
                "First answer.",
                "[Ada] follow-up, no mention",
                "Second answer.",
                "[Ada] third, deeper in the chain",
            ]
            assert q2["id"] != q["id"] and fake.threads() == []
    finally:
        await fake.close()


async def test_reply_chain_continues_after_a_restart(fake_gemini, tmp_path) -> None:
    fake = FakeDiscord()
    fake.add_user(ADA, "ada")
    fake.can_create_threads = False
    await fake.start()
    try:
        fake_gemini.enqueue(Reply(["One."]), Reply(["Two."]), Reply(["Three."]))
        async with discord_service(fake_gemini, fake, tmp_path) as service:
            await fake.say(CHANNEL, ADA, f"{MENTION} start")
            await idle(service)
            a1 = fake.bot_messages(CHANNEL)[-1]
            await fake.say(CHANNEL, ADA, "more", reference=a1["id"])
            await idle(service)
        async with discord_service(fake_gemini, fake, tmp_path) as service:
            a2 = fake.bot_messages(CHANNEL)[-1]
            await fake.say(CHANNEL, ADA, "after restart", reference=a2["id"])
            await idle(service)
        assert fake_gemini.generate_requests()[-1].texts() == [
            "[Ada] start",
            "One.",
            "[Ada] more",
            "Two.",
            "[Ada] after restart",
        ]
    finally:
        await fake.close()


async def test_restart_keeps_the_threads_context(fake_gemini, fake_discord, tmp_path) -> None:
    fake_gemini.enqueue(Reply(["Noted: blue."]), Reply(["Blue."]))
    async with discord_service(fake_gemini, fake_discord, tmp_path) as service:
        await fake_discord.say(CHANNEL, ADA, f"{MENTION} my colour is blue")
        await idle(service)
    [thread] = fake_discord.threads()
    async with discord_service(fake_gemini, fake_discord, tmp_path) as service:
        await fake_discord.say(thread["id"], ADA, "what is my colour?")
        await idle(service)
    assert fake_gemini.generate_requests()[-1].texts() == [
        "[Ada] my colour is blue",
        "Noted: blue.",
        "[Ada] what is my colour?",
    ]
    assert [m["content"] for m in fake_discord.bot_messages(thread["id"])] == [
        "Noted: blue.",
        "Blue.",
    ]


async def test_ten_replies_stream_at_once_in_one_channel_without_429(
    svc, fake_discord, fake_gemini
) -> None:
    def reply(rec):
        n = rec.texts()[-1].rsplit("q", 1)[1]
        return Reply([f"R{n} "] + ["word " for _ in range(40)], delay=0.03)

    fake_gemini.responder = reply
    for i in range(10):
        await fake_discord.say(CHANNEL, ADA, f"{MENTION} q{i}")
    await idle(svc, limit=60)
    threads = fake_discord.threads()
    assert len(threads) == 10
    for t in threads:
        [m] = fake_discord.bot_messages(t["id"])
        assert m["content"].startswith("R") and m["content"].count("word") == 40
        writes = [
            c.at for c in fake_discord.calls if c.route == "write" and f"/{t['id']}/" in c.path
        ]
        assert len(writes) >= 2  # streamed: posted, then edited
    assert fake_discord.count_429() == 0


async def test_long_reply_with_code_arrives_complete_across_messages(
    svc, fake_discord, fake_gemini
) -> None:
    code = "\n".join(f"    print({i})  # line {i}" for i in range(200))
    text = "Intro paragraph.\n\n" + ("Prose " * 200) + "\n\n```python\n" + code + "\n```\n\nDone."
    text += "\n\n" + ("More words here. " * 250)
    assert len(text) > 9000
    fake_gemini.enqueue(Reply([text[i : i + 300] for i in range(0, len(text), 300)], delay=0.005))
    await fake_discord.say(CHANNEL, ADA, f"{MENTION} long one please")
    await idle(svc, limit=120)
    [thread] = fake_discord.threads()
    parts = [m["content"] for m in fake_discord.bot_messages(thread["id"])]
    assert len(parts) >= 5 and all(len(p) <= 2000 for p in parts)
    for p in parts:
        assert p.count("```") % 2 == 0  # every message renders its code block closed
    joined = "".join(parts)
    for i in range(200):
        assert f"print({i})  # line {i}" in joined
    assert joined.rstrip().endswith("More words here.")
    assert fake_discord.count_429() == 0


async def test_model_output_never_pings(svc, fake_discord, fake_gemini) -> None:
    fake_gemini.enqueue(Reply(["@everyone look, @here too, <@100000000000000002> and <@&1>"]))
    await fake_discord.say(CHANNEL, ADA, f"{MENTION} ping people")
    await idle(svc)
    [thread] = fake_discord.threads()
    writes = [c for c in fake_discord.calls if c.route == "write" and c.method in ("POST", "PATCH")]
    assert writes
    for c in writes:
        assert (
            c.body["allowed_mentions"] == {"parse": []} or c.body["allowed_mentions"]["parse"] == []
        )
        assert not c.body["allowed_mentions"].get("users") and not c.body["allowed_mentions"].get(
            "roles"
        )
    [m] = fake_discord.bot_messages(thread["id"])
    assert "@everyone" in m["content"]


async def test_a_forced_429_loses_no_text(svc, fake_discord, fake_gemini) -> None:
    fake_gemini.enqueue(Reply(["part one, ", "part two, ", "part three."], delay=0.05))
    fake_discord.forced_429.extend([0.2])
    await fake_discord.say(CHANNEL, ADA, f"{MENTION} go")
    await idle(svc)
    [thread] = fake_discord.threads()
    [m] = fake_discord.bot_messages(thread["id"])
    assert m["content"] == "part one, part two, part three."
    assert fake_discord.count_429() == 1
