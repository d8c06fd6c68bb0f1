"""The store's port, split by concern: a consumer asks for the part it uses (a
BlobStore, a UsageStore...), and `Store` is all of them, as one database provides them.
Every method is async; a turn is written in one transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from bot.types import (
    Conversation,
    DailyUsage,
    History,
    Installation,
    NewTurn,
    PendingReply,
    RemoteFile,
    ThreadKey,
    Turn,
    TurnUpdate,
    Usage,
)


class Lifecycle(Protocol):
    """Opening, closing and checking a store."""

    async def open(self) -> None:
        """Open (and migrate) the store."""
        ...

    async def close(self) -> None:
        """Close the store."""
        ...

    async def ping(self) -> bool:
        """True when the store answers."""
        ...

    async def applied_migrations(self) -> list[str]:
        """Names of the schema migrations applied, in order (empty without a schema)."""
        ...


class ConversationStore(Protocol):
    """Conversations and their turns: the history every reply is built from."""

    async def get_conversation(self, key: ThreadKey) -> Conversation | None:
        """The conversation for `key`, if any."""
        ...

    async def get_or_create_conversation(self, key: ThreadKey) -> Conversation:
        """The conversation for `key`, created when missing."""
        ...

    async def set_thread_persona(self, key: ThreadKey, persona: str | None) -> None:
        """Pin a persona for one thread (None clears it)."""
        ...

    async def forget(self, key: ThreadKey) -> bool:
        """Delete a conversation and its turns; True if it existed."""
        ...

    async def append_turn(self, conversation_id: int, turn: NewTurn) -> Turn:
        """Write one turn (one transaction) and return it with its id and seq."""
        ...

    async def accept_turn(
        self, key: ThreadKey, *, user: NewTurn, reply: NewTurn, event: tuple[str, str] | None
    ) -> tuple[Conversation, Turn, Turn] | None:
        """One transaction: mark `event` (platform, id) seen, create the conversation if
        needed, store the user turn and its pending reply. None when the event was seen."""
        ...

    async def update_turn(
        self, conversation_id: int, turn_id: int, change: TurnUpdate
    ) -> Turn | None:
        """Change a stored turn; None when it no longer exists."""
        ...

    async def pending_replies(self) -> list[PendingReply]:
        """Replies still pending (left by a crash), oldest first."""
        ...

    async def load_history(self, conversation_id: int, *, token_budget: int) -> History:
        """The first turn plus as many recent turns as fit `token_budget`."""
        ...

    async def count_turns(self, conversation_id: int) -> int:
        """Number of turns stored for a conversation."""
        ...


class BlobStore(Protocol):
    """Attachment bytes by sha256, and the provider files made from them."""

    async def put_blob(self, data: bytes, *, mime_type: str) -> str:
        """Store attachment bytes; returns their sha256."""
        ...

    async def get_blob(self, sha256: str) -> bytes:
        """Stored attachment bytes; KeyError when missing."""
        ...

    async def get_remote_file(self, sha256: str) -> RemoteFile | None:
        """The provider file for these bytes, if one was recorded."""
        ...

    async def put_remote_file(self, sha256: str, remote: RemoteFile) -> None:
        """Record the provider file for these bytes."""
        ...


class EventLog(Protocol):
    """Platform event ids already handled (each event is answered once)."""

    async def event_seen(self, platform: str, event_id: str) -> bool:
        """True when the event id was recorded before."""
        ...

    async def mark_event(self, platform: str, event_id: str) -> bool:
        """Record a platform event id; False when it was seen before."""
        ...

    async def prune_events(self, *, older_than: datetime) -> int:
        """Forget event ids seen before `older_than`; returns how many."""
        ...


class UsageStore(Protocol):
    """Token usage per user and day."""

    async def add_usage(self, platform: str, user_id: str, *, day: str, usage: Usage) -> None:
        """Add one turn's usage to a user's day."""
        ...

    async def get_usage(self, platform: str, user_id: str, *, day: str) -> DailyUsage:
        """A user's usage on a day (zeros when none)."""
        ...


class SettingsStore(Protocol):
    """Small service state and per-channel settings (persona, tools switched off)."""

    async def get_meta(self, key: str) -> str | None:
        """Small service state stored under `key`."""
        ...

    async def set_meta(self, key: str, value: str) -> None:
        """Store small service state under `key`."""
        ...

    async def get_channel_persona(
        self, platform: str, workspace_id: str, channel_id: str
    ) -> str | None:
        """The channel's default persona, if set."""
        ...

    async def set_channel_persona(
        self, platform: str, workspace_id: str, channel_id: str, persona: str | None
    ) -> None:
        """Set or clear the channel's default persona."""
        ...

    async def get_channel_tools_off(
        self, platform: str, workspace_id: str, channel_id: str
    ) -> frozenset[str]:
        """Tools a channel admin switched off in this channel (empty when none)."""
        ...

    async def set_channel_tools_off(
        self, platform: str, workspace_id: str, channel_id: str, tools: frozenset[str]
    ) -> None:
        """Replace the set of tools switched off in a channel."""
        ...


class InstallationStore(Protocol):
    """Apps installed by OAuth, per workspace (tokens kept as the caller gives them: the
    caller encrypts), and the one-time states of installs in progress."""

    async def save_installation(self, installation: Installation) -> None:
        """Store (or replace) a workspace's installation."""
        ...

    async def get_installation(self, platform: str, workspace_id: str) -> Installation | None:
        """A workspace's installation, if the app is installed there."""
        ...

    async def delete_installation(self, platform: str, workspace_id: str) -> bool:
        """Forget a workspace's installation (its token with it); True if there was one."""
        ...

    async def replace_token(self, platform: str, workspace_id: str, old: str, new: str) -> bool:
        """Swap a stored token for `new` only if it is still `old` (a re-encryption must not
        undo an uninstall or a reinstall done meanwhile); True if swapped."""
        ...

    async def forget_workspace(self, platform: str, workspace_id: str) -> int:
        """Delete every conversation (and turn) of a workspace; returns how many."""
        ...

    async def issue_state(self, state: str, *, expires_at: datetime) -> None:
        """Record an OAuth state handed to a browser."""
        ...

    async def consume_state(self, state: str) -> bool:
        """True, once, for a recorded state not yet expired (it is deleted either way)."""
        ...


class Store(
    Lifecycle,
    ConversationStore,
    BlobStore,
    EventLog,
    UsageStore,
    SettingsStore,
    InstallationStore,
    Protocol,
):
    """Durable state: every part, as one database provides them."""
