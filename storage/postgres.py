"""PostgresStore: the Store on PostgreSQL through an asyncpg pool, for several replicas.

Any number of processes may write at once, so nothing is cached here: every read asks the
database (the SQLite store's caches are its single-writer layer). Turn numbers come from
`conversations.last_seq`, bumped in the same transaction as the insert, which locks the
conversation's row: concurrent writers never compute the same number, and a rolled-back
turn gives its number back. Attachment bytes live in the database (bytea, capped at
ATTACHMENT_MAX_BYTES), so a replica never needs another one's disk.
"""

from __future__ import annotations

import logging
import os
import secrets
from datetime import UTC, datetime
from typing import Any

import asyncpg

from bot.types import (
    Conversation,
    History,
    NewTurn,
    PendingReply,
    ThreadKey,
    Turn,
    TurnUpdate,
)
from storage.history import PAGE, history, read_recent
from storage.pg_installs import PgInstallations
from storage.pg_migrations import Db, migrate
from storage.pg_side import PgSideTables
from storage.rows import NEW_TURN_COLS, TURN_COLS, changed_columns, turn_from_row, turn_values

log = logging.getLogger(__name__)

COMMAND_TIMEOUT_S = 60.0

_CONV_COLS = "id, persona, created_at"
_KEY_COLS = "(platform, workspace_id, channel_id, thread_id)"
_KEY_WHERE = "platform=$1 AND workspace_id=$2 AND channel_id=$3 AND thread_id=$4"
_INSERT_TURN = (
    f"INSERT INTO turns (conversation_id, seq, created_at, owner, {NEW_TURN_COLS}) VALUES "
    f"({', '.join(f'${i}' for i in range(1, 19))}) RETURNING id"
)


def new_replica_id() -> str:
    """A name for a store made without one (tests): unique among replicas."""
    return f"store-{os.getpid()}-{secrets.token_hex(4)}"


async def _keep_session(conn: Any) -> None:
    """Nothing to reset when a pooled connection comes back: this store sets no session
    state (no LISTEN, no session locks, no SET; the gate has its own connection), and
    asyncpg still rolls back a transaction left open. asyncpg's default reset costs a
    round trip per use, half the statements of a turn (bench/replicas.py)."""


def _key(key: ThreadKey) -> tuple[str, str, str, str]:
    return (key.platform, key.workspace_id, key.channel_id, key.thread_id)


def _conversation(key: ThreadKey, row: Any) -> Conversation:
    return Conversation(int(row["id"]), key, row["persona"], row["created_at"])


