"""SqliteStore: the durable Store on aiosqlite (WAL, busy timeout, foreign keys)."""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Generic, TypeVar

import aiosqlite

from bot.types import (
    Author,
    Conversation,
    DailyUsage,
    History,
    NewTurn,
    RemoteFile,
    ThreadKey,
    Turn,
    Usage,
)
from storage.blobs import BlobDir
from storage.codec import dump_parts, load_parts
from storage.migrations import migrate

log = logging.getLogger(__name__)

_TURN_COLS = (
    "id, seq, role, author_id, author_name, author_is_bot, parts, status, finish_reason, "
    "prompt_tokens, output_tokens, token_estimate, message_ids, error, created_at"
)
# History is read newest first in pages, so a 5,000-turn thread costs what a short one does.
_PAGE = 64
CACHED_CONVERSATIONS = 4096
CACHED_TAILS = 512

K = TypeVar("K")
V = TypeVar("V")


class LRU(Generic[K, V]):
    """A small least-recently-used map."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._d: OrderedDict[K, V] = OrderedDict()

    def __contains__(self, key: K) -> bool:
        return key in self._d

    def get(self, key: K) -> V | None:
        """The value, marking it recently used."""
        if key not in self._d:
            return None
        self._d.move_to_end(key)
        return self._d[key]

    def put(self, key: K, value: V) -> None:
        """Store, evicting the least recently used entry when full."""
        self._d[key] = value
        self._d.move_to_end(key)
        if len(self._d) > self.size:
            self._d.popitem(last=False)

    def pop(self, key: K) -> None:
        """Forget a key."""
        self._d.pop(key, None)


class _Tail:
    """A conversation's first turn and its newest turns, decoded once and kept current."""

    __slots__ = ("complete", "first", "recent")

    def __init__(self, first: Turn | None, recent: list[Turn], *, complete: bool) -> None:
        self.first = first
        self.recent = recent  # contiguous, oldest first, ending at the newest turn
        self.complete = complete  # True when `recent` reaches back to seq 2

    def add(self, turn: Turn) -> None:
        if self.first is None:
            self.first = turn
        else:
            self.recent.append(turn)

    def history(self, budget: int) -> History | None:
        """The history for `budget`, or None when older turns must be read first."""
        if self.first is None:
            return History((), 0, 0)
        used = self.first.token_estimate
        kept = 0
        for t in reversed(self.recent):
            if used + t.token_estimate > budget:
                break
            used += t.token_estimate
            kept += 1
        else:
            if not self.complete:
                return None
        if kept < len(self.recent) - 1:
            # Keep one turn past the budget's edge, drop the rest from memory.
            del self.recent[: len(self.recent) - kept - 1]
            self.complete = False
        last_seq = self.recent[-1].seq if self.recent else self.first.seq
        turns = (self.first, *self.recent[len(self.recent) - kept :])
        return History(turns, last_seq - len(turns), used)


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _turn(row: Any) -> Turn:
    (
        id_,
        seq,
        role,
        a_id,
        a_name,
        a_bot,
        parts,
        status,
        finish,
        p_tok,
        o_tok,
        est,
        mids,
        err,
        at,
    ) = row
    author = Author(str(a_id), str(a_name), bool(a_bot)) if a_id is not None else None
    return Turn(
        id=int(id_),
        seq=int(seq),
        role=role,
        parts=load_parts(str(parts)),
        author=author,
        status=status,
        finish_reason=finish,
        usage=Usage(int(p_tok), int(o_tok)),
        token_estimate=int(est),
        message_ids=tuple(json.loads(str(mids))),
        error=err,
        created_at=datetime.fromisoformat(str(at)),
    )


