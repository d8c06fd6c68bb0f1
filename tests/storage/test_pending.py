"""Contract of the checkpoint methods: accept, update, pending replies, meta, never-reused ids."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from bot.types import Author, NewTurn, TextPart, ThreadKey, TurnUpdate, Usage

KEY = ThreadKey("slack", "T1", "C1", "1700000000.000100")
ADA = Author("U1", "Ada")


def user(text: str) -> NewTurn:
    return NewTurn("user", (TextPart(text),), author=ADA, token_estimate=5)


PENDING = NewTurn("model", (), status="pending")


async def test_accept_marks_the_event_and_stores_both_turns_once(store) -> None:
    got = await store.accept_turn(KEY, user=user("hi"), reply=PENDING, event=("slack", "e1"))
    assert got is not None
    conv, u, m = got
    assert conv.key == KEY and (u.seq, m.seq) == (1, 2) and m.status == "pending"
    assert await store.event_seen("slack", "e1")
    again = await store.accept_turn(KEY, user=user("hi"), reply=PENDING, event=("slack", "e1"))
    assert again is None
    assert await store.count_turns(conv.id) == 2


async def test_concurrent_accepts_of_one_event_store_it_once(store) -> None:
    results = await asyncio.gather(
        *(
            store.accept_turn(KEY, user=user("hi"), reply=PENDING, event=("slack", "e2"))
            for _ in range(5)
        )
    )
    assert sum(r is not None for r in results) == 1
    conv = await store.get_conversation(KEY)
    assert conv is not None and await store.count_turns(conv.id) == 2


async def test_update_turn_changes_fields_and_the_cached_history(store) -> None:
    got = await store.accept_turn(KEY, user=user("q"), reply=PENDING, event=None)
    assert got is not None
    conv, _u, m = got
    await store.load_history(conv.id, token_budget=1000)  # warm any cache
    await store.update_turn(conv.id, m.id, TurnUpdate(message_ids=("1.1",)))
    done = await store.update_turn(
        conv.id,
        m.id,
        TurnUpdate(
            parts=(TextPart("answer"),),
            status="complete",
            finish_reason="STOP",
            usage=Usage(7, 3),
            token_estimate=3,
        ),
    )
    assert done is not None
    assert (done.text, done.status, done.message_ids, done.usage) == (
        "answer",
        "complete",
        ("1.1",),
        Usage(7, 3),
    )
    history = await store.load_history(conv.id, token_budget=1000)
    assert history.turns[-1] == done
    assert await store.pending_replies() == []


async def test_pending_replies_come_with_their_user_turn(store) -> None:
    first = await store.accept_turn(KEY, user=user("one"), reply=PENDING, event=None)
    other = ThreadKey("slack", "T1", "C1", "other")
    second = await store.accept_turn(other, user=user("two"), reply=PENDING, event=None)
    assert first is not None and second is not None
    await store.update_turn(second[0].id, second[2].id, TurnUpdate(attempts=1))
    pending = await store.pending_replies()
    assert [(p.conversation.key, p.user_turn.text) for p in pending] == [
        (KEY, "one"),
        (other, "two"),
    ]
    assert pending[1].model_turn.attempts == 1


async def test_update_of_a_forgotten_turn_writes_nothing(store) -> None:
    got = await store.accept_turn(KEY, user=user("q"), reply=PENDING, event=None)
    assert got is not None
    conv, _u, m = got
    await store.forget(KEY)
    again = await store.get_or_create_conversation(KEY)
    assert again.id != conv.id  # ids are never reused
    assert await store.update_turn(conv.id, m.id, TurnUpdate(status="complete")) is None
    assert await store.count_turns(again.id) == 0


async def test_conversation_ids_are_never_reused_after_forget(store) -> None:
    a = await store.get_or_create_conversation(KEY)
    await store.forget(KEY)
    b = await store.get_or_create_conversation(KEY)
    assert b.id > a.id


async def test_meta(store) -> None:
    assert await store.get_meta("k") is None
    await store.set_meta("k", "v1")
    await store.set_meta("k", "v2")
    assert await store.get_meta("k") == "v2"


async def test_forget_racing_a_new_message_leaves_a_working_thread(store) -> None:
    await store.accept_turn(KEY, user=user("old"), reply=PENDING, event=None)
    await asyncio.gather(
        store.forget(KEY), store.accept_turn(KEY, user=user("racing"), reply=PENDING, event=None)
    )
    got = await store.accept_turn(KEY, user=user("after"), reply=PENDING, event=None)
    assert got is not None
    conv, u, _m = got
    assert await store.get_conversation(KEY) == conv
    history = await store.load_history(conv.id, token_budget=1000)
    assert history.turns[-2] == u and await store.count_turns(conv.id) == len(history.turns)


async def test_a_rolled_back_accept_leaves_no_ghost_turn(tmp_path) -> None:
    from storage.sqlite import SqliteStore

    store = SqliteStore(tmp_path / "db", blob_dir=tmp_path / "b", max_blob_bytes=100)
    await store.open()
    try:
        got = await store.accept_turn(KEY, user=user("a"), reply=PENDING, event=None)
        assert got is not None
        conv = got[0]
        await store.load_history(conv.id, token_budget=1000)  # the tail is cached
        bad = NewTurn("model", (), status="bogus")  # type: ignore[arg-type]
        with pytest.raises(sqlite3.IntegrityError):
            await store.accept_turn(KEY, user=user("ghost"), reply=bad, event=("slack", "g"))
        history = await store.load_history(conv.id, token_budget=1000)
        assert [t.text for t in history.turns] == ["a", ""]
        assert not await store.event_seen("slack", "g")
        again = await store.accept_turn(KEY, user=user("b"), reply=PENDING, event=("slack", "g"))
        assert again is not None
        history = await store.load_history(conv.id, token_budget=1000)
        assert [t.seq for t in history.turns] == [1, 2, 3, 4]
    finally:
        await store.close()
