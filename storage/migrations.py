"""Ordered, append-only, named migrations. Never edit one that has shipped: add another."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import aiosqlite

from bot.errors import SchemaTooNew

Migration = Callable[[aiosqlite.Connection], Awaitable[None]]


async def m001_initial(db: aiosqlite.Connection) -> None:
    """Conversations, turns, blobs, remote files, channel settings, events, usage."""
    for sql in (
        """CREATE TABLE conversations (
            id INTEGER PRIMARY KEY,
            platform TEXT NOT NULL,
            workspace_id TEXT NOT NULL,
            channel_id TEXT NOT NULL,
            thread_id TEXT NOT NULL,
            persona TEXT,
            created_at TEXT NOT NULL,
            UNIQUE (platform, workspace_id, channel_id, thread_id)
        )""",
        # AUTOINCREMENT: turn ids are never reused after a delete, so caches may key on them.
        """CREATE TABLE turns (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
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
            created_at TEXT NOT NULL,
            UNIQUE (conversation_id, seq)
        )""",
        """CREATE TABLE blobs (
            sha256 TEXT PRIMARY KEY,
            mime_type TEXT NOT NULL,
            size INTEGER NOT NULL,
            created_at TEXT NOT NULL
        )""",
        """CREATE TABLE remote_files (
            sha256 TEXT PRIMARY KEY REFERENCES blobs(sha256) ON DELETE CASCADE,
            uri TEXT NOT NULL,
            name TEXT NOT NULL,
            mime_type TEXT NOT NULL,
            expires_at TEXT NOT NULL
        )""",
        """CREATE TABLE channel_settings (
            platform TEXT NOT NULL,
            workspace_id TEXT NOT NULL,
            channel_id TEXT NOT NULL,
            default_persona TEXT,
            PRIMARY KEY (platform, workspace_id, channel_id)
        )""",
        """CREATE TABLE processed_events (
            platform TEXT NOT NULL,
            event_id TEXT NOT NULL,
            seen_at TEXT NOT NULL,
            PRIMARY KEY (platform, event_id)
        )""",
        "CREATE INDEX processed_events_seen ON processed_events (seen_at)",
        """CREATE TABLE usage (
            platform TEXT NOT NULL,
            user_id TEXT NOT NULL,
            day TEXT NOT NULL,
            turns INTEGER NOT NULL DEFAULT 0,
            prompt_tokens INTEGER NOT NULL DEFAULT 0,
            output_tokens INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (platform, user_id, day)
        )""",
    ):
        await db.execute(sql)


async def _rebuild(db: aiosqlite.Connection, table: str, create: str) -> None:
    """Replace `table` by `create` (same columns first), keeping rows and AUTOINCREMENT state.

    SQLite cannot change a key or a CHECK in place: its documented way is a new table, a copy
    and a rename, with foreign keys off (migrate() turns them off around migrations).
    """
    old_seq = list(
        await db.execute_fetchall("SELECT seq FROM sqlite_sequence WHERE name=?", (table,))
    )
    cols = [r[1] for r in await db.execute_fetchall(f"PRAGMA table_info({table})")]
    await db.execute(create.replace(f"CREATE TABLE {table} ", f"CREATE TABLE {table}_new ", 1))
    names = ", ".join(cols)
    await db.execute(f"INSERT INTO {table}_new ({names}) SELECT {names} FROM {table}")
    await db.execute(f"DROP TABLE {table}")
    await db.execute(f"ALTER TABLE {table}_new RENAME TO {table}")
    if old_seq:
        # Ids of deleted rows above today's maximum stay used: caches may key on them.
        await db.execute(
            "UPDATE sqlite_sequence SET seq=MAX(seq, ?) WHERE name=?", (old_seq[0][0], table)
        )


async def m002_checkpointed_replies(db: aiosqlite.Connection) -> None:
    """Pending model turns (checkpointed replies), never-reused conversation ids, meta."""
    # AUTOINCREMENT: a conversation re-created after /forget never gets the forgotten id, so a
    # reply still in flight for the old one cannot write into the new one.
    await _rebuild(
        db,
        "conversations",
        """CREATE TABLE conversations (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            platform TEXT NOT NULL,
            workspace_id TEXT NOT NULL,
            channel_id TEXT NOT NULL,
            thread_id TEXT NOT NULL,
            persona TEXT,
            created_at TEXT NOT NULL,
            UNIQUE (platform, workspace_id, channel_id, thread_id)
        )""",
    )
    # 'pending': a reply being written (or left behind by a crash); `attempts` counts how
    # often start-up recovery re-answered it, so it is re-answered at most once.
    await _rebuild(
        db,
        "turns",
        """CREATE TABLE turns (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
            seq INTEGER NOT NULL,
            role TEXT NOT NULL CHECK (role IN ('user', 'model')),
            author_id TEXT,
            author_name TEXT,
            author_is_bot INTEGER NOT NULL DEFAULT 0,
            parts TEXT NOT NULL,
            status TEXT NOT NULL
                CHECK (status IN ('complete', 'partial', 'failed', 'pending')),
            finish_reason TEXT,
            prompt_tokens INTEGER NOT NULL DEFAULT 0,
            output_tokens INTEGER NOT NULL DEFAULT 0,
            token_estimate INTEGER NOT NULL DEFAULT 0,
            message_ids TEXT NOT NULL DEFAULT '[]',
            error TEXT,
            created_at TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            UNIQUE (conversation_id, seq)
        )""",
    )
    await db.execute("CREATE INDEX turns_pending ON turns (status) WHERE status = 'pending'")
    await db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")


def tools_sql() -> list[str]:
    """Migration 003's statements, the same SQL on both engines."""
    return [
        *(
            f"ALTER TABLE {table} ADD COLUMN {col} INTEGER NOT NULL DEFAULT 0"
            for table in ("turns", "usage")
            for col in ("tool_tokens", "cached_tokens")
        ),
        # Comma-separated tool names a channel admin switched off ('' = none).
        "ALTER TABLE channel_settings ADD COLUMN tools_off TEXT NOT NULL DEFAULT ''",
    ]