class PostgresStore(PgSideTables, PgInstallations):
    """Conversations and everything around them in one PostgreSQL database."""

    def __init__(
        self, url: str, *, max_blob_bytes: int, replica: str = "", pool_size: int = 10
    ) -> None:
        self.url = url
        # This process's name among the replicas: written as the owner of the replies it
        # accepts, so the others know whose replies to take over if it dies.
        self.replica = replica or new_replica_id()
        self.max_blob_bytes = max_blob_bytes
        self.pool_size = pool_size
        self._pool: asyncpg.Pool | None = None

    @property
    def pool(self) -> asyncpg.Pool:
        """The open connection pool."""
        if self._pool is None:
            raise RuntimeError("store is not open")
        return self._pool

    async def open(self) -> None:
        """Connect and migrate (replicas starting together apply each migration once)."""
        # command_timeout: a statement that hangs (a half-open connection) fails instead.
        pool = await asyncpg.create_pool(
            self.url,
            min_size=1,
            max_size=self.pool_size,
            command_timeout=COMMAND_TIMEOUT_S,
            reset=_keep_session,
        )
        try:
            async with pool.acquire() as db:
                applied = await migrate(db)
        except BaseException:
            await pool.close()
            raise
        if applied:
            log.info("database: applied migrations %s", ", ".join(applied))
        self._pool = pool

    async def close(self) -> None:
        """Close the pool."""
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def ping(self) -> bool:
        """True when a trivial query answers."""
        if self._pool is None:
            return False
        try:
            return bool(await self._pool.fetchval("SELECT 1", timeout=5))
        except Exception:
            return False

    async def applied_migrations(self) -> list[str]:
        """Names of the applied migrations, in order."""
        rows = await self.pool.fetch("SELECT name FROM _migrations ORDER BY name")
        return [str(r["name"]) for r in rows]

    # -- conversations -----------------------------------------------------

    async def get_conversation(self, key: ThreadKey) -> Conversation | None:
        """The conversation for `key`, if any."""
        row = await self.pool.fetchrow(
            f"SELECT {_CONV_COLS} FROM conversations WHERE {_KEY_WHERE}", *_key(key)
        )
        return None if row is None else _conversation(key, row)

    async def get_or_create_conversation(self, key: ThreadKey) -> Conversation:
        """The conversation for `key`, created when missing."""
        found = await self.get_conversation(key)
        if found is not None:
            return found
        # DO UPDATE (of nothing) rather than DO NOTHING: the row comes back either way, even
        # when another replica created it a moment ago.
        row = await self.pool.fetchrow(
            "INSERT INTO conversations (platform, workspace_id, channel_id, thread_id, "
            "created_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT "
            f"{_KEY_COLS} DO UPDATE SET platform=EXCLUDED.platform "
            f"RETURNING {_CONV_COLS}",
            *_key(key),
            datetime.now(UTC),
        )
        return _conversation(key, row)

    async def set_thread_persona(self, key: ThreadKey, persona: str | None) -> None:
        """Pin a persona for one thread."""
        await self.pool.execute(
            "INSERT INTO conversations (platform, workspace_id, channel_id, thread_id, "
            "created_at, persona) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT "
            f"{_KEY_COLS} DO UPDATE SET persona=EXCLUDED.persona",
            *_key(key),
            datetime.now(UTC),
            persona,
        )

    async def forget(self, key: ThreadKey) -> bool:
        """Delete a conversation and (by cascade) its turns."""
        rows = await self.pool.fetch(
            f"DELETE FROM conversations WHERE {_KEY_WHERE} RETURNING id", *_key(key)
        )
        return bool(rows)

    # -- turns -------------------------------------------------------------

    async def append_turn(self, conversation_id: int, turn: NewTurn) -> Turn:
        """Write one turn with the conversation's next number, in one transaction."""
        async with self.pool.acquire() as db, db.transaction():
            seq = await db.fetchval(
                "UPDATE conversations SET last_seq=last_seq+1 WHERE id=$1 RETURNING last_seq",
                conversation_id,
            )
            if seq is None:
                raise KeyError(f"conversation {conversation_id} does not exist")
            return await self._insert(db, conversation_id, int(seq), turn)

    async def _insert(self, db: Db, conv_id: int, seq: int, turn: NewTurn) -> Turn:
        created = datetime.now(UTC)
        turn_id = await db.fetchval(
            _INSERT_TURN, conv_id, seq, created, self.replica, *turn_values(turn)
        )
        return turn.stored(id=int(turn_id), seq=seq, created_at=created)

    async def accept_turn(
        self, key: ThreadKey, *, user: NewTurn, reply: NewTurn, event: tuple[str, str] | None
    ) -> tuple[Conversation, Turn, Turn] | None:
        """In one transaction: mark `event` seen, then store the user turn and its pending
        reply. None (and nothing written) when the event was seen before, by any replica."""
        now = datetime.now(UTC)
        async with self.pool.acquire() as db, db.transaction():
            if event is not None and not await db.fetchval(
                "INSERT INTO processed_events (platform, event_id, seen_at) VALUES ($1, $2, $3) "
                "ON CONFLICT DO NOTHING RETURNING 1",
                *event,
                now,
            ):
                return None
            # Create-or-bump in one statement: it takes the conversation's row lock, so a
            # forget() or another replica's turn on this thread waits for our commit.
            row = await db.fetchrow(
                "INSERT INTO conversations (platform, workspace_id, channel_id, thread_id, "
                "created_at, last_seq) VALUES ($1, $2, $3, $4, $5, 2) ON CONFLICT "
                f"{_KEY_COLS} DO UPDATE SET last_seq=conversations.last_seq+2 "
                f"RETURNING {_CONV_COLS}, last_seq",
                *_key(key),
                now,
            )
            assert row is not None  # an upsert always returns its row
            conv = _conversation(key, row)
            last = int(row["last_seq"])
            user_turn = await self._insert(db, conv.id, last - 1, user)
            model_turn = await self._insert(db, conv.id, last, reply)
        return conv, user_turn, model_turn

    async def update_turn(
        self, conversation_id: int, turn_id: int, change: TurnUpdate
    ) -> Turn | None:
        """Apply `change` to a stored turn; None when it is gone (its thread was forgotten)."""
        pairs = changed_columns(change)
        if not pairs:
            return None
        sets = ", ".join(f"{col}=${i}" for i, (col, _) in enumerate(pairs, start=1))
        n = len(pairs)
        # A reply another replica took over (its owner changed) is no longer ours to
        # write: a replica cut off from the database must not overwrite the new answer.
        row = await self.pool.fetchrow(
            f"UPDATE turns SET {sets} WHERE id=${n + 1} AND conversation_id=${n + 2} "
            f"AND (role='user' OR owner IS NOT DISTINCT FROM ${n + 3}) RETURNING {TURN_COLS}",
            *(value for _, value in pairs),
            turn_id,
            conversation_id,
            self.replica,
        )
        return None if row is None else turn_from_row(row)

    async def pending_replies(self) -> list[PendingReply]:
        """Replies left pending, each with the user turn just before it, oldest first."""
        return await self.pending_replies_of(None)

    async def pending_replies_of(self, turn_ids: list[int] | None) -> list[PendingReply]:
        """Pending replies (only these model turns, unless None), each with its user turn."""
        user_cols = ", ".join(f"u.{c.strip()} AS u_{c.strip()}" for c in TURN_COLS.split(","))
        model_cols = ", ".join(f"m.{c.strip()}" for c in TURN_COLS.split(","))
        rows = await self.pool.fetch(
            "SELECT c.id AS conv_id, c.platform, c.workspace_id, c.channel_id, c.thread_id, "
            f"c.persona, c.created_at AS conv_at, {user_cols}, {model_cols} "
            "FROM turns m JOIN conversations c ON c.id = m.conversation_id "
            "JOIN turns u ON u.conversation_id = m.conversation_id AND u.seq = m.seq - 1 "
            "WHERE m.status = 'pending' AND u.role = 'user' "
            "AND ($1::bigint[] IS NULL OR m.id = ANY($1::bigint[])) ORDER BY m.id",
            turn_ids,
        )
        width = len(TURN_COLS.split(","))
        found = []
        for r in rows:
            values = list(r.values())
            key = ThreadKey(r["platform"], r["workspace_id"], r["channel_id"], r["thread_id"])
            conv = Conversation(int(r["conv_id"]), key, r["persona"], r["conv_at"])
            user = turn_from_row(values[7 : 7 + width])
            model = turn_from_row(values[7 + width :])
            found.append(PendingReply(conv, user, model))
        return found

    async def load_history(self, conversation_id: int, *, token_budget: int) -> History:
        """First turn + newest turns that fit the budget; reads only what it keeps."""
        # One snapshot for every page: a turn written meanwhile must not shift them.
        async with (
            self.pool.acquire() as db,
            db.transaction(isolation="repeatable_read", readonly=True),
        ):
            row = await db.fetchrow(
                f"SELECT {TURN_COLS} FROM turns WHERE conversation_id=$1 ORDER BY seq LIMIT 1",
                conversation_id,
            )
            if row is None:
                return History((), 0, 0)
            first = turn_from_row(row)

            async def page(offset: int) -> list[Turn]:
                rows = await db.fetch(
                    f"SELECT {TURN_COLS} FROM turns WHERE conversation_id=$1 AND seq > 1 "
                    "ORDER BY seq DESC LIMIT $2 OFFSET $3",
                    conversation_id,
                    PAGE,
                    offset,
                )
                return [turn_from_row(r) for r in rows]

            newest_first, _ = await read_recent(first, page, token_budget)
        return history(first, newest_first, token_budget)

    async def count_turns(self, conversation_id: int) -> int:
        """Number of turns stored for a conversation."""
        n = await self.pool.fetchval(
            "SELECT COUNT(*) FROM turns WHERE conversation_id=$1", conversation_id
        )
        return int(n or 0)
