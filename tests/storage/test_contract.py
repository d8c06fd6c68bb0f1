"""One contract, two stores: every test runs on SqliteStore and MemoryStore."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from bot.errors import AttachmentError
from bot.types import (
    Author,
    FilePart,
    Grounding,
    GroundingPart,
    NewTurn,
    RemoteFile,
    Source,
    TextPart,
    ThreadKey,
    Usage,
)

KEY = ThreadKey("slack", "T1", "C1", "1700000000.000100")
ADA = Author("U1", "Ada")


def user(text: str, tokens: int = 10) -> NewTurn:
    return NewTurn("user", (TextPart(text),), author=ADA, token_estimate=tokens)


async def test_conversation_is_created_once(store) -> None:
    a = await store.get_or_create_conversation(KEY)
    b = await store.get_or_create_conversation(KEY)
    assert a.id == b.id and a.key == KEY
    assert await store.get_conversation(ThreadKey("slack", "T1", "C1", "other")) is None


async def test_turns_round_trip_with_all_fields(store) -> None:
    conv = await store.get_or_create_conversation(KEY)
    t1 = await store.append_turn(
        conv.id,
        NewTurn(
            "user",
            (TextPart("look"), FilePart("ab" * 32, "image/png", "a.png", 1234)),
            author=ADA,
            token_estimate=300,
        ),
    )
    t2 = await store.append_turn(
        conv.id,
        NewTurn(
            "model",
            (TextPart("a cat"), GroundingPart(Grounding((Source("S", "https://s.test"),)))),
            status="partial",
            finish_reason="max_tokens",
            usage=Usage(300, 3, 120, 40),
            token_estimate=3,
            message_ids=("1.1", "1.2"),
            error="cut",
        ),
    )
    assert (t1.seq, t2.seq) == (1, 2)
    history = await store.load_history(conv.id, token_budget=10_000)
    got1, got2 = history.turns
    assert got1.parts == (TextPart("look"), FilePart("ab" * 32, "image/png", "a.png", 1234))
    assert got1.author == ADA and got1.status == "complete"
    assert got2.author is None
    assert (got2.status, got2.finish_reason, got2.usage, got2.message_ids, got2.error) == (
        "partial",
        "max_tokens",
        Usage(300, 3, 120, 40),
        ("1.1", "1.2"),
        "cut",
    )
    assert got2.text == "a cat"
    assert await store.count_turns(conv.id) == 2


async def test_history_keeps_first_turn_and_recent_within_budget(store) -> None:
    conv = await store.get_or_create_conversation(KEY)
    for i in range(100):
        await store.append_turn(conv.id, user(f"m{i}", tokens=10))
    h = await store.load_history(conv.id, token_budget=105)
    texts = [t.text for t in h.turns]
    assert texts[0] == "m0"
    assert texts[1:] == [f"m{i}" for i in range(91, 100)]
    assert h.dropped == 90
    assert h.total_tokens == 100


async def test_history_of_empty_conversation(store) -> None:
    conv = await store.get_or_create_conversation(KEY)
    h = await store.load_history(conv.id, token_budget=100)
    assert h.turns == () and h.dropped == 0


async def test_forget_deletes_turns_and_persona(store) -> None:
    conv = await store.get_or_create_conversation(KEY)
    await store.append_turn(conv.id, user("secret"))
    await store.set_thread_persona(KEY, "coder")
    assert await store.forget(KEY)
    assert not await store.forget(KEY)
    fresh = await store.get_or_create_conversation(KEY)
    assert fresh.persona is None
    assert (await store.load_history(fresh.id, token_budget=100)).turns == ()


async def test_thread_persona(store) -> None:
    await store.set_thread_persona(KEY, "coder")
    conv = await store.get_conversation(KEY)
    assert conv is not None and conv.persona == "coder"


async def test_blobs_are_content_addressed_and_capped(store) -> None:
    sha = await store.put_blob(b"hello", mime_type="text/plain")
    assert sha == "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    assert await store.put_blob(b"hello", mime_type="text/plain") == sha
    assert await store.get_blob(sha) == b"hello"
    with pytest.raises(KeyError):
        await store.get_blob("0" * 64)
    with pytest.raises(AttachmentError) as err:
        await store.put_blob(b"x" * (1024 * 1024 + 1), mime_type="text/plain")
    assert "limit is 1.0 MB" in err.value.user_message


async def test_remote_files_are_recorded_and_replaced(store) -> None:
    sha = await store.put_blob(b"%PDF-1.4", mime_type="application/pdf")
    assert await store.get_remote_file(sha) is None
    exp = datetime(2030, 1, 1, tzinfo=UTC)
    await store.put_remote_file(sha, RemoteFile("uri://1", "application/pdf", exp, "files/1"))
    await store.put_remote_file(sha, RemoteFile("uri://2", "application/pdf", exp, "files/2"))
    got = await store.get_remote_file(sha)
    assert got == RemoteFile("uri://2", "application/pdf", exp, "files/2")


async def test_channel_default_persona(store) -> None:
    assert await store.get_channel_persona("slack", "T1", "C1") is None
    await store.set_channel_persona("slack", "T1", "C1", "editor")
    await store.set_channel_persona("slack", "T1", "C1", "coder")
    assert await store.get_channel_persona("slack", "T1", "C1") == "coder"
    await store.set_channel_persona("slack", "T1", "C1", None)
    assert await store.get_channel_persona("slack", "T1", "C1") is None


async def test_channel_tools_off_beside_the_persona(store) -> None:
    assert await store.get_channel_tools_off("slack", "T1", "C1") == frozenset()
    await store.set_channel_persona("slack", "T1", "C1", "coder")
    await store.set_channel_tools_off(
        "slack", "T1", "C1", frozenset({"google_search", "url_context"})
    )
    await store.set_channel_persona("slack", "T1", "C1", "editor")
    assert await store.get_channel_tools_off("slack", "T1", "C1") == {
        "google_search",
        "url_context",
    }
    assert await store.get_channel_persona("slack", "T1", "C1") == "editor"
    await store.set_channel_tools_off("slack", "T1", "C1", frozenset())
    assert await store.get_channel_tools_off("slack", "T1", "C1") == frozenset()
    assert await store.get_channel_tools_off("slack", "T1", "C2") == frozenset()


async def test_events_deduplicate_and_prune(store) -> None:
    assert await store.mark_event("slack", "Ev1")
    assert not await store.mark_event("slack", "Ev1")
    assert await store.mark_event("discord", "Ev1")
    assert await store.prune_events(older_than=datetime.now(UTC) - timedelta(hours=1)) == 0
    assert await store.prune_events(older_than=datetime.now(UTC) + timedelta(seconds=1)) == 2
    assert await store.mark_event("slack", "Ev1")


async def test_concurrent_marks_let_exactly_one_caller_through(store) -> None:
    await store.mark_event("slack", "old")
    ids = [f"Ev{i % 300}" for i in range(600)] + ["old"]  # each new id twice, in one burst
    results = await asyncio.gather(*(store.mark_event("slack", i) for i in ids))
    firsts = [i for i, ok in zip(ids, results, strict=True) if ok]
    assert sorted(firsts) == sorted({f"Ev{i}" for i in range(300)})


async def test_usage_accumulates_per_user_per_day(store) -> None:
    await store.add_usage("slack", "U1", day="2026-11-21", usage=Usage(100, 10))
    await store.add_usage("slack", "U1", day="2026-11-21", usage=Usage(50, 5, 30, 20))
    await store.add_usage("slack", "U1", day="2026-11-22", usage=Usage(1, 1))
    u = await store.get_usage("slack", "U1", day="2026-11-21")
    assert (u.turns, u.prompt_tokens, u.output_tokens) == (2, 150, 15)
    assert (u.tool_tokens, u.cached_tokens) == (30, 20)
    assert (await store.get_usage("slack", "U2", day="2026-11-21")).turns == 0


async def test_ping(store) -> None:
    assert await store.ping()


async def test_turn_ids_are_never_reused_after_forget(store) -> None:
    conv = await store.get_or_create_conversation(KEY)
    t = await store.append_turn(conv.id, user("a"))
    await store.forget(KEY)
    conv2 = await store.get_or_create_conversation(KEY)
    t2 = await store.append_turn(conv2.id, user("b"))
    assert t2.id > t.id


async def test_history_cache_follows_writes_and_budget_changes(store) -> None:
    conv = await store.get_or_create_conversation(KEY)
    for i in range(50):
        await store.append_turn(conv.id, user(f"m{i}", tokens=10))
    small = await store.load_history(conv.id, token_budget=55)
    assert [t.text for t in small.turns] == ["m0", "m46", "m47", "m48", "m49"]
    await store.append_turn(conv.id, user("m50", tokens=10))
    again = await store.load_history(conv.id, token_budget=55)
    assert [t.text for t in again.turns] == ["m0", "m47", "m48", "m49", "m50"]
    assert again.dropped == 46
    big = await store.load_history(conv.id, token_budget=10_000)
    assert len(big.turns) == 51 and big.dropped == 0
