"""SQLite specifics: migrations, pragmas, durability, blobs on disk."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import aiosqlite
import pytest

from bot.types import Author, NewTurn, TextPart, ThreadKey
from storage.migrations import MIGRATIONS, migrate
from storage.sqlite import SqliteStore

KEY = ThreadKey("console", "local", "console", "t")


def make(tmp_path: Path) -> SqliteStore:
    return SqliteStore(tmp_path / "db.sqlite", blob_dir=tmp_path / "blobs", max_blob_bytes=10_000)


async def test_blank_database_is_migrated_and_recorded(tmp_path: Path) -> None:
    store = make(tmp_path)
    await store.open()
    assert await store.applied_migrations() == [name for name, _ in MIGRATIONS]
    await store.close()
    with sqlite3.connect(tmp_path / "db.sqlite") as db:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {
        "conversations",
        "turns",
        "blobs",
        "remote_files",
        "channel_settings",
        "processed_events",
        "usage",
        "_migrations",
    } <= tables


async def test_migrate_is_idempotent(tmp_path: Path) -> None:
    async with aiosqlite.connect(tmp_path / "x.db", isolation_level=None) as db:
        assert await migrate(db) == [name for name, _ in MIGRATIONS]
        assert await migrate(db) == []


async def test_unknown_migration_in_database_is_refused(tmp_path: Path) -> None:
    async with aiosqlite.connect(tmp_path / "x.db", isolation_level=None) as db:
        await migrate(db)
        await db.execute("INSERT INTO _migrations VALUES ('999_future', 'now')")
    store = SqliteStore(tmp_path / "x.db", blob_dir=tmp_path / "b", max_blob_bytes=1)
    with pytest.raises(RuntimeError, match="999_future"):
        await store.open()


async def test_pragmas(tmp_path: Path) -> None:
    store = make(tmp_path)
    await store.open()
    async with store.db.execute("PRAGMA journal_mode") as cur:
        assert (await cur.fetchone())[0] == "wal"
    async with store.db.execute("PRAGMA foreign_keys") as cur:
        assert (await cur.fetchone())[0] == 1
    async with store.db.execute("PRAGMA busy_timeout") as cur:
        assert (await cur.fetchone())[0] == 5000
    await store.close()


async def test_data_survives_reopen(tmp_path: Path) -> None:
    store = make(tmp_path)
    await store.open()
    conv = await store.get_or_create_conversation(KEY)
    await store.append_turn(conv.id, NewTurn("user", (TextPart("hi"),), author=Author("u", "U")))
    await store.close()
    again = make(tmp_path)
    await again.open()
    conv2 = await again.get_conversation(KEY)
    assert conv2 is not None and conv2.id == conv.id
    h = await again.load_history(conv2.id, token_budget=100)
    assert [t.text for t in h.turns] == ["hi"]
    await again.close()


async def test_blobs_live_on_disk_under_their_hash(tmp_path: Path) -> None:
    store = make(tmp_path)
    await store.open()
    sha = await store.put_blob(b"abc", mime_type="text/plain")
    assert (tmp_path / "blobs" / sha[:2] / sha).read_bytes() == b"abc"
    await store.close()


async def test_turn_rows_cascade_on_forget(tmp_path: Path) -> None:
    store = make(tmp_path)
    await store.open()
    conv = await store.get_or_create_conversation(KEY)
    await store.append_turn(conv.id, NewTurn("user", (TextPart("x"),)))
    await store.forget(KEY)
    async with store.db.execute("SELECT COUNT(*) FROM turns") as cur:
        assert (await cur.fetchone())[0] == 0
    await store.close()


async def test_history_reads_are_bounded_by_budget_not_thread_length(tmp_path: Path) -> None:
    store = make(tmp_path)
    await store.open()
    conv = await store.get_or_create_conversation(KEY)
    await store.db.executemany(
        "INSERT INTO turns (conversation_id, seq, role, parts, status, token_estimate, created_at) "
        'VALUES (?, ?, \'user\', \'[{"t":"text","text":"x"}]\', \'complete\', 10, '
        "'2026-01-01T00:00:00+00:00')",
        [(conv.id, i) for i in range(1, 5001)],
    )
    rows_read = 0

    def trace(stmt: str) -> None:
        nonlocal rows_read
        if "FROM turns" in stmt:
            rows_read += 1

    await store.db.set_trace_callback(trace)
    h = await store.load_history(conv.id, token_budget=200)
    await store.db.set_trace_callback(None)
    assert len(h.turns) == 20 and h.dropped == 4980
    assert rows_read <= 3  # first turn + one page of recent turns
    await store.close()
