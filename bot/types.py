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
    signature: bytes | None = None  # a generated file's provider signature, sent back with it


@dataclass(frozen=True, slots=True)
class Source:
    """A web page an answer is grounded on."""

    title: str
    uri: str
    domain: str = ""


@dataclass(frozen=True, slots=True)
class Support:
    """A span of the answer text (character offsets, end exclusive) and its sources."""

    start: int
    end: int
    sources: tuple[int, ...]  # indices into Grounding.sources
    text: str = ""  # the span as the provider quoted it (to re-find it if offsets drift)


@dataclass(frozen=True, slots=True)
class Grounding:
    """Sources of a grounded answer, which spans they support, and the searches run."""

    sources: tuple[Source, ...] = ()
    supports: tuple[Support, ...] = ()
    queries: tuple[str, ...] = ()


# A link the model was asked to read: read, failed, refused as unsafe, or behind a paywall.
LinkStatus = Literal["read", "failed", "unsafe", "paywalled"]
CodeOutcome = Literal["ok", "failed", "timeout"]


@dataclass(frozen=True, slots=True)
class LinkRead:
    """A link the model was asked to read, and whether it could."""

    url: str
    status: LinkStatus


@dataclass(frozen=True, slots=True)
class CodePart:
    """Code the model wrote and ran (a model turn)."""

    code: str
    language: str = "python"


@dataclass(frozen=True, slots=True)
class CodeOutputPart:
    """What that code printed, and how it ended."""

    output: str
    outcome: CodeOutcome = "ok"


@dataclass(frozen=True, slots=True)
class GroundingPart:
    """The sources and searches of a grounded answer (a model turn)."""

    grounding: Grounding


@dataclass(frozen=True, slots=True)
class LinksPart:
    """The links the model was asked to read for an answer, with their status."""

    links: tuple[LinkRead, ...]


# A model turn's generated images and charts are FileParts too (stored as blobs), so later
# turns send them back ("make it blue").
Part = TextPart | FilePart | CodePart | CodeOutputPart | GroundingPart | LinksPart


@dataclass(frozen=True, slots=True)
class Usage:
    """Token usage reported by the model for one call."""

    prompt_tokens: int = 0
    output_tokens: int = 0
    tool_tokens: int = 0  # prompt tokens added by tool results (search, links, code)
    cached_tokens: int = 0  # prompt tokens served from the provider's cache

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.output_tokens + other.output_tokens,
            self.tool_tokens + other.tool_tokens,
            self.cached_tokens + other.cached_tokens,
        )


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
    # Left by a draining replica before it began (ThreadGate.hand_off): answered afresh,
    # not as a reply a crash cut short.
    handed_off: bool = False


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
    # Gemini tools this persona may use (GEMINI_TOOLS_ALLOWED and channel admins narrow it).
    tools: tuple[str, ...] = ()
    # What the model answers with: ("text",), or ("text", "image") for an image model.
    output: tuple[str, ...] = ("text",)


@dataclass(frozen=True, slots=True)
class DailyUsage:
    """One user's usage on one day."""

    turns: int
    prompt_tokens: int
    output_tokens: int
    tool_tokens: int = 0
    cached_tokens: int = 0


@dataclass(frozen=True, slots=True)
class Installation:
    """The app installed in one workspace (Slack's OAuth install): its bot's identity and
    token. `token` is what the store keeps: ciphertext (bot/crypto.py) in every store."""

    platform: str
    workspace_id: str
    bot_user_id: str
    bot_id: str
    token: str
    scopes: str = ""
    enterprise_id: str | None = None
    installer_id: str | None = None
    installed_at: datetime | None = None
