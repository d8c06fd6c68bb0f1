"""The boundaries of the core: the model, the store, reply targets and adapters."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal, Protocol, runtime_checkable

from bot.markup import Markup
from bot.model_events import (
    CodeOutput,
    CodeRun,
    Finished,
    GeneratedFile,
    LinksRead,
    ModelEvent,
    TextDelta,
    ToolActivity,
)
from bot.store import (
    BlobStore,
    ConversationStore,
    EventLog,
    InstallationStore,
    Lifecycle,
    SettingsStore,
    Store,
    UsageStore,
)
from bot.types import (
    Grounding,
    Persona,
    RemoteFile,
)

# ---- model -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InlineData:
    """File bytes sent inside the request."""

    mime_type: str
    data: bytes
    signature: bytes | None = None  # the provider's signature of a file it made


@dataclass(frozen=True, slots=True)
class FileData:
    """A file already uploaded to the provider, referenced by URI."""

    mime_type: str
    uri: str
    signature: bytes | None = None  # the provider's signature of a file it made


ModelPart = str | InlineData | FileData


@dataclass(frozen=True, slots=True)
class ModelContent:
    """One turn as the model sees it."""

    role: Literal["user", "model"]
    parts: tuple[ModelPart, ...]


class ChatModel(Protocol):
    """A stateless chat model: history in, streamed reply out."""

    def stream(
        self,
        *,
        persona: Persona,
        history: Sequence[ModelContent],
        message: ModelContent,
    ) -> AsyncIterator[ModelEvent]:
        """Yield the reply's events (bot/model_events.py), ending with one Finished; raise
        bot.errors.ModelError. The persona's `tools` and `output` say what it may use."""
        ...

    async def upload(self, *, data: bytes, mime_type: str, display_name: str) -> RemoteFile:
        """Upload a file for later turns to reference by URI."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


# ---- storage: bot/store.py -------------------------------------------------


# ---- replies ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Budget:
    """A platform call budget: `rate` calls per second with bursts of `burst`."""

    key: str
    rate: float
    burst: int = 1
    parent: Budget | None = None
    # Tokens kept for urgent calls (a reply's first text, finals): intermediate edits wait
    # while the bucket holds no more than this.
    reserve: int = 0
    # When set: at most `burst` calls in any `window` seconds (a sliding window, as Discord
    # counts), instead of a token bucket, which would let burst + rate * window through.
    window: float = 0.0
    # One reply's intermediate edits at least this far apart: often enough to look smooth,
    # and a short window is not spent in the first instants of a reply.
    spacing: float = 0.0
    # Learn the platform's real limit from its answers, starting from `rate` and `burst`
    # (bot/adaptive.py); budgets of one `family` (e.g. every channel's chat.postMessage in
    # one workspace) share what is learned.
    adaptive: bool = False
    family: str = ""
    # Seconds the platform's own client says the next call must wait, from the platform's
    # rate-limit headers (discord.py's bucket records); 0 when it knows of no wait.
    gauge: Callable[[], float] | None = field(default=None, compare=False)


class SharedLimits(Protocol):
    """Platform budgets counted across every replica (one process needs none)."""

    async def take(self, budgets: Sequence[Budget]) -> float:
        """Claim one call of each budget, all or none: 0 when the call may go now, else
        the seconds until it might (nothing claimed)."""
        ...

    async def prune(self, *, idle_for: timedelta) -> int:
        """Forget budgets unused for `idle_for`; returns how many."""
        ...


@dataclass(frozen=True, slots=True)
class OutFile:
    """A file the bot posts with a reply: a generated image, a chart, long code or output."""

    name: str
    mime_type: str
    data: bytes


class TargetDefaults:
    """What a reply target without special needs answers to the scheduler's questions:
    every call is paid from its budget, shows the text it was given, and nothing needs
    stopping when text is ready. Targets inherit it and override what differs."""

    def offer(self, part: int, text: str) -> None:
        """Calls show the text they were given."""

    def edits(self, part: int, text: str) -> bool:
        """Every call is paid from the reply's budget."""
        return True

    def showing(self, part: int) -> bool:
        """A message shows text only once shown by the scheduler."""
        return False

    def text_ready(self) -> None:
        """Nothing to stop."""


