"""ConversationEngine: one turn = lock thread, store input, load history, stream, persist."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from bot.attachments import estimate_tokens, human_size, sniff
from bot.errors import (
    AttachmentError,
    BotError,
    ModelBlocked,
    ModelError,
    ModelFileUnavailable,
    ModelTooLarge,
)
from bot.personas import PersonaRegistry
from bot.ports import (
    ChatModel,
    FileData,
    Finished,
    InlineData,
    ModelContent,
    ModelPart,
    ReplyTarget,
    Store,
    TextDelta,
)
from bot.streaming import EditScheduler, ReplyStream
from bot.types import (
    FilePart,
    IncomingMessage,
    NewTurn,
    Part,
    Persona,
    TextPart,
    Turn,
    TurnStatus,
    Usage,
)

log = logging.getLogger(__name__)

BLOCK_REASONS = frozenset(
    {"SAFETY", "RECITATION", "PROHIBITED_CONTENT", "SPII", "BLOCKLIST", "IMAGE_SAFETY"}
)
THREAD_NOTE = (
    "You are replying in a chat thread. Each user message starts with the speaker's name in "
    "square brackets, like [Ada]; several people may take part, so keep track of who said what. "
    "Do not start your own replies with a name in brackets."
)
# Re-upload a provider file this long before it expires, so a turn never uses a dying URI.
EXPIRY_MARGIN = timedelta(hours=1)
CONTENT_CACHE_SIZE = 100_000
INTERRUPTED = "The bot restarted before this reply was finished; ask again to continue."


@dataclass(frozen=True, slots=True)
class TurnResult:
    """What one turn did (for adapters, tests and metrics)."""

    status: str
    text: str
    finish_reason: str | None = None
    notes: tuple[str, ...] = ()
    error: BotError | None = None
    dropped: int = 0
    user_turn_id: int | None = None
    model_turn_id: int | None = None


class _ThreadLocks:
    """One asyncio.Lock per thread key, dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[object, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: object) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users <= 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)


