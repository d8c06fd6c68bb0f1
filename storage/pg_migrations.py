"""PostgreSQL migrations: the same ordered, append-only, named scheme as SQLite's
(storage/migrations.py), with the same names, so both engines' schemas move together.
Never edit one that has shipped: add another, under the same name for both engines.

What differs from SQLite, and why:
- ids are identity columns (never reused, as SQLite's AUTOINCREMENT);
- `conversations.last_seq` numbers a conversation's turns: a writer takes the next number
  with `UPDATE ... SET last_seq = last_seq + 1 RETURNING`, which locks the conversation's
  row, so replicas appending at once never compute the same seq (SQLite's MAX(seq)+1 is
  safe only because one process writes);
- attachment bytes live in `blobs.data` (bytea): a replica never needs another one's disk;
- times are timestamptz.

Replicas may start together: `migrate()` holds a transaction-level advisory lock, so one
applies what is pending and the others find it done; a database with a migration this
version does not know (written by a newer one) is refused.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from storage.migrations import REPLICAS_SQL, installations_sql, refuse_unknown, tools_sql

# A connection of its own or one lent by a pool.
Db = asyncpg.Connection | PoolConnectionProxy
PgMigration = Callable[[Db], Awaitable[None]]

# Each budget's state: `tat` (a token bucket as GCRA: the theoretical arrival time of the
# next call, epoch seconds) or `calls` (a sliding window: the times of its recent calls).
# rate_take() claims one call of every budget given, all or none, under the rows' locks,
# on the database's clock (replicas' clocks never meet); it returns 0 when the call may go,
# else the seconds until it might.
RATE_LIMITS_SQL = """
CREATE TABLE rate_limits (
    key TEXT PRIMARY KEY,
    tat DOUBLE PRECISION NOT NULL DEFAULT 0,
    calls DOUBLE PRECISION[] NOT NULL DEFAULT '{}',
    used_at DOUBLE PRECISION NOT NULL DEFAULT 0
);
CREATE FUNCTION rate_take(
    keys TEXT[], rates DOUBLE PRECISION[], bursts INTEGER[], windows DOUBLE PRECISION[]
) RETURNS DOUBLE PRECISION LANGUAGE plpgsql AS $$
DECLARE
    now_s DOUBLE PRECISION := extract(epoch FROM clock_timestamp());
    wait DOUBLE PRECISION := 0;
    r rate_limits%ROWTYPE;
    recent DOUBLE PRECISION[];
    n INTEGER;
BEGIN
    INSERT INTO rate_limits (key) SELECT unnest(keys) ON CONFLICT DO NOTHING;
    PERFORM 1 FROM rate_limits WHERE key = ANY(keys) ORDER BY key FOR UPDATE;
    FOR i IN 1 .. array_length(keys, 1) LOOP
        SELECT * INTO r FROM rate_limits WHERE key = keys[i];
        IF windows[i] > 0 THEN
            recent := ARRAY(SELECT c FROM unnest(r.calls) AS c
                            WHERE c > now_s - windows[i] ORDER BY c);
            n := coalesce(array_length(recent, 1), 0);
            IF n >= bursts[i] THEN
                wait := greatest(wait, recent[n - bursts[i] + 1] + windows[i] - now_s);
            END IF;
        ELSIF greatest(r.tat, now_s) - now_s > (bursts[i] - 1) / rates[i] THEN
            wait := greatest(wait, greatest(r.tat, now_s) - now_s - (bursts[i] - 1) / rates[i]);
        END IF;
    END LOOP;
    IF wait > 0 THEN
        RETURN wait;
    END IF;
    FOR i IN 1 .. array_length(keys, 1) LOOP
        IF windows[i] > 0 THEN
            UPDATE rate_limits SET used_at = now_s, calls = array_append(
                ARRAY(SELECT c FROM unnest(calls) AS c WHERE c > now_s - windows[i] ORDER BY c),
                now_s)
            WHERE key = keys[i];
        ELSE
            UPDATE rate_limits SET used_at = now_s,
                tat = greatest(tat, now_s) + 1 / rates[i]
            WHERE key = keys[i];
        END IF;
    END LOOP;
    RETURN 0;
