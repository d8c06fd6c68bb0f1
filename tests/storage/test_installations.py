"""Installations and OAuth states: the same contract on SQLite, memory and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from bot.types import Installation, NewTurn, TextPart, ThreadKey

ONE = Installation("slack", "T1", "U0BOT1", "B1", "ciphertext-1", scopes="chat:write")
TWO = Installation("slack", "T2", "U0BOT2", "B2", "ciphertext-2")


async def test_installations_are_saved_replaced_and_deleted(store) -> None:
    assert await store.get_installation("slack", "T1") is None
    await store.save_installation(ONE)
    await store.save_installation(TWO)
    got = await store.get_installation("slack", "T1")
    assert got is not None and got.installed_at is not None
    assert (got.bot_user_id, got.bot_id, got.token, got.scopes) == (
        "U0BOT1",
        "B1",
        "ciphertext-1",
        "chat:write",
    )
    await store.save_installation(Installation("slack", "T1", "U0BOT1", "B1", "ciphertext-3"))
    again = await store.get_installation("slack", "T1")
    assert again is not None and again.token == "ciphertext-3"
    assert await store.delete_installation("slack", "T1")
    assert not await store.delete_installation("slack", "T1")
    assert await store.get_installation("slack", "T1") is None
    assert await store.get_installation("slack", "T2") is not None  # the other stays


async def test_forget_workspace_deletes_only_its_conversations(store) -> None:
    for i, ws in enumerate(("T1", "T1", "T2")):
        key = ThreadKey("slack", ws, "C1", f"17000000{i}.000100")
        conv = await store.get_or_create_conversation(key)
        await store.append_turn(conv.id, NewTurn("user", (TextPart("hi"),)))
    kept = ThreadKey("discord", "T1", "C1", "x")  # another platform's workspace of that id
    await store.get_or_create_conversation(kept)
    assert await store.forget_workspace("slack", "T1") == 2
    assert await store.forget_workspace("slack", "T1") == 0
    assert await store.get_conversation(kept) is not None


async def test_oauth_states_are_good_once_and_until_they_expire(store) -> None:
    soon = datetime.now(UTC) + timedelta(minutes=10)
    await store.issue_state("s-1", expires_at=soon)
    await store.issue_state("s-old", expires_at=datetime.now(UTC) - timedelta(seconds=1))
    first, second = await asyncio.gather(store.consume_state("s-1"), store.consume_state("s-1"))
    assert sorted([first, second]) == [False, True]  # once, even when raced
    assert not await store.consume_state("s-old")
    assert not await store.consume_state("never-issued")


async def test_a_token_is_replaced_only_if_it_is_still_the_old_one(store) -> None:
    await store.save_installation(ONE)
    assert await store.replace_token("slack", "T1", "ciphertext-1", "ciphertext-new")
    assert not await store.replace_token("slack", "T1", "ciphertext-1", "stale")  # raced
    got = await store.get_installation("slack", "T1")
    assert got is not None and got.token == "ciphertext-new"
    await store.delete_installation("slack", "T1")
    assert not await store.replace_token("slack", "T1", "ciphertext-new", "revived")
    assert await store.get_installation("slack", "T1") is None  # an uninstall stays one