class ConversationEngine:
    """Turns IncomingMessages into stored, streamed Gemini replies."""

    def __init__(
        self,
        *,
        store: Store,
        model: ChatModel,
        personas: PersonaRegistry,
        scheduler: EditScheduler | None = None,
        history_token_budget: int = 200_000,
        inline_max_bytes: int = 1024 * 1024,
        max_attachment_bytes: int = 50 * 1024 * 1024,
        delivery_timeout: float = 120.0,
    ) -> None:
        self.store = store
        self.model = model
        self.personas = personas
        self.scheduler = scheduler or EditScheduler()
        self.history_token_budget = history_token_budget
        self.inline_max_bytes = inline_max_bytes
        self.max_attachment_bytes = max_attachment_bytes
        self.delivery_timeout = delivery_timeout
        self._locks = _ThreadLocks()
        self._contents: dict[int, ModelContent | None] = {}
        self._tasks: set[asyncio.Task[TurnResult]] = set()
        self.accepting = True
        self.counters: Counter[str] = Counter()

    # -- entry points ------------------------------------------------------

    def submit(self, message: IncomingMessage, target: ReplyTarget) -> asyncio.Task[TurnResult]:
        """Handle a message in a background task tracked for graceful shutdown."""
        task = asyncio.create_task(self.handle(message, target), name=f"turn:{message.key}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    @property
    def in_flight(self) -> int:
        """Turns being handled now."""
        return len(self._tasks)

    async def shutdown(self, *, grace: float) -> None:
        """Stop taking turns; let turns in flight finish for `grace` s, then interrupt them."""
        self.accepting = False
        pending = set(self._tasks)
        if pending:
            _done, still = await asyncio.wait(pending, timeout=grace)
            for task in still:
                task.cancel()
            if still:
                await asyncio.wait(still, timeout=10)

    async def handle(self, message: IncomingMessage, target: ReplyTarget) -> TurnResult:
        """One turn: everything from the user's message to the stored reply."""
        if not self.accepting:
            await self._quiet_fail(target, "The bot is restarting; please try again in a minute.")
            return TurnResult("rejected", "")
        try:
            await target.start()
        except Exception as exc:  # no placeholder is no reason not to answer
            log.warning("start of reply on %s failed: %r", message.key, exc)
        async with self._locks.hold(message.key):
            try:
                return await self._turn(message, target)
            except BotError as exc:
                # Failures before the model call (persona, storage of the input...).
                self.counters["turns_failed"] += 1
                await self._quiet_fail(target, exc.user_message)
                return TurnResult("failed", "", error=exc)

    # -- the turn ----------------------------------------------------------

    async def _turn(self, message: IncomingMessage, target: ReplyTarget) -> TurnResult:
        store = self.store
        key = message.key
        conv = await store.get_or_create_conversation(key)
        thread_persona = conv.persona
        if message.persona:
            chosen = self.personas.get(message.persona)  # UnknownPersona is a BotError
            await store.set_thread_persona(key, chosen.name)
            thread_persona = chosen.name
        channel_persona = await store.get_channel_persona(
            key.platform, key.workspace_id, key.channel_id
        )
        persona = self.personas.resolve(thread=thread_persona, channel=channel_persona)

        parts, notes = await self._ingest(message)
        if not parts:
            text = "\n".join(notes) or "(Nothing to answer: the message was empty.)"
            await self._deliver_only(target, text)
            return TurnResult("skipped", text, notes=tuple(notes))
        estimate = sum(
            estimate_tokens(text=p.text)
            if isinstance(p, TextPart)
            else estimate_tokens(mime_type=p.mime_type, size=p.size)
            for p in parts
        )
        user_turn = await store.append_turn(
            conv.id, NewTurn("user", tuple(parts), author=message.author, token_estimate=estimate)
        )
        history = await store.load_history(conv.id, token_budget=self.history_token_budget)
        if not history.turns or history.turns[-1].id != user_turn.id:
            raise ModelTooLarge("message alone exceeds the history budget")
        contents = [c for t in history.turns if (c := await self._content(t)) is not None]
        persona = self._with_thread_note(persona, history.dropped)

        reply = self.scheduler.open(target)
        for note in notes:
            reply.append(f"_{note}_\n\n")
        text = ""
        finish: str | None = None
        usage = Usage()
        error: BotError | None = None
        cancelled = False
        try:
            for attempt in (1, 2):
                try:
                    async for event in self.model.stream(
                        persona=persona, history=contents[:-1], message=contents[-1]
                    ):
                        if isinstance(event, TextDelta):
                            text += event.text
                            reply.append(event.text)
                        elif isinstance(event, Finished):
                            finish, usage = event.finish_reason, event.usage
                    break
                except ModelFileUnavailable:
                    if attempt == 2 or text:
                        raise
                    # The provider lost a file early: upload it again from our bytes, once.
                    await self._expire_remote_files(history.turns)
                    contents = [
                        c for t in history.turns if (c := await self._content(t)) is not None
                    ]
        except ModelError as exc:
            error = exc
        except asyncio.CancelledError:
            cancelled = True
        except Exception as exc:  # a bug or an SDK surprise: tell the user, keep the text
            log.exception("model stream failed on %s", key)
            error = BotError(repr(exc))

        status, user_note = self._outcome(text, finish, error, cancelled)
        if not text and status == "complete":
            reply.append("(Gemini returned an empty answer.)")
        reply.close(fail_message=user_note)
        # Persist even while being cancelled: a partial reply must not be lost.
        model_turn = await asyncio.shield(
            self._persist_reply(
                reply,
                message,
                conv_id=conv.id,
                text=text,
                status=status,
                finish=finish,
                usage=usage,
                error="interrupted" if cancelled else (str(error) if error else None),
            )
        )
        self.counters[f"turns_{status}"] += 1
        result = TurnResult(
            status=status,
            text=text,
            finish_reason=finish,
            notes=tuple(notes),
            error=error,
            dropped=history.dropped,
            user_turn_id=user_turn.id,
            model_turn_id=model_turn.id,
        )
        if cancelled:
            raise asyncio.CancelledError
        return result

    async def _persist_reply(
        self,
        reply: ReplyStream,
        message: IncomingMessage,
        *,
        conv_id: int,
        text: str,
        status: TurnStatus,
        finish: str | None,
        usage: Usage,
        error: str | None,
    ) -> Turn:
        """Wait for delivery (so message ids are known), then write the model turn."""
        if not await reply.wait(self.delivery_timeout):
            log.warning("reply on %s not fully delivered in time", message.key)
        turn = await self.store.append_turn(
            conv_id,
            NewTurn(
                "model",
                (TextPart(text),) if text else (),
                status=status,
                finish_reason=finish,
                usage=usage,
                token_estimate=usage.output_tokens or estimate_tokens(text=text),
                message_ids=tuple(reply.target.message_ids),
                error=error[:1000] if error else None,
            ),
        )
        day = datetime.now(UTC).date().isoformat()
        await self.store.add_usage(message.key.platform, message.author.id, day=day, usage=usage)
        return turn

    def _outcome(
        self, text: str, finish: str | None, error: BotError | None, cancelled: bool
    ) -> tuple[TurnStatus, str | None]:
        """(status, note for the user) of a finished stream."""
        if cancelled:
            return ("partial" if text else "failed"), INTERRUPTED
        if error is not None:
            if text:
                return "partial", f"The reply was cut short: {error.user_message}"
            return "failed", error.user_message
        if finish in BLOCK_REASONS:
            blocked = ModelBlocked(reason=finish or "SAFETY")
            if text:
                return "partial", f"Gemini stopped this reply early ({finish.lower()})."
            return "failed", blocked.user_message
        if finish == "MAX_TOKENS":
            return "partial", "The reply reached the maximum length and was cut off."
        if finish not in (None, "STOP", "FINISH_REASON_UNSPECIFIED") and not text:
            return "failed", f"Gemini returned no answer ({finish.lower()})."
        return "complete", None

    # -- input -------------------------------------------------------------

    async def _ingest(self, message: IncomingMessage) -> tuple[list[Part], list[str]]:
        """Text and stored attachments of a message, plus notes on what was skipped."""
        parts: list[Part] = []
        notes: list[str] = []
        if message.text.strip():
            parts.append(TextPart(message.text.strip()))
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

    async def _content(self, turn: Turn) -> ModelContent | None:
        """A stored turn as model input; None for turns with nothing to say."""
        # Text-only turns never change once stored: build them once. Turns with files are
        # rebuilt each time because their URIs expire.
        if turn.id in self._contents:
            return self._contents[turn.id]
        content = await self._build_content(turn)
        if all(isinstance(p, TextPart) for p in turn.parts):
            if len(self._contents) >= CONTENT_CACHE_SIZE:
                self._contents.pop(next(iter(self._contents)))
            self._contents[turn.id] = content
        return content

    async def _build_content(self, turn: Turn) -> ModelContent | None:
        out: list[ModelPart] = []
        if turn.role == "user":
            name = turn.author.name if turn.author else "user"
            prefix = f"[{name}] "
            texts = [p for p in turn.parts if isinstance(p, TextPart)]
            if not texts:
                out.append(prefix + "(shared files)")
        else:
            prefix = ""
        for p in turn.parts:
            if isinstance(p, TextPart):
                out.append(prefix + p.text)
                prefix = ""
            else:
                out.extend(await self._file(p))
        if not out:
            return None
        return ModelContent(turn.role, tuple(out))

    async def _file(self, part: FilePart) -> list[ModelPart]:
        """Inline small files; upload big ones once and reuse the URI until near expiry."""
        label = f"[file: {part.name}]"
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
        return [label, FileData(part.mime_type, remote.uri)]

    # -- helpers -----------------------------------------------------------

    async def _expire_remote_files(self, turns: tuple[Turn, ...]) -> None:
        gone = datetime(1970, 1, 1, tzinfo=UTC)
        for turn in turns:
            for p in turn.parts:
                if isinstance(p, FilePart):
                    remote = await self.store.get_remote_file(p.sha256)
                    if remote is not None:
                        await self.store.put_remote_file(p.sha256, replace(remote, expires_at=gone))

    def _with_thread_note(self, persona: Persona, dropped: int) -> Persona:
        note = THREAD_NOTE
        if dropped:
            note += (
                f" {dropped} earlier message(s) of this thread were left out to fit the "
                "context; only the first message and the most recent ones are shown."
            )
        return replace(persona, system_instruction=f"{persona.system_instruction}\n\n{note}")

    async def _deliver_only(self, target: ReplyTarget, text: str) -> None:
        reply = self.scheduler.open(target)
        reply.append(text)
        reply.close()
        await reply.wait(self.delivery_timeout)

    async def _quiet_fail(self, target: ReplyTarget, message: str) -> None:
        reply = self.scheduler.open(target)
        reply.close(fail_message=message)
        await reply.wait(self.delivery_timeout)