class ReplyTarget(Protocol):
    """What an adapter gives the engine for one reply.

    The EditScheduler decides when `show`, `finish` and `fail` run. `part` numbers the
    platform messages of one reply: part 0 is the first message; a new part number means
    post a new message, a known one means edit it.
    """

    max_chars: int
    budget: Budget
    markup: Markup  # how links, italics and code look on this platform

    @property
    def message_ids(self) -> Sequence[str]:
        """Platform ids of the messages posted so far."""
        ...

    async def start(self) -> None:
        """Show that work started (typing indicator, status or placeholder)."""
        ...

    async def show(self, text: str, *, part: int) -> bool | None:
        """Post or edit message `part` to show `text` (raise PlatformRateLimited on 429).
        False: no call on `budget` was needed (the message shows it already, or the post
        was paid from another budget), so the scheduler gives the token back."""
        ...

    async def finish(self, text: str, *, part: int) -> bool | None:
        """Show the final text of the last message `part` (False as for show)."""
        ...

    def offer(self, part: int, text: str) -> None:
        """The newest text of message `part`, as it arrives: a call already waiting for
        its budget (a post) may show this instead of the older text it was given."""
        ...

    def edits(self, part: int, text: str) -> bool:
        """False when showing `text` as message `part` costs `budget` nothing: it only
        posts the message, paid from another budget (Slack: chat.postMessage per channel,
        not the workspace's chat.update), or the message shows that text already. The
        scheduler then neither waits for nor spends `budget`."""
        ...

    def showing(self, part: int) -> bool:
        """True when message `part` already shows text of the reply, e.g. the first text
        went out with the message in place of a placeholder: its next show is then an
        ordinary edit, not an urgent first text."""
        ...

    async def fail(self, user_message: str) -> None:
        """Tell the user the reply failed or was cut short."""
        ...

    async def attach(self, files: Sequence[OutFile]) -> None:
        """Post files into the reply's thread after its text (raise BotError with a
        user message when the platform refuses one, e.g. too large)."""
        ...

    def text_ready(self) -> None:
        """The reply has text waiting to be shown: stop signs that would spend the budget
        it needs (Discord's typing requests)."""
        ...

    async def status(self, line: str) -> bool:
        """Show a tool-activity line ("Searching the web…") where the platform has a place
        for one (Slack's assistant status); False: the engine shows it in the reply."""
        ...


class Pacer(Protocol):
    """Platform calls within their budgets: what adapters and reply targets use of the
    edit scheduler (bot/streaming.py)."""

    async def call(self, budget: Budget, fn: Callable[[], Awaitable[None]]) -> None:
        """Run a one-off platform call (not part of a reply) within a budget."""
        ...

    def spare(self, budget: Budget) -> float:
        """Calls the budget can make now without making a reply in flight wait."""
        ...

    def promise(self, budget: Budget) -> None:
        """A reply will need one more call of this budget (spare() counts it)."""
        ...

    def keep(self, budget: Budget) -> None:
        """A promised call is made (or no longer needed)."""
        ...


class Adapter(Protocol):
    """A platform connection. Narrow on purpose."""

    name: str

    async def run(self) -> None:
        """Connect and serve until cancelled or closed."""
        ...

    async def aclose(self) -> None:
        """Stop taking new work and disconnect."""
        ...

    @property
    def connected(self) -> bool:
        """True while the platform connection is up."""
        ...


@runtime_checkable
class HealthParts(Protocol):
    """An adapter with parts /healthz lists one by one (Discord: each shard it runs)."""

    def health_parts(self) -> Mapping[str, bool]:
        """Each part's /healthz name (e.g. "discord:shard:0") and whether it is connected."""
        ...


@runtime_checkable
class EditsBeforeConnected(Protocol):
    """An adapter that can post and edit messages before its event connection is up
    (Discord: REST works once logged in, while shards may take minutes to connect)."""

    @property
    def can_edit(self) -> bool:
        """True once messages can be posted and edited."""
        ...


__all__ = [
    "Adapter",
    "BlobStore",
    "Budget",
    "ChatModel",
    "CodeOutput",
    "CodeRun",
    "ConversationStore",
    "EditsBeforeConnected",
    "EventLog",
    "FileData",
    "Finished",
    "GeneratedFile",
    "Grounding",
    "HealthParts",
    "InlineData",
    "InstallationStore",
    "Lifecycle",
    "LinksRead",
    "ModelContent",
    "ModelEvent",
    "ModelPart",
    "OutFile",
    "Pacer",
    "ReplyTarget",
    "SettingsStore",
    "SharedLimits",
    "Store",
    "TargetDefaults",
    "TextDelta",
    "ToolActivity",
    "UsageStore",
]
