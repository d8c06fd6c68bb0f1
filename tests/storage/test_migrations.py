"""Migrations keep data: a database written by the first schema upgrades in place."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import aiosqlite

from storage.migrations import MIGRATIONS, migrate
from storage.sqlite import SqliteStore


async def test_a_001_database_upgrades_with_its_rows_and_keys(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    async with aiosqlite.connect(path, isolation_level=None) as db:
        await db.execute("PRAGMA foreign_keys=ON")
        # Only the first migration, as an older gemini-bot left it.
        await db.execute(
            "CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)"
        )
        name, first = MIGRATIONS[0]
        await first(db)
        await db.execute("INSERT INTO _migrations VALUES (?, 'then')", (name,))
        for cid in (1, 2, 3):
            await db.execute(
                "INSERT INTO conversations VALUES (?, 'slack', 'T', 'C', ?, NULL, ?)",
                (cid, f"t{cid}", "2026-01-01T00:00:00+00:00"),
            )
            await db.execute(
                "INSERT INTO turns (conversation_id, seq, role, parts, status, created_at) "
                "VALUES (?, 1, 'user', '[]', 'complete', '2026-01-01T00:00:00+00:00')",
                (cid,),
            )
        await db.execute("DELETE FROM conversations WHERE id=3")  # the newest: its id is free
        applied = await migrate(db)
        assert [a for a in applied] == [n for n, _ in MIGRATIONS[1:]]
        assert (await (await db.execute("PRAGMA foreign_keys")).fetchone()) == (1,)
    raw = sqlite3.connect(path)
    try:
        assert raw.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert raw.execute("SELECT COUNT(*) FROM turns").fetchone() == (2,)
        assert raw.execute("PRAGMA foreign_key_check").fetchall() == []
    finally:
        raw.close()
    store = SqliteStore(path, blob_dir=tmp_path / "blobs", max_blob_bytes=1000)
    await store.open()
    try:
        from bot.types import ThreadKey

        conv = await store.get_or_create_conversation(ThreadKey("slack", "T", "C", "new"))
        assert conv.id == 3  # never seen after the migration: sequences start at the max
        assert await store.forget(ThreadKey("slack", "T", "C", "t1"))
        assert await store.count_turns(1) == 0  # the cascade still works
    finally:
        await store.close()
