"""Model input: a message's text and files stored as parts; stored turns as model contents."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from bot.attachments import estimate_tokens, human_size, sniff
from bot.errors import AttachmentError
from bot.ports import BlobStore, ChatModel, FileData, InlineData, ModelContent, ModelPart
from bot.types import (
    CodeOutputPart,
    CodePart,
    FilePart,
    GroundingPart,
    IncomingMessage,
    LinksPart,
    Part,
    TextPart,
    Turn,
)

log = logging.getLogger(__name__)

# Re-upload a provider file this long before it expires, so a turn never uses a dying URI.
EXPIRY_MARGIN = timedelta(hours=1)
# The model's own images go back inline up to this size (a 1024x1024 PNG is 1-2 MB; a
# request may carry 20 MB), so an edit needs no Files API round trip.
GENERATED_INLINE_BYTES = 8 * 1024 * 1024
# ...but no more than this in all per request (Gemini takes 20 MB, base64 adds a third):
# the rest goes through the Files API, signature and all.
GENERATED_INLINE_PER_REQUEST = 12 * 1024 * 1024
CONTENT_CACHE_SIZE = 2_000  # finished text turns of the threads in use; a miss re-reads one
# A reply stored as partial is sent back marked, so the model does not continue a sentence
# as if it had finished it (and knows the user may not have seen the rest).
CUT_SHORT = "\n\n[reply cut short]"


def estimate(parts: tuple[Part, ...] | list[Part]) -> int:
    """Rough token count of parts (text by length, files by kind and size)."""
    total = 0
    for p in parts:
        if isinstance(p, FilePart):
            total += estimate_tokens(mime_type=p.mime_type, size=p.size)
        elif (text := _as_text(p)) is not None:
            total += estimate_tokens(text=text)
    return total


def _as_text(p: Part) -> str | None:
    """What a non-file part says to the model as text (None: nothing)."""
    if isinstance(p, TextPart):
        return p.text
    if isinstance(p, CodePart):
        return f"\n```{p.language}\n{p.code}\n```\n"
    if isinstance(p, CodeOutputPart):
        return f"\n[code output ({p.outcome})]\n```\n{p.output}\n```\n"
    if isinstance(p, GroundingPart) and p.grounding.sources:
        lines = [f"{i}. {s.title} {s.uri}" for i, s in enumerate(p.grounding.sources, 1)]
        return "\n\n[sources of this answer]\n" + "\n".join(lines)
    if isinstance(p, LinksPart):
        failed = [f"{link.url} ({link.status})" for link in p.links if link.status != "read"]
        return f"\n\n[links that could not be read: {', '.join(failed)}]" if failed else None
    return None


class ContentBuilder:
    """Reads attachments into the store and builds model contents from stored turns."""

    def __init__(
        self,
        *,
        store: BlobStore,
        model: ChatModel,
        inline_max_bytes: int,
        max_attachment_bytes: int,
        counters: Counter[str],
    ) -> None:
        self.store = store
        self.model = model
        self.inline_max_bytes = inline_max_bytes
        self.max_attachment_bytes = max_attachment_bytes
        self.counters = counters
        self._cache: dict[int, ModelContent | None] = {}

    async def files(self, message: IncomingMessage) -> tuple[list[Part], list[str]]:
        """The message's attachments as stored parts, plus notes on what was skipped."""
        parts: list[Part] = []
        notes: list[str] = []
        for att in message.attachments:
            if att.size is not None and att.size > self.max_attachment_bytes:
                notes.append(
                    f"Skipped {att.name}: it is {human_size(att.size)}; "
                    f"the limit is {human_size(self.max_attachment_bytes)}."
                )
                continue
            try:
                data = await att.fetch()
            except AttachmentError as exc:
                notes.append(f"Skipped {att.name}: {exc.user_message}.")
                continue
            except Exception as exc:
                log.warning("download of %s failed: %r", att.name, exc)
                notes.append(f"Skipped {att.name}: it could not be downloaded.")
                continue
            if not data:
                notes.append(f"Skipped {att.name}: the file is empty.")
                continue
            kind = sniff(data, name=att.name, declared=att.declared_mime)
            if not kind.supported:
                notes.append(f"Skipped {att.name}: Gemini cannot read {kind.mime_type} files.")
                continue
            try:
                sha = await self.store.put_blob(data, mime_type=kind.mime_type)
            except AttachmentError as exc:
                notes.append(f"Skipped {att.name}: {exc.user_message}.")
                continue
            parts.append(FilePart(sha, kind.mime_type, att.name, len(data)))
        return parts, notes

    async def contents(self, turns: tuple[Turn, ...] | list[Turn]) -> list[ModelContent]:
        """Stored turns as model input, skipping turns with nothing to say."""
        # The request's inline bytes left; newest turns first, so the latest image is inline.
        room = [GENERATED_INLINE_PER_REQUEST]
        built = [await self.content(t, room) for t in reversed(turns)]
        return [c for c in reversed(built) if c is not None]

    async def content(self, turn: Turn, room: list[int] | None = None) -> ModelContent | None:
        """A stored turn as model input; None for turns with nothing to say."""
        # Finished text-only turns never change: build them once. Turns with files are
        # rebuilt each time because their URIs expire.
        if turn.id in self._cache:
            return self._cache[turn.id]
        content = await self._build(turn, room if room is not None else [0])
        if turn.status != "pending" and all(isinstance(p, TextPart) for p in turn.parts):
            if len(self._cache) >= CONTENT_CACHE_SIZE:
                self._cache.pop(next(iter(self._cache)))
            self._cache[turn.id] = content
        return content

    async def _build(self, turn: Turn, room: list[int]) -> ModelContent | None:
        out: list[ModelPart] = []
        if turn.role == "user":
            name = turn.author.name if turn.author else "user"
            prefix = f"[{name}] "
            if not any(isinstance(p, TextPart) for p in turn.parts):
                out.append(prefix + "(shared files)")
        else:
            prefix = ""
        for p in turn.parts:
            if isinstance(p, FilePart):
                out.extend(await self._file(p, generated=turn.role == "model", room=room))
            elif (text := _as_text(p)) is not None:
                out.append(prefix + text)
                prefix = ""
        if not out:
            return None
        if turn.role == "model" and turn.status == "partial":
            out.append(CUT_SHORT)
        return ModelContent(turn.role, tuple(out))

    async def _file(
        self, part: FilePart, *, generated: bool = False, room: list[int] | None = None
    ) -> list[ModelPart]:
        """Inline small files; upload big ones once and reuse the URI until near expiry."""
        # An image the model made itself goes back as its own output, with no label: that
        # is how a follow-up ("make it blue") edits it.
        label = f"[file: {part.name}]"
        room = room if room is not None else [0]
        inline = part.size <= self.inline_max_bytes or (
            part.size <= min(GENERATED_INLINE_BYTES, room[0])
        )
        if generated and inline:
            room[0] -= part.size
            try:
                data = await self.store.get_blob(part.sha256)
                return [InlineData(part.mime_type, data, part.signature)]
            except KeyError:
                return [f"[{part.name}: no longer available]"]
        if part.size <= self.inline_max_bytes:
            try:
                data = await self.store.get_blob(part.sha256)
            except KeyError:
                return [f"{label} (no longer available)"]
            return [label, InlineData(part.mime_type, data)]
        remote = await self.store.get_remote_file(part.sha256)
        if remote is None or remote.expires_at - EXPIRY_MARGIN <= datetime.now(UTC):
            try:
                data = await self.store.get_blob(part.sha256)
            except KeyError:
                return [f"{label} (no longer available)"]
            remote = await self.model.upload(
                data=data, mime_type=part.mime_type, display_name=part.name
            )
            await self.store.put_remote_file(part.sha256, remote)
            self.counters["files_uploaded"] += 1
        if generated:
            return [FileData(part.mime_type, remote.uri, part.signature)]
        return [label, FileData(part.mime_type, remote.uri)]

    async def expire_remote_files(self, turns: tuple[Turn, ...] | list[Turn]) -> None:
        """Forget provider URIs of these turns' files, so they are uploaded again."""
        gone = datetime(1970, 1, 1, tzinfo=UTC)
        for turn in turns:
            for p in turn.parts:
                if isinstance(p, FilePart):
                    remote = await self.store.get_remote_file(p.sha256)
                    if remote is not None:
                        await self.store.put_remote_file(p.sha256, replace(remote, expires_at=gone))
