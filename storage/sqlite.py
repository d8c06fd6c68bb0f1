"""SqliteStore: the durable Store on aiosqlite (WAL, busy timeout, foreign keys)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite

from bot.types import (
    Conversation,
    DailyUsage,
    History,
    NewTurn,
    PendingReply,
    RemoteFile,
    ThreadKey,
    Turn,
    TurnUpdate,
    Usage,
)
from storage.blobs import BlobDir
from storage.cache import LRU, Tail
from storage.channels import ChannelSettings
from storage.history import PAGE, read_recent
from storage.migrations import migrate
from storage.rows import INSERT_TURN, TURN_COLS, changed_columns, turn_from_row, turn_params
from storage.sqlite_installs import SqliteInstallations
from storage.usage_sql import ADD_USAGE, GET_USAGE, usage_params

log = logging.getLogger(__name__)

CACHED_CONVERSATIONS = 1024
CACHED_TAILS = 512


def _now() -> str:
    return datetime.now(UTC).isoformat()


class SqliteStore(ChannelSettings, SqliteInstallations):
    """Conversations and everything around them in one SQLite file."""

    def __init__(self, path: Path, *, blob_dir: Path, max_blob_bytes: int) -> None:
        self.path = path
        self.blobs = BlobDir(blob_dir, max_bytes=max_blob_bytes)
        self._db: aiosqlite.Connection | None = None
        # This process is the database's only writer, so these caches stay coherent: every
        # write goes through the methods below, which update them.
        self._convs: LRU[ThreadKey, Conversation] = LRU(CACHED_CONVERSATIONS)
        self._channels: LRU[tuple[str, str, str], str | None] = LRU(CACHED_CONVERSATIONS)
        self._tools_off: LRU[tuple[str, str, str], frozenset[str]] = LRU(CACHED_CONVERSATIONS)
        self._tails: LRU[int, Tail] = LRU(CACHED_TAILS)
        # One connection: a statement sent while a transaction is open would join it (and
        # be rolled back with it), so writes and transactions take turns.
        self._write_lock = asyncio.Lock()

    @property
    def db(self) -> aiosqlite.Connection:
        """The open connection."""
        if self._db is None:
            raise RuntimeError("store is not open")
        return self._db

    async def open(self) -> None:
        """Open, configure and migrate."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN ourselves, so each statement stands alone.
        db = await aiosqlite.connect(self.path, isolation_level=None)
        try:
            await db.execute("PRAGMA journal_mode=WAL")
            await db.execute("PRAGMA busy_timeout=5000")
            await db.execute("PRAGMA foreign_keys=ON")
            # WAL + NORMAL: durable across process crashes; only an OS crash can lose the
            # last commits, which is the usual trade for a chat log.
            await db.execute("PRAGMA synchronous=NORMAL")
            applied = await migrate(db)
        except BaseException:
            await db.close()
            raise
        if applied:
            log.info("database %s: applied migrations %s", self.path, ", ".join(applied))
        self._db = db

    async def close(self) -> None:
        """Close the connection."""
        if self._db is not None:
            await self._db.close()
            self._db = None

    async def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        """Run one statement and fetch its rows in one trip to the database thread."""
        return list(await self.db.execute_fetchall(sql, params))

    async def _write(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        """Run one writing statement, never inside another task's transaction."""
        async with self._write_lock:
            return await self._rows(sql, params)

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[None]:
        async with self._write_lock:
            await self.db.execute("BEGIN IMMEDIATE")
            try:
                yield
                await self.db.execute("COMMIT")
            except BaseException:
                # Also after a failed COMMIT: the one connection must never stay inside it.
                if self.db.in_transaction:
                    await self.db.execute("ROLLBACK")
                raise

    async def ping(self) -> bool:
        """True when a trivial query answers."""
        if self._db is None:
            return False
        try:
            async with self._db.execute("SELECT 1") as cur:
                return (await cur.fetchone()) is not None
        except Exception:
            return False

    async def applied_migrations(self) -> list[str]:
        """Names of the applied migrations, in order."""
        return [r[0] for r in await self._rows("SELECT name FROM _migrations ORDER BY name")]

    # -- conversations -----------------------------------------------------

    async def get_conversation(self, key: ThreadKey) -> Conversation | None:
        """The conversation for `key`, if any."""
        cached = self._convs.get(key)
        if cached is not None:
            return cached
        # Under the write lock: on our one connection a read sent during another task's
        # transaction would see (and cache) rows that may still be rolled back, and a forget
        # between the read and the caching would leave a dead row cached.
        async with self._write_lock:
            rows = await self._rows(
                "SELECT id, persona, created_at FROM conversations "
                "WHERE platform=? AND workspace_id=? AND channel_id=? AND thread_id=?",
                (key.platform, key.workspace_id, key.channel_id, key.thread_id),
            )
            row = rows[0] if rows else None
            if row is None:
                return None
            conv = Conversation(int(row[0]), key, row[1], datetime.fromisoformat(row[2]))
            self._convs.put(key, conv)
        return conv

    async def get_or_create_conversation(self, key: ThreadKey) -> Conversation:
        """The conversation for `key`, created when missing."""
        found = await self.get_conversation(key)
        if found is not None:
            return found
        await self._write(
            "INSERT INTO conversations (platform, workspace_id, channel_id, thread_id, created_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (key.platform, key.workspace_id, key.channel_id, key.thread_id, _now()),
        )
        created = await self.get_conversation(key)
        assert created is not None
        return created

    async def set_thread_persona(self, key: ThreadKey, persona: str | None) -> None:
        """Pin a persona for one thread."""
        conv = await self.get_or_create_conversation(key)
        await self._write("UPDATE conversations SET persona=? WHERE id=?", (persona, conv.id))
        self._convs.put(key, replace(conv, persona=persona))

    async def forget(self, key: ThreadKey) -> bool:
        """Delete a conversation and (by cascade) its turns."""
        async with self._write_lock:  # never between another task's accept and its commit
            rows = await self._rows(
                "DELETE FROM conversations "
                "WHERE platform=? AND workspace_id=? AND channel_id=? AND thread_id=? "
                "RETURNING id",
                (key.platform, key.workspace_id, key.channel_id, key.thread_id),
            )
            self._convs.pop(key)
            for (conv_id,) in rows:
                self._tails.pop(int(conv_id))
        return bool(rows)

    # -- turns -------------------------------------------------------------

    async def append_turn(self, conversation_id: int, turn: NewTurn) -> Turn:
        """Write one turn; one statement, so one transaction, with the next seq."""
        async with self._write_lock:
            return await self._insert_turn(conversation_id, turn)

    async def _insert_turn(
        self, conversation_id: int, turn: NewTurn, *, cache: bool = True
    ) -> Turn:
        created = datetime.now(UTC)
        rows = await self._rows(INSERT_TURN, turn_params(conversation_id, turn, created))
        stored = turn.stored(id=int(rows[0][0]), seq=int(rows[0][1]), created_at=created)
        if cache:
            self._cache_turn(conversation_id, stored)
        return stored

    def _cache_turn(self, conversation_id: int, turn: Turn) -> None:
        tail = self._tails.get(conversation_id)
        if tail is not None:
            tail.add(turn)

    async def accept_turn(
        self, key: ThreadKey, *, user: NewTurn, reply: NewTurn, event: tuple[str, str] | None
    ) -> tuple[Conversation, Turn, Turn] | None:
        """In one transaction: mark `event` seen, then store the user turn and its pending
        reply. None (and nothing written) when the event was seen before. The caches learn
        of it only after the commit: a rollback leaves them as the database is."""
        created = datetime.now(UTC).isoformat()
        async with self._transaction():
            if event is not None and not await self._rows(
                "INSERT INTO processed_events (platform, event_id, seen_at) VALUES (?, ?, ?) "
                "ON CONFLICT DO NOTHING RETURNING 1",
                (*event, created),
            ):
                return None
            # A cached conversation exists: only forget() removes one, and it waits for the
            # write lock we hold (and empties the cache when it gets it).
            conv = self._convs.get(key) or await self._conversation_in_tx(key, created)
            user_turn = await self._insert_turn(conv.id, user, cache=False)
            model_turn = await self._insert_turn(conv.id, reply, cache=False)
        self._convs.put(key, conv)
        self._cache_turn(conv.id, user_turn)
        self._cache_turn(conv.id, model_turn)
        return conv, user_turn, model_turn

    async def _conversation_in_tx(self, key: ThreadKey, created: str) -> Conversation:
        await self._rows(
            "INSERT INTO conversations (platform, workspace_id, channel_id, thread_id, "
            "created_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (key.platform, key.workspace_id, key.channel_id, key.thread_id, created),
        )
        rows = await self._rows(
            "SELECT id, persona, created_at FROM conversations "
            "WHERE platform=? AND workspace_id=? AND channel_id=? AND thread_id=?",
            (key.platform, key.workspace_id, key.channel_id, key.thread_id),
        )
        return Conversation(int(rows[0][0]), key, rows[0][1], datetime.fromisoformat(rows[0][2]))

    async def update_turn(
        self, conversation_id: int, turn_id: int, change: TurnUpdate
    ) -> Turn | None:
        """Apply `change` to a stored turn; None when it is gone (its thread was forgotten)."""
        pairs = changed_columns(change)
        sets = [f"{col}=?" for col, _ in pairs]
        params = [value for _, value in pairs]
        if not sets:
            return None
        rows = await self._write(
            f"UPDATE turns SET {', '.join(sets)} WHERE id=? AND conversation_id=? "
            f"RETURNING {TURN_COLS}",
            (*params, turn_id, conversation_id),
        )
        if not rows:
            return None
        turn = turn_from_row(rows[0])
        tail = self._tails.get(conversation_id)
        if tail is not None:
            tail.update(turn)
        return turn

    async def pending_replies(self) -> list[PendingReply]:
        """Replies left pending (by a crash), each with the user turn just before it."""
        found: list[PendingReply] = []
        rows = await self._rows(
            "SELECT t.conversation_id, c.platform, c.workspace_id, c.channel_id, c.thread_id, "
            "c.persona, c.created_at, t.seq FROM turns t JOIN conversations c "
            "ON c.id = t.conversation_id WHERE t.status = 'pending' ORDER BY t.id"
        )
        for conv_id, platform, ws, ch, th, persona, at, seq in rows:
            conv = Conversation(
                int(conv_id), ThreadKey(platform, ws, ch, th), persona, datetime.fromisoformat(at)
            )
            pair = [
                turn_from_row(r)
                for r in await self._rows(
                    f"SELECT {TURN_COLS} FROM turns WHERE conversation_id=? AND seq IN (?, ?) "
                    "ORDER BY seq",
                    (conv_id, int(seq) - 1, int(seq)),
                )
            ]
            if len(pair) == 2 and pair[0].role == "user":
                found.append(PendingReply(conv, pair[0], pair[1]))
        return found

    async def get_meta(self, key: str) -> str | None:
        """A value stored under `key` (small service state, e.g. a synced command hash)."""
        rows = await self._rows("SELECT value FROM meta WHERE key=?", (key,))
        return str(rows[0][0]) if rows else None

    async def set_meta(self, key: str, value: str) -> None:
        """Store `value` under `key`."""
        await self._write(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value=excluded.value",
            (key, value),
        )

    async def event_seen(self, platform: str, event_id: str) -> bool:
        """True when the event id was recorded before."""
        return bool(
            await self._rows(
                "SELECT 1 FROM processed_events WHERE platform=? AND event_id=?",
                (platform, event_id),
            )
        )

    async def load_history(self, conversation_id: int, *, token_budget: int) -> History:
        """First turn + newest turns that fit the budget; reads only what it keeps."""
        tail = self._tails.get(conversation_id)
        if tail is not None:
            history = tail.history(token_budget)
            if history is not None:
                return history
        async with self._write_lock:  # only committed turns, as for get_conversation
            tail = await self._read_tail(conversation_id, token_budget)
            self._tails.put(conversation_id, tail)
        history = tail.history(token_budget)
        assert history is not None
        return history

    async def _read_tail(self, conversation_id: int, token_budget: int) -> Tail:
        """Read the first turn and, newest first, the turns that fit the budget."""
        rows = await self._rows(
            f"SELECT {TURN_COLS} FROM turns WHERE conversation_id=? ORDER BY seq LIMIT 1",
            (conversation_id,),
        )
        if not rows:
            return Tail(None, [], complete=True)
        first = turn_from_row(rows[0])

        async def page(offset: int) -> list[Turn]:
            found = await self._rows(
                f"SELECT {TURN_COLS} FROM turns WHERE conversation_id=? AND seq > 1 "
                "ORDER BY seq DESC LIMIT ? OFFSET ?",
                (conversation_id, PAGE, offset),
            )
            return [turn_from_row(row) for row in found]

        newest_first, cut = await read_recent(first, page, token_budget)
        return Tail(first, newest_first[::-1], complete=not cut)

    async def count_turns(self, conversation_id: int) -> int:
        """Number of turns stored for a conversation."""
        rows = await self._rows(
            "SELECT COUNT(*) FROM turns WHERE conversation_id=?", (conversation_id,)
        )
        row = rows[0] if rows else None
        return int(row[0]) if row else 0

    # -- attachments -------------------------------------------------------

    async def put_blob(self, data: bytes, *, mime_type: str) -> str:
        """Store bytes under DATA_DIR/blobs and record them."""
        sha = await self.blobs.put(data)
        await self._write(
            "INSERT INTO blobs (sha256, mime_type, size, created_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT DO NOTHING",
            (sha, mime_type, len(data), _now()),
        )
        return sha

    async def get_blob(self, sha256: str) -> bytes:
        """Stored bytes; KeyError when missing."""
        return await self.blobs.get(sha256)

    async def get_remote_file(self, sha256: str) -> RemoteFile | None:
        """The provider file recorded for these bytes."""
        rows = await self._rows(
            "SELECT uri, mime_type, expires_at, name FROM remote_files WHERE sha256=?", (sha256,)
        )
        row = rows[0] if rows else None
        if row is None:
            return None
        return RemoteFile(row[0], row[1], datetime.fromisoformat(row[2]), row[3])

    async def put_remote_file(self, sha256: str, remote: RemoteFile) -> None:
        """Record (or replace) the provider file for these bytes."""
        await self._write(
            "INSERT INTO remote_files (sha256, uri, name, mime_type, expires_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (sha256) DO UPDATE SET uri=excluded.uri, "
            "name=excluded.name, mime_type=excluded.mime_type, expires_at=excluded.expires_at",
            (sha256, remote.uri, remote.name, remote.mime_type, remote.expires_at.isoformat()),
        )

    # -- events and usage --------------------------------------------------

    async def mark_event(self, platform: str, event_id: str) -> bool:
        """Record an event id; False when it was already there."""
        return bool(
            await self._write(
                "INSERT INTO processed_events (platform, event_id, seen_at) VALUES (?, ?, ?) "
                "ON CONFLICT DO NOTHING RETURNING 1",
                (platform, event_id, _now()),
            )
        )

    async def prune_events(self, *, older_than: datetime) -> int:
        """Forget event ids seen before `older_than`."""
        return len(
            await self._write(
                "DELETE FROM processed_events WHERE seen_at < ? RETURNING 1",
                (older_than.isoformat(),),
            )
        )

    async def add_usage(self, platform: str, user_id: str, *, day: str, usage: Usage) -> None:
        """Add one turn to a user's day."""
        await self._write(ADD_USAGE, usage_params(platform, user_id, day, usage))

    async def get_usage(self, platform: str, user_id: str, *, day: str) -> DailyUsage:
        """A user's usage on a day."""
        rows = await self._rows(GET_USAGE, (platform, user_id, day))
        return DailyUsage(*rows[0]) if rows else DailyUsage(0, 0, 0)