class SqliteStore:
    """Conversations and everything around them in one SQLite file."""

    def __init__(self, path: Path, *, blob_dir: Path, max_blob_bytes: int) -> None:
        self.path = path
        self.blobs = BlobDir(blob_dir, max_bytes=max_blob_bytes)
        self._db: aiosqlite.Connection | None = None
        # This process is the database's only writer, so these caches stay coherent: every
        # write goes through the methods below, which update them.
        self._convs: LRU[ThreadKey, Conversation] = LRU(CACHED_CONVERSATIONS)
        self._channels: LRU[tuple[str, str, str], str | None] = LRU(CACHED_CONVERSATIONS)
        self._tails: LRU[int, _Tail] = LRU(CACHED_TAILS)

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
        await self._rows(
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
        await self._rows("UPDATE conversations SET persona=? WHERE id=?", (persona, conv.id))
        self._convs.put(key, replace(conv, persona=persona))

    async def forget(self, key: ThreadKey) -> bool:
        """Delete a conversation and (by cascade) its turns."""
        conv = await self.get_conversation(key)
        self._convs.pop(key)
        if conv is not None:
            self._tails.pop(conv.id)
        return bool(
            await self._rows(
                "DELETE FROM conversations "
                "WHERE platform=? AND workspace_id=? AND channel_id=? AND thread_id=? "
                "RETURNING 1",
                (key.platform, key.workspace_id, key.channel_id, key.thread_id),
            )
        )

    # -- turns -------------------------------------------------------------

    async def append_turn(self, conversation_id: int, turn: NewTurn) -> Turn:
        """Write one turn; one statement, so one transaction, with the next seq."""
        created = datetime.now(UTC)
        a = turn.author
        rows = await self._rows(
            "INSERT INTO turns (conversation_id, seq, role, author_id, author_name, "
            "author_is_bot, parts, status, finish_reason, prompt_tokens, output_tokens, "
            "token_estimate, message_ids, error, created_at) VALUES (?, "
            "(SELECT COALESCE(MAX(seq), 0) + 1 FROM turns WHERE conversation_id=?), "
            "?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id, seq",
            (
                conversation_id,
                conversation_id,
                turn.role,
                a.id if a else None,
                a.name if a else None,
                int(a.is_bot) if a else 0,
                dump_parts(turn.parts),
                turn.status,
                turn.finish_reason,
                turn.usage.prompt_tokens,
                turn.usage.output_tokens,
                turn.token_estimate,
                json.dumps(list(turn.message_ids)),
                turn.error,
                created.isoformat(),
            ),
        )
        row = rows[0] if rows else None
        assert row is not None
        stored = turn.stored(id=int(row[0]), seq=int(row[1]), created_at=created)
        tail = self._tails.get(conversation_id)
        if tail is not None:
            tail.add(stored)
        return stored

    async def load_history(self, conversation_id: int, *, token_budget: int) -> History:
        """First turn + newest turns that fit the budget; reads only what it keeps."""
        tail = self._tails.get(conversation_id)
        if tail is not None:
            history = tail.history(token_budget)
            if history is not None:
                return history
        tail = await self._read_tail(conversation_id, token_budget)
        self._tails.put(conversation_id, tail)
        history = tail.history(token_budget)
        assert history is not None
        return history

    async def _read_tail(self, conversation_id: int, token_budget: int) -> _Tail:
        """Read the first turn and, newest first, the turns that fit the budget."""
        rows = await self._rows(
            f"SELECT {_TURN_COLS} FROM turns WHERE conversation_id=? ORDER BY seq LIMIT 1",
            (conversation_id,),
        )
        first_row = rows[0] if rows else None
        if first_row is None:
            return _Tail(None, [], complete=True)
        first = _turn(first_row)
        used = first.token_estimate
        recent: list[Turn] = []
        offset = 0
        while True:
            rows = await self._rows(
                f"SELECT {_TURN_COLS} FROM turns WHERE conversation_id=? AND seq > 1 "
                f"ORDER BY seq DESC LIMIT ? OFFSET ?",
                (conversation_id, _PAGE, offset),
            )
            for row in rows:
                t = _turn(row)
                recent.append(t)
                used += t.token_estimate
                if used > token_budget:
                    # One turn past the budget, so the tail knows where the budget ends.
                    recent.reverse()
                    return _Tail(first, recent, complete=False)
            if len(rows) < _PAGE:
                recent.reverse()
                return _Tail(first, recent, complete=True)
            offset += _PAGE

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
        await self._rows(
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
        await self._rows(
            "INSERT INTO remote_files (sha256, uri, name, mime_type, expires_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (sha256) DO UPDATE SET uri=excluded.uri, "
            "name=excluded.name, mime_type=excluded.mime_type, expires_at=excluded.expires_at",
            (sha256, remote.uri, remote.name, remote.mime_type, remote.expires_at.isoformat()),
        )

    # -- channel settings --------------------------------------------------

    async def get_channel_persona(
        self, platform: str, workspace_id: str, channel_id: str
    ) -> str | None:
        """The channel's default persona."""
        ckey = (platform, workspace_id, channel_id)
        if ckey in self._channels:
            return self._channels.get(ckey)
        rows = await self._rows(
            "SELECT default_persona FROM channel_settings "
            "WHERE platform=? AND workspace_id=? AND channel_id=?",
            (platform, workspace_id, channel_id),
        )
        row = rows[0] if rows else None
        persona = row[0] if row else None
        self._channels.put(ckey, persona)
        return persona

    async def set_channel_persona(
        self, platform: str, workspace_id: str, channel_id: str, persona: str | None
    ) -> None:
        """Set or clear the channel's default persona."""
        await self._rows(
            "INSERT INTO channel_settings (platform, workspace_id, channel_id, default_persona) "
            "VALUES (?, ?, ?, ?) "
            "ON CONFLICT DO UPDATE SET default_persona=excluded.default_persona",
            (platform, workspace_id, channel_id, persona),
        )
        self._channels.put((platform, workspace_id, channel_id), persona)

    # -- events and usage --------------------------------------------------

    async def mark_event(self, platform: str, event_id: str) -> bool:
        """Record an event id; False when it was already there."""
        return bool(
            await self._rows(
                "INSERT INTO processed_events (platform, event_id, seen_at) VALUES (?, ?, ?) "
                "ON CONFLICT DO NOTHING RETURNING 1",
                (platform, event_id, _now()),
            )
        )

    async def prune_events(self, *, older_than: datetime) -> int:
        """Forget event ids seen before `older_than`."""
        return len(
            await self._rows(
                "DELETE FROM processed_events WHERE seen_at < ? RETURNING 1",
                (older_than.isoformat(),),
            )
        )

    async def add_usage(self, platform: str, user_id: str, *, day: str, usage: Usage) -> None:
        """Add one turn to a user's day."""
        await self._rows(
            "INSERT INTO usage (platform, user_id, day, turns, prompt_tokens, output_tokens) "
            "VALUES (?, ?, ?, 1, ?, ?) ON CONFLICT DO UPDATE SET turns=turns+1, "
            "prompt_tokens=prompt_tokens+excluded.prompt_tokens, "
            "output_tokens=output_tokens+excluded.output_tokens",
            (platform, user_id, day, usage.prompt_tokens, usage.output_tokens),
        )

    async def get_usage(self, platform: str, user_id: str, *, day: str) -> DailyUsage:
        """A user's usage on a day."""
        rows = await self._rows(
            "SELECT turns, prompt_tokens, output_tokens FROM usage "
            "WHERE platform=? AND user_id=? AND day=?",
            (platform, user_id, day),
        )
        row = rows[0] if rows else None
        return DailyUsage(*row) if row else DailyUsage(0, 0, 0)