END $$;
"""

# pg_advisory_xact_lock key of migrations ("gbmigrat" as 8 bytes).
MIGRATION_LOCK = 0x67626D6967726174


async def m001_initial(db: Db) -> None:
    """Conversations, turns, blobs, remote files, channel settings, events, usage."""
    await db.execute(
        """
        CREATE TABLE conversations (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            platform TEXT NOT NULL,
            workspace_id TEXT NOT NULL,
            channel_id TEXT NOT NULL,
            thread_id TEXT NOT NULL,
            persona TEXT,
            created_at TIMESTAMPTZ NOT NULL,
            last_seq INTEGER NOT NULL DEFAULT 0,
            UNIQUE (platform, workspace_id, channel_id, thread_id)
        );
        CREATE TABLE turns (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            conversation_id BIGINT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
            seq INTEGER NOT NULL,
            role TEXT NOT NULL CHECK (role IN ('user', 'model')),
            author_id TEXT,
            author_name TEXT,
            author_is_bot INTEGER NOT NULL DEFAULT 0,
            parts TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('complete', 'partial', 'failed')),
            finish_reason TEXT,
            prompt_tokens INTEGER NOT NULL DEFAULT 0,
            output_tokens INTEGER NOT NULL DEFAULT 0,
            token_estimate INTEGER NOT NULL DEFAULT 0,
            message_ids TEXT NOT NULL DEFAULT '[]',
            error TEXT,
            created_at TIMESTAMPTZ NOT NULL,
            UNIQUE (conversation_id, seq)
        );
        CREATE TABLE blobs (
            sha256 TEXT PRIMARY KEY,
            mime_type TEXT NOT NULL,
            size INTEGER NOT NULL,
            data BYTEA NOT NULL,
            created_at TIMESTAMPTZ NOT NULL
        );
        CREATE TABLE remote_files (
            sha256 TEXT PRIMARY KEY REFERENCES blobs(sha256) ON DELETE CASCADE,
            uri TEXT NOT NULL,
            name TEXT NOT NULL,
            mime_type TEXT NOT NULL,
            expires_at TIMESTAMPTZ NOT NULL
        );
        CREATE TABLE channel_settings (
            platform TEXT NOT NULL,
            workspace_id TEXT NOT NULL,
            channel_id TEXT NOT NULL,
            default_persona TEXT,
            PRIMARY KEY (platform, workspace_id, channel_id)
        );
        CREATE TABLE processed_events (
            platform TEXT NOT NULL,
            event_id TEXT NOT NULL,
            seen_at TIMESTAMPTZ NOT NULL,
            PRIMARY KEY (platform, event_id)
        );
        CREATE INDEX processed_events_seen ON processed_events (seen_at);
        CREATE TABLE usage (
            platform TEXT NOT NULL,
            user_id TEXT NOT NULL,
            day TEXT NOT NULL,
            turns INTEGER NOT NULL DEFAULT 0,
            prompt_tokens INTEGER NOT NULL DEFAULT 0,
            output_tokens INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (platform, user_id, day)
        );
        """
    )


async def m002_checkpointed_replies(db: Db) -> None:
    """Pending model turns (checkpointed replies) and their re-answer count, meta."""
    await db.execute(
        """
        ALTER TABLE turns DROP CONSTRAINT turns_status_check;
        ALTER TABLE turns ADD CONSTRAINT turns_status_check
            CHECK (status IN ('complete', 'partial', 'failed', 'pending'));
        ALTER TABLE turns ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
        CREATE INDEX turns_pending ON turns (status) WHERE status = 'pending';
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        """
    )


async def m003_tools(db: Db) -> None:
    """Tool and cached prompt tokens per turn and per user-day; tools a channel turned off."""
    for sql in tools_sql():
        await db.execute(sql)


async def m004_replicas(db: Db) -> None:
    """The replica answering each pending reply (owner), found by the others' failover."""
    await db.execute(REPLICAS_SQL)


async def m005_shared_limits(db: Db) -> None:
    """Platform budgets shared by replicas: one row per budget and rate_take() (see
    storage/pg_limits.py). SQLite has one process, whose limiters live in its memory."""
    await db.execute(RATE_LIMITS_SQL)


async def m006_installations(db: Db) -> None:
    """Installations by OAuth (many workspaces) and OAuth states."""
    for sql in installations_sql("TIMESTAMPTZ"):
        await db.execute(sql)


PG_MIGRATIONS: list[tuple[str, PgMigration]] = [
    ("001_initial", m001_initial),
    ("002_checkpointed_replies", m002_checkpointed_replies),
    ("003_tools", m003_tools),
    ("004_replicas", m004_replicas),
    ("005_shared_limits", m005_shared_limits),
    ("006_installations", m006_installations),
]


async def migrate(db: Db) -> list[str]:
    """Apply pending migrations in order, in one transaction under the migration lock;
    return their names (empty when another replica applied them first)."""
    async with db.transaction():
        await db.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
        await db.execute(
            "CREATE TABLE IF NOT EXISTS _migrations "
            "(name TEXT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL)"
        )
        done = {r["name"] for r in await db.fetch("SELECT name FROM _migrations")}
        refuse_unknown(done, [name for name, _ in PG_MIGRATIONS])
        applied: list[str] = []
        for name, fn in PG_MIGRATIONS:
            if name in done:
                continue
            await fn(db)
            await db.execute(
                "INSERT INTO _migrations (name, applied_at) VALUES ($1, $2)",
                name,
                datetime.now(UTC),
            )
            applied.append(name)
        return applied
