"""MemoryStore: the Store contract in dicts; a fast fake for unit tests."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import UTC, datetime

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
from storage.blobs import check_size
from storage.history import history
from storage.memory_installs import MemoryInstallations


class MemoryStore(MemoryInstallations):
    """Keeps everything in process memory; passes the same contract tests as SqliteStore."""

    def __init__(self, *, max_blob_bytes: int = 50 * 1024 * 1024) -> None:
        super().__init__()
        self.max_blob_bytes = max_blob_bytes
        self._convs: dict[ThreadKey, Conversation] = {}
        self._turns: dict[int, list[Turn]] = {}
        self._blobs: dict[str, bytes] = {}
        self._remote: dict[str, RemoteFile] = {}
        self._channels: dict[tuple[str, str, str], str | None] = {}
        self._events: dict[tuple[str, str], datetime] = {}
        self._usage: dict[tuple[str, str, str], DailyUsage] = {}
        self._tools_off: dict[tuple[str, str, str], frozenset[str]] = {}
        self._meta: dict[str, str] = {}
        self._next_conv = 1
        self._next_turn = 1
        self.is_open = False

    async def open(self) -> None:
        """Nothing to open."""
        self.is_open = True

    async def close(self) -> None:
        """Nothing to close."""
        self.is_open = False

    async def ping(self) -> bool:
        """True while open."""
        return self.is_open

    async def applied_migrations(self) -> list[str]:
        """None: memory has no schema."""
        return []

    async def get_conversation(self, key: ThreadKey) -> Conversation | None:
        """The conversation for `key`, if any."""
        return self._convs.get(key)

    async def get_or_create_conversation(self, key: ThreadKey) -> Conversation:
        """The conversation for `key`, created when missing."""
        conv = self._convs.get(key)
        if conv is None:
            conv = Conversation(self._next_conv, key, None, datetime.now(UTC))
            self._next_conv += 1
            self._convs[key] = conv
            self._turns[conv.id] = []
        return conv

    async def set_thread_persona(self, key: ThreadKey, persona: str | None) -> None:
        """Pin a persona for one thread."""
        conv = await self.get_or_create_conversation(key)
        self._convs[key] = replace(conv, persona=persona)

    async def forget(self, key: ThreadKey) -> bool:
        """Delete a conversation and its turns."""
        conv = self._convs.pop(key, None)
        if conv is None:
            return False
        self._turns.pop(conv.id, None)
        return True

    async def append_turn(self, conversation_id: int, turn: NewTurn) -> Turn:
        """Append with the next seq."""
        turns = self._turns[conversation_id]
        stored = turn.stored(id=self._next_turn, seq=len(turns) + 1, created_at=datetime.now(UTC))
        self._next_turn += 1
        turns.append(stored)
        return stored

    async def accept_turn(
        self, key: ThreadKey, *, user: NewTurn, reply: NewTurn, event: tuple[str, str] | None
    ) -> tuple[Conversation, Turn, Turn] | None:
        """Mark the event, store the user turn and its pending reply."""
        if event is not None and not await self.mark_event(*event):
            return None
        conv = await self.get_or_create_conversation(key)
        return conv, await self.append_turn(conv.id, user), await self.append_turn(conv.id, reply)

    async def update_turn(
        self, conversation_id: int, turn_id: int, change: TurnUpdate
    ) -> Turn | None:
        """Change a stored turn."""
        turns = self._turns.get(conversation_id, [])
        for i, t in enumerate(turns):
            if t.id == turn_id:
                turns[i] = change.apply(t)
                return turns[i]
        return None

    async def pending_replies(self) -> list[PendingReply]:
        """Pending replies with the user turn before each."""
        found = []
        for conv in self._convs.values():
            turns = self._turns.get(conv.id, [])
            for i, t in enumerate(turns):
                if t.status == "pending" and i > 0 and turns[i - 1].role == "user":
                    found.append(PendingReply(conv, turns[i - 1], t))
        return sorted(found, key=lambda p: p.model_turn.id)

    async def event_seen(self, platform: str, event_id: str) -> bool:
        """True when seen before."""
        return (platform, event_id) in self._events

    async def get_meta(self, key: str) -> str | None:
        """Stored service state."""
        return self._meta.get(key)

    async def set_meta(self, key: str, value: str) -> None:
        """Store service state."""
        self._meta[key] = value

    async def load_history(self, conversation_id: int, *, token_budget: int) -> History:
        """First turn + newest turns that fit the budget."""
        turns = self._turns.get(conversation_id, [])
        first = turns[0] if turns else None
        return history(first, turns[:0:-1], token_budget)

    async def count_turns(self, conversation_id: int) -> int:
        """Number of turns."""
        return len(self._turns.get(conversation_id, []))

    async def put_blob(self, data: bytes, *, mime_type: str) -> str:
        """Keep bytes by sha256."""
        check_size(data, self.max_blob_bytes)
        sha = hashlib.sha256(data).hexdigest()
        self._blobs[sha] = data
        return sha

    async def get_blob(self, sha256: str) -> bytes:
        """Bytes by sha256; KeyError when missing."""
        return self._blobs[sha256]

    async def get_remote_file(self, sha256: str) -> RemoteFile | None:
        """The provider file for these bytes."""
        return self._remote.get(sha256)

    async def put_remote_file(self, sha256: str, remote: RemoteFile) -> None:
        """Record the provider file for these bytes."""
        self._remote[sha256] = remote

    async def get_channel_persona(
        self, platform: str, workspace_id: str, channel_id: str
    ) -> str | None:
        """The channel's default persona."""
        return self._channels.get((platform, workspace_id, channel_id))

    async def set_channel_persona(
        self, platform: str, workspace_id: str, channel_id: str, persona: str | None
    ) -> None:
        """Set or clear the channel's default persona."""
        self._channels[(platform, workspace_id, channel_id)] = persona

    async def get_channel_tools_off(
        self, platform: str, workspace_id: str, channel_id: str
    ) -> frozenset[str]:
        """Tools a channel admin switched off in this channel."""
        return self._tools_off.get((platform, workspace_id, channel_id), frozenset())

    async def set_channel_tools_off(
        self, platform: str, workspace_id: str, channel_id: str, tools: frozenset[str]
    ) -> None:
        """Replace the set of tools switched off in a channel."""
        self._tools_off[(platform, workspace_id, channel_id)] = frozenset(tools)

    async def mark_event(self, platform: str, event_id: str) -> bool:
        """Record an event id; False when seen before."""
        if (platform, event_id) in self._events:
            return False
        self._events[(platform, event_id)] = datetime.now(UTC)
        return True

    async def prune_events(self, *, older_than: datetime) -> int:
        """Forget old event ids."""
        old = [k for k, at in self._events.items() if at < older_than]
        for k in old:
            del self._events[k]
        return len(old)

    async def add_usage(self, platform: str, user_id: str, *, day: str, usage: Usage) -> None:
        """Add one turn to a user's day."""
        cur = self._usage.get((platform, user_id, day), DailyUsage(0, 0, 0))
        self._usage[(platform, user_id, day)] = DailyUsage(
            cur.turns + 1,
            cur.prompt_tokens + usage.prompt_tokens,
            cur.output_tokens + usage.output_tokens,
            cur.tool_tokens + usage.tool_tokens,
            cur.cached_tokens + usage.cached_tokens,
        )

    async def get_usage(self, platform: str, user_id: str, *, day: str) -> DailyUsage:
        """A user's usage on a day."""
        return self._usage.get((platform, user_id, day), DailyUsage(0, 0, 0))
