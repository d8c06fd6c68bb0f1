"""Frozen value types shared by the engine, the stores and the adapters."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Literal

Role = Literal["user", "model"]
# "pending": a reply being written; a crash leaves it for start-up recovery.
TurnStatus = Literal["complete", "partial", "failed", "pending"]


@dataclass(frozen=True, slots=True)
class ThreadKey:
    """Identifies one conversation: (platform, workspace, channel, thread)."""

    platform: str
    workspace_id: str
    channel_id: str
    thread_id: str

    def __str__(self) -> str:
        return f"{self.platform}:{self.workspace_id}:{self.channel_id}:{self.thread_id}"


@dataclass(frozen=True, slots=True)
class Author:
    """Who wrote a message; `id` is platform-qualified by the adapter's ThreadKey."""

    id: str
    name: str
    is_bot: bool = False


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file on an incoming message; bytes are fetched lazily by `fetch`."""

    name: str
    fetch: Callable[[], Awaitable[bytes]]
    declared_mime: str | None = None
    size: int | None = None


@dataclass(frozen=True, slots=True)
class IncomingMessage:
    """One user message handed to the engine by an adapter."""

    key: ThreadKey
    author: Author
    text: str
    attachments: tuple[Attachment, ...] = ()
    event_id: str | None = None
    persona: str | None = None


@dataclass(frozen=True, slots=True)
class TextPart:
    """Plain text inside a turn."""

    text: str


@dataclass(frozen=True, slots=True)
class FilePart:
    """A reference to stored attachment bytes (content-addressed by sha256)."""

    sha256: str
    mime_type: str
    name: str
    size: int


Part = TextPart | FilePart


@dataclass(frozen=True, slots=True)
class Usage:
    """Token usage reported by the model for one call."""

    prompt_tokens: int = 0
    output_tokens: int = 0


@dataclass(frozen=True, slots=True)
class NewTurn:
    """A turn about to be written; the store assigns id and sequence number."""

    role: Role
    parts: tuple[Part, ...]
    author: Author | None = None
    status: TurnStatus = "complete"
    finish_reason: str | None = None
    usage: Usage = field(default_factory=Usage)
    token_estimate: int = 0
    message_ids: tuple[str, ...] = ()
    error: str | None = None

    def stored(self, *, id: int, seq: int, created_at: datetime) -> Turn:
        """This turn as the store returns it once written."""
        return Turn(
            id=id,
            seq=seq,
            role=self.role,
            parts=self.parts,
            author=self.author,
            status=self.status,
            finish_reason=self.finish_reason,
            usage=self.usage,
            token_estimate=self.token_estimate,
            message_ids=self.message_ids,
            error=self.error,
            created_at=created_at,
        )


@dataclass(frozen=True, slots=True)
class Turn:
    """A stored turn of a conversation."""

    id: int
    seq: int
    role: Role
    parts: tuple[Part, ...]
    author: Author | None
    status: TurnStatus
    finish_reason: str | None
    usage: Usage
    token_estimate: int
    message_ids: tuple[str, ...]
    error: str | None
    created_at: datetime
    attempts: int = 0  # times start-up recovery re-answered this (pending) reply

    @property
    def text(self) -> str:
        """All text parts joined."""
        return "".join(p.text for p in self.parts if isinstance(p, TextPart))


@dataclass(frozen=True, slots=True)
class TurnUpdate:
    """Changes to a stored turn (a checkpoint or the end of a reply); None keeps a field."""

    parts: tuple[Part, ...] | None = None
    status: TurnStatus | None = None
    finish_reason: str | None = None
    usage: Usage | None = None
    token_estimate: int | None = None
    message_ids: tuple[str, ...] | None = None
    error: str | None = None
    attempts: int | None = None

    def apply(self, turn: Turn) -> Turn:
        """`turn` with these changes."""
        changes = {
            name: getattr(self, name)
            for name in self.__dataclass_fields__
            if getattr(self, name) is not None
        }
        return replace(turn, **changes)


@dataclass(frozen=True, slots=True)
class Conversation:
    """A stored conversation (one per ThreadKey)."""

    id: int
    key: ThreadKey
    persona: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class PendingReply:
    """A reply a previous process started and never finished, with the turn it answers."""

    conversation: Conversation
    user_turn: Turn
    model_turn: Turn


@dataclass(frozen=True, slots=True)
class History:
    """The turns of a conversation chosen to fit a token budget."""

    turns: tuple[Turn, ...]
    dropped: int
    total_tokens: int


@dataclass(frozen=True, slots=True)
class RemoteFile:
    """A file uploaded to the model provider, valid until `expires_at`."""

    uri: str
    mime_type: str
    expires_at: datetime
    name: str = ""


@dataclass(frozen=True, slots=True)
class GenerationSettings:
    """Per-persona generation settings; None means the model default."""

    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    max_output_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class Persona:
    """A named system instruction with optional model and generation settings."""

    name: str
    description: str
    system_instruction: str
    model: str | None = None
    generation: GenerationSettings = field(default_factory=GenerationSettings)


@dataclass(frozen=True, slots=True)
class DailyUsage:
    """One user's usage on one day."""

    turns: int
    prompt_tokens: int
    output_tokens: int
