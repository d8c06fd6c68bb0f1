"""PostgreSQL migrations on a real server: the same names and columns as SQLite's, applied
once even when replicas start together, and a newer database refused."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiosqlite
import asyncpg
import pytest

from storage.migrations import MIGRATIONS
from storage.migrations import migrate as migrate_sqlite
from storage.pg_migrations import PG_MIGRATIONS
from storage.pg_migrations import migrate as migrate_pg

# Columns only PostgreSQL has, and why: the per-conversation turn counter (replicas), and
# attachment bytes in the database (no replica needs another's disk), platform budgets
# shared by replicas.
PG_ONLY = {
    ("conversations", "last_seq"),
    ("blobs", "data"),
    *(("rate_limits", col) for col in ("key", "tat", "calls", "used_at")),
}


async def pg_columns(url: str) -> set[tuple[str, str]]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = 'public'"
        )
    finally:
        await conn.close()
    return {(r["table_name"], r["column_name"]) for r in rows}


async def sqlite_columns(path: Path) -> set[tuple[str, str]]:
    async with aiosqlite.connect(path) as db:
        await migrate_sqlite(db)
        tables = [
            r[0]
            for r in await db.execute_fetchall(
                "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        out = set()
        for table in tables:
            for row in await db.execute_fetchall(f"PRAGMA table_info({table})"):
                out.add((table, row[1]))
        return out


def test_both_engines_have_the_same_migration_names() -> None:
    assert [n for n, _ in PG_MIGRATIONS] == [n for n, _ in MIGRATIONS]


async def test_the_schema_matches_sqlite_and_migrating_again_does_nothing(
    database: str, tmp_path: Path
) -> None:
    conn = await asyncpg.connect(database)
    try:
        assert await migrate_pg(conn) == [n for n, _ in PG_MIGRATIONS]
        assert await migrate_pg(conn) == []
    finally:
        await conn.close()
    pg = await pg_columns(database)
    assert pg - PG_ONLY == await sqlite_columns(tmp_path / "s.db")


async def test_replicas_starting_together_apply_each_migration_once(database: str) -> None:
    conns = [await asyncpg.connect(database) for _ in range(4)]
    try:
        results = await asyncio.gather(*(migrate_pg(c) for c in conns))
        applied = [name for r in results for name in r]
        assert sorted(applied) == sorted(n for n, _ in PG_MIGRATIONS)
    finally:
        for c in conns:
            await c.close()


async def test_a_database_from_a_newer_version_is_refused(database: str) -> None:
    conn = await asyncpg.connect(database)
    try:
        await migrate_pg(conn)
        await conn.execute("INSERT INTO _migrations VALUES ('999_future', now())")
        with pytest.raises(RuntimeError, match="999_future"):
            await migrate_pg(conn)
    finally:
        await conn.close()