async def m003_tools(db: aiosqlite.Connection) -> None:
    """Tool and cached prompt tokens per turn and per user-day; tools a channel turned off."""
    for sql in tools_sql():
        await db.execute(sql)


# Which process answers a pending reply: on PostgreSQL, replicas take over the replies of
# one that died; SQLite has one process, so the column stays empty there (kept for the same
# schema on both engines).
REPLICAS_SQL = "ALTER TABLE turns ADD COLUMN owner TEXT"


async def m004_replicas(db: aiosqlite.Connection) -> None:
    """The process answering each pending reply (owner)."""
    await db.execute(REPLICAS_SQL)


async def m005_shared_limits(db: aiosqlite.Connection) -> None:
    """Nothing on SQLite: PostgreSQL's 005 shares platform budgets between replicas, and
    SQLite's one process keeps its limiters in memory. Kept so both engines' migrations
    keep the same names in the same order."""


def refuse_unknown(done: set[str], known: list[str]) -> None:
    """A database with migrations this version does not know was written by a newer one:
    refuse it (SchemaTooNew) rather than run on a schema this code may misread."""
    stray = done - set(known)
    if stray:
        raise SchemaTooNew(
            f"database has migrations this version does not know: {', '.join(sorted(stray))} "
            "(was it written by a newer gemini-bot?)"
        )


def installations_sql(time_type: str) -> list[str]:
    """Migration 006's statements (`time_type`: each engine's type for a moment)."""
    return [
        # The app's installs by OAuth, one per workspace; the token is ciphertext.
        f"""CREATE TABLE installations (
            platform TEXT NOT NULL,
            workspace_id TEXT NOT NULL,
            enterprise_id TEXT,
            bot_user_id TEXT NOT NULL,
            bot_id TEXT NOT NULL,
            token TEXT NOT NULL,
            scopes TEXT NOT NULL DEFAULT '',
            installer_id TEXT,
            installed_at {time_type} NOT NULL,
            PRIMARY KEY (platform, workspace_id)
        )""",
        # OAuth states handed to browsers, each good once until it expires.
        f"CREATE TABLE oauth_states (state TEXT PRIMARY KEY, expires_at {time_type} NOT NULL)",
    ]


async def m006_installations(db: aiosqlite.Connection) -> None:
    """Installations by OAuth (many workspaces) and OAuth states."""
    for sql in installations_sql("TEXT"):
        await db.execute(sql)


MIGRATIONS: list[tuple[str, Migration]] = [
    ("001_initial", m001_initial),
    ("002_checkpointed_replies", m002_checkpointed_replies),
    ("003_tools", m003_tools),
    ("004_replicas", m004_replicas),
    ("005_shared_limits", m005_shared_limits),
    ("006_installations", m006_installations),
]


async def migrate(db: aiosqlite.Connection) -> list[str]:
    """Apply pending migrations in order, each in its own transaction; return their names."""
    await db.execute(
        "CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)"
    )
    async with db.execute("SELECT name FROM _migrations") as cur:
        done = {row[0] for row in await cur.fetchall()}
    refuse_unknown(done, [name for name, _ in MIGRATIONS])
    applied: list[str] = []
    # Table rebuilds need foreign keys off (a DROP would cascade); they are checked before
    # each commit instead, and turned back on whatever happens.
    fks = next(iter(await db.execute_fetchall("PRAGMA foreign_keys")))[0]
    await db.execute("PRAGMA foreign_keys=OFF")
    try:
        for name, fn in MIGRATIONS:
            if name not in done:
                await _apply(db, name, fn)
                applied.append(name)
    finally:
        await db.execute(f"PRAGMA foreign_keys={'ON' if fks else 'OFF'}")
    return applied


async def _apply(db: aiosqlite.Connection, name: str, fn: Migration) -> None:
    await db.execute("BEGIN IMMEDIATE")
    try:
        await fn(db)
        broken = list(await db.execute_fetchall("PRAGMA foreign_key_check"))
        if broken:
            raise RuntimeError(f"migration {name} broke {len(broken)} foreign key(s)")
        await db.execute(
            "INSERT INTO _migrations (name, applied_at) VALUES (?, ?)",
            (name, datetime.now(UTC).isoformat()),
        )
        await db.execute("COMMIT")
    except BaseException:
        await db.execute("ROLLBACK")
        raise
