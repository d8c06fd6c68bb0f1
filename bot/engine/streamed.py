"""What one model stream produced so far, and how each event reaches the reply on screen."""

from __future__ import annotations

import logging

from bot.engine.compose import ReplyDraft
from bot.errors import AttachmentError, BotError
from bot.markup import Markup, activity_line
from bot.model_events import (
    CodeOutput,
    CodeRun,
    Finished,
    FinishReason,
    GeneratedFile,
    Grounding,
    LinksRead,
    ModelEvent,
    TextDelta,
    ToolActivity,
)
from bot.ports import BlobStore
from bot.streaming import ReplyStream
from bot.types import FilePart, Usage

log = logging.getLogger(__name__)


class Streamed:
    """A model stream's outcome so far: the draft reply, finish, usage, error."""

    __slots__ = ("cancelled", "draft", "error", "finish", "usage")

    def __init__(self, markup: Markup, prefix: str = "") -> None:
        self.draft = ReplyDraft(markup, prefix=prefix)
        self.finish: FinishReason | None = None
        self.usage = Usage()
        self.error: BotError | None = None
        self.cancelled = False

    @property
    def text(self) -> str:
        """The model's own text so far."""
        return self.draft.text

    @property
    def produced(self) -> bool:
        """True once the model gave anything to show (text, code, files)."""
        return bool(self.draft.text or self.draft.files or self.draft.parts())

    async def apply(self, event: ModelEvent, reply: ReplyStream, store: BlobStore) -> None:
        """Record one event and show what it adds."""
        draft = self.draft
        if isinstance(event, TextDelta):
            reply.append(draft.add_text(event.text))
        elif isinstance(event, CodeRun):
            reply.append(draft.add_code(event))
        elif isinstance(event, CodeOutput):
            reply.append(draft.add_output(event))
        elif isinstance(event, GeneratedFile):
            draft.add_file(event, await _keep(store, event))
        elif isinstance(event, Grounding):
            draft.grounding = event
        elif isinstance(event, LinksRead):
            draft.links = event.links
        elif isinstance(event, ToolActivity):
            line = activity_line(event.activity, event.count)
            if not await reply.target.status(line):
                reply.status(reply.target.markup.italic(line))
        elif isinstance(event, Finished):
            self.finish, self.usage = event.finish_reason, event.usage


async def _keep(store: BlobStore, made: GeneratedFile) -> FilePart | None:
    """Store a generated file's bytes (so a later turn can send it back); None if refused."""
    try:
        sha = await store.put_blob(made.data, mime_type=made.mime_type)
    except AttachmentError as exc:
        log.warning("generated %s not stored: %s", made.mime_type, exc)
        return None
    return FilePart(sha, made.mime_type, "generated", len(made.data), made.signature)
