"""ConversationEngine: accept a message durably, then one turn under the thread's lock."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from bot.engine.checkpoint import Checkpointer, TrackedTarget
from bot.engine.content import ContentBuilder, estimate
from bot.engine.drain import arriving, shut_down
from bot.engine.outcome import outcome
from bot.engine.results import FAILED, Accepted, TurnResult, with_thread_note
from bot.engine.streamed import Streamed
from bot.errors import BotError, ModelError, ModelFileUnavailable, ModelTooLarge
from bot.gate import LocalGate, ThreadGate
from bot.personas import PersonaRegistry
from bot.ports import ChatModel, ModelContent, OutFile, ReplyTarget, Store
from bot.streaming import EditScheduler, ReplyStream
from bot.tools import ToolPolicy
from bot.types import (
    Conversation,
    IncomingMessage,
    NewTurn,
    Part,
    Persona,
    TextPart,
    ThreadKey,
    Turn,
    TurnStatus,
    TurnUpdate,
)

log = logging.getLogger(__name__)

__all__ = ["FAILED", "Accepted", "ConversationEngine", "TurnResult"]


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
        tools: ToolPolicy | None = None,
        gate: ThreadGate | None = None,
    ) -> None:
        self.store = store
        self.model = model
        self.personas = personas
        self.scheduler = scheduler or EditScheduler()
        self.history_token_budget = history_token_budget
        self.delivery_timeout = delivery_timeout
        # Who may work on a thread now (across replicas when the store is shared).
        self.locks: ThreadGate = gate if gate is not None else LocalGate(store)
        self.tools = tools or ToolPolicy(store)
        self.counters: Counter[str] = Counter()
        self.content = ContentBuilder(
            store=store,
            model=model,
            inline_max_bytes=inline_max_bytes,
            max_attachment_bytes=max_attachment_bytes,
            counters=self.counters,
        )
        self._tasks: set[asyncio.Task[Any]] = set()
        self._claimed: set[tuple[str, str]] = set()
        # Model turns this process is answering now: a pending reply of this process that
        # is not among them was stranded (see fail_over in bot/compose.py).
        self.working: set[int] = set()
        self.accepting = True
        # Set once a shutdown is past its turns in flight: arriving messages no longer
        # touch the store (bot/engine/drain.py).
        self.closed = False
        self.draining_announced = False

    # -- entry points ------------------------------------------------------

    async def claim(self, platform: str, event_id: str) -> bool:
        """True when this event is new (not stored, not being prepared): answer it once.

        The durable mark is written with the message itself (accept); this only keeps a
        retry or a twin event (Slack's app_mention + message) from being prepared twice.
        """
        key = (platform, event_id)
        if key in self._claimed or await self.store.event_seen(platform, event_id):
            return False
        if key in self._claimed:  # claimed by another task while we read the store
            return False
        self._claimed.add(key)
        return True

    def submit(self, message: IncomingMessage, target: ReplyTarget) -> asyncio.Task[TurnResult]:
        """Handle a message in a background task tracked for graceful shutdown."""
        task = asyncio.create_task(self.handle(message, target), name=f"turn:{message.key}")
        self.track(task)
        return task

    def track(self, task: asyncio.Task[Any]) -> None:
        """Count a task as work in flight (graceful shutdown waits for it; a crash is logged)."""
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            self.counters["turn_crashes"] += 1
            log.error("turn task %s failed", task.get_name(), exc_info=exc)

    @property
    def in_flight(self) -> int:
        """Turns being handled now."""
        return len(self._tasks)

    def live_tasks(self) -> set[asyncio.Task[Any]]:
        """The tracked tasks not finished yet."""
        return {t for t in self._tasks if not t.done()}

    async def shutdown(self, *, grace: float) -> None:
        """Stop taking turns; let turns in flight finish for `grace` s, then interrupt them
        (bot/engine/drain.py)."""
        await shut_down(self, grace=grace)

    async def handle(self, message: IncomingMessage, target: ReplyTarget) -> TurnResult:
        """One turn: everything from the user's message to the stored reply."""
        if not self.accepting:
            return await arriving(self, message, target)
        try:
            accepted = await self.accept(message)
        except Exception as exc:
            return await self._envelope(message, target, exc, None)
        finally:
            self._release(message)
        if accepted is None:
            return TurnResult("duplicate", "")
        self.working.add(accepted.model_turn.id)
        target = self.tracked(target, accepted)
        # The sign (placeholder, typing, status) goes out beside the model call, never
        # before it: a placeholder can wait for a busy channel's post budget. With replicas
        # it waits for the thread's turn (_held_turn): posted while an earlier reply of the
        # thread has no message yet (on another replica, or one whose first text waits for
        # the gate), it would sit above that reply, out of message order.
        signs: list[asyncio.Task[None]] = []
        if not self.locks.shared:
            signs.append(asyncio.create_task(self._sign(target, message.key)))
        try:
            return await self._held_turn(accepted, message, target, signs)
        finally:
            self.working.discard(accepted.model_turn.id)
            for sign in signs:  # its post is tracked; let it land before we return
                await asyncio.shield(sign)

    async def _held_turn(
        self,
        accepted: Accepted,
        message: IncomingMessage,
        target: ReplyTarget,
        signs: list[asyncio.Task[None]],
    ) -> TurnResult:
        """The turn under its thread's hold. A failure of the hold itself (the database,
        with replicas) still closes the reply and tells the user, as any failure does: a
        reply left pending would hold its thread up."""
        result: TurnResult | None = None
        try:
            async with self.locks.hold(
                message.key,
                conversation_id=accepted.conversation.id,
                seq=accepted.model_turn.seq,
            ):
                if not signs:  # replicas: the sign goes out now it is the thread's turn
                    signs.append(asyncio.create_task(self._sign(target, message.key)))
                try:
                    result = await self._turn(accepted, message, target)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    result = await self._envelope(message, target, exc, accepted)
                return result
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if result is not None:  # only letting go of the thread failed: the turn is done
                log.warning("releasing the thread %s failed: %r", message.key, exc)
                return result
            return await self._envelope(message, target, exc, accepted)

    @staticmethod
    async def _sign(target: ReplyTarget, key: ThreadKey) -> None:
        try:
            await target.start()
        except Exception as exc:  # no placeholder is no reason not to answer
            log.warning("start of reply on %s failed: %r", key, exc)

    async def accept(self, message: IncomingMessage) -> Accepted | None:
        """Store the message's text and its pending reply in one transaction (with the
        event mark); None when the event was already handled."""
        parts: tuple[Part, ...] = (TextPart(message.text.strip()),) if message.text.strip() else ()
        event = (message.key.platform, message.event_id) if message.event_id else None
        got = await self.store.accept_turn(
            message.key,
            user=NewTurn("user", parts, author=message.author, token_estimate=estimate(parts)),
            reply=NewTurn("model", (), status="pending"),
            event=event,
        )
        return None if got is None else Accepted(*got)

    def _release(self, message: IncomingMessage) -> None:
        if message.event_id:
            self.release(message.key.platform, message.event_id)

    def release(self, platform: str, event_id: str) -> None:
        """Drop a claim whose message will not reach handle() (preparing it failed)."""
        self._claimed.discard((platform, event_id))

    async def _envelope(
        self,
        message: IncomingMessage,
        target: ReplyTarget,
        exc: Exception,
        accepted: Accepted | None,
    ) -> TurnResult:
        """Any failure of a turn: a note to the user, a log line, a counter."""
        if isinstance(exc, BotError):
            note = exc.user_message
            log.warning("turn on %s failed: %s", message.key, exc)
        else:
            note = FAILED
            log.error("turn on %s failed", message.key, exc_info=exc)
        self.counters["turns_failed"] += 1
        if accepted is not None:
            try:
                await self.store.update_turn(
                    accepted.conversation.id,
                    accepted.model_turn.id,
                    TurnUpdate(status="failed", error=repr(exc)[:1000]),
                )
            except Exception as store_exc:  # left pending: start-up recovery will see it
                log.warning("could not record the failure on %s: %r", message.key, store_exc)
        try:
            await self.tell(target, note)
        except Exception as fail_exc:
            log.warning("could not tell the user on %s: %r", message.key, fail_exc)
        return TurnResult("failed", "", error=exc if isinstance(exc, BotError) else None)

    # -- the turn ----------------------------------------------------------

    async def _turn(
        self, accepted: Accepted, message: IncomingMessage, target: ReplyTarget
    ) -> TurnResult:
        key = message.key
        conv, user_turn = accepted.conversation, accepted.user_turn
        thread_persona = (await self.store.get_conversation(key) or conv).persona
        if message.persona:
            chosen = self.personas.get(message.persona)  # UnknownPersona is a BotError
            await self.store.set_thread_persona(key, chosen.name)
            thread_persona = chosen.name
        persona = await self.persona_for(conv, thread_persona)
        files, notes = await self.content.files(message)
        if files:
            parts = (*user_turn.parts, *files)
            updated = await self.store.update_turn(
                conv.id, user_turn.id, TurnUpdate(parts=parts, token_estimate=estimate(parts))
            )
            user_turn = updated or user_turn
        if not user_turn.parts:
            text = "\n".join(notes) or "(Nothing to answer: the message was empty.)"
            await self.store.update_turn(
                conv.id, accepted.model_turn.id, TurnUpdate(status="failed", error="nothing")
            )
            await self._deliver_only(target, text)
            return TurnResult("skipped", text, notes=tuple(notes))
        prefix = "".join(f"_{note}_\n\n" for note in notes)
        result = await self.answer(
            replace(accepted, user_turn=user_turn), persona, target, prefix=prefix
        )
        return replace(result, notes=tuple(notes))

    async def persona_for(self, conv: Conversation, thread_persona: str | None) -> Persona:
        """The persona a thread uses: its own, else the channel's, else the default."""
        k = conv.key
        channel = await self.store.get_channel_persona(k.platform, k.workspace_id, k.channel_id)
        return self.personas.resolve(thread=thread_persona, channel=channel)

    async def answer(
        self, accepted: Accepted, persona: Persona, target: ReplyTarget, *, prefix: str = ""
    ) -> TurnResult:
        """Call the model for the stored user turn and stream, checkpoint and store the reply."""
        conv, user_turn, model_turn = accepted.conversation, accepted.user_turn, accepted.model_turn
        history = await self.store.load_history(conv.id, token_budget=self.history_token_budget)
        # Only what came before this reply: later messages of the thread wait their turn.
        turns = [t for t in history.turns if t.seq < model_turn.seq and t.status != "pending"]
        if not turns or turns[-1].id != user_turn.id:
            raise ModelTooLarge("message alone exceeds the history budget")
        contents = await self.content.contents(turns)
        persona = await self.tools.apply(with_thread_note(persona, history.dropped), conv.key)
        target = self.tracked(target, accepted)  # before the first post: ids saved at once
        reply = self.scheduler.open(target)
        reply.append(prefix)
        state = Streamed(target.markup, prefix)
        checkpoint = Checkpointer(
            self.store, conversation_id=conv.id, turn_id=model_turn.id, text=lambda: state.text
        )
        saver = asyncio.create_task(checkpoint.run())
        try:
            await self._stream(persona, contents, turns, reply, state)
        finally:
            saver.cancel()
        status, user_note = outcome(state.text, state.finish, state.error, state.cancelled)
        files = state.draft.files
        if files and status == "failed" and state.error is None and not state.cancelled:
            status, user_note = "complete", None  # files and no text: still an answer
        if not state.draft.own.strip():
            if files:  # the message must not keep a status line ("Drawing…") for ever
                names = ", ".join(f.name for f in files)
                reply.append(state.draft.add_note(target.markup.italic(f"Attached: {names}")))
            elif status == "complete":
                reply.append(state.draft.add_note("(Gemini returned an empty answer.)"))
        body, footer = state.draft.final(limit=target.max_chars)
        if footer or body != reply.text.rstrip():
            reply.replace(body, footer=footer)
        reply.close(fail_message=user_note)
        # Persist even while being cancelled: a partial reply must not be lost.
        stored = await asyncio.shield(
            self._persist_reply(reply, accepted, state=state, status=status)
        )
        if state.draft.files and not state.cancelled:
            await self._attach(target, state.draft.files, conv.key)
        self.counters[f"turns_{stored.status}"] += 1
        result = TurnResult(
            status=stored.status,
            text=state.text,
            finish_reason=state.finish,
            error=state.error,
            dropped=history.dropped,
            user_turn_id=user_turn.id,
            model_turn_id=model_turn.id,
        )
        if state.cancelled:
            raise asyncio.CancelledError
        return result

    async def _attach(self, target: ReplyTarget, files: list[OutFile], key: ThreadKey) -> None:
        """Post the reply's files after its text; a refusal is told, not raised."""
        try:
            await target.attach(files)
            self.counters["files_posted"] += len(files)
        except BotError as exc:
            log.warning("files of the reply on %s not posted: %s", key, exc)
            await self.tell(target, exc.user_message)
        except Exception as exc:
            log.warning("files of the reply on %s not posted: %r", key, exc)
            names = ", ".join(f.name for f in files)
            await self.tell(target, f"I could not post {names} here.")

    async def _stream(
        self,
        persona: Persona,
        contents: list[ModelContent],
        turns: list[Turn],
        reply: ReplyStream,
        state: Streamed,
    ) -> None:
        """Run the model into `reply`, recording text, finish, usage and errors in `state`."""
        try:
            for attempt in (1, 2):
                try:
                    async for event in self.model.stream(
                        persona=persona, history=contents[:-1], message=contents[-1]
                    ):
                        await state.apply(event, reply, self.store)
                    return
                except ModelFileUnavailable:
                    if attempt == 2 or state.produced:
                        raise
                    # The provider lost a file early: upload it again from our bytes, once.
                    await self.content.expire_remote_files(turns)
                    contents = await self.content.contents(turns)
        except ModelError as exc:
            state.error = exc
        except asyncio.CancelledError:
            state.cancelled = True
        except Exception as exc:  # a bug or an SDK surprise: tell the user, keep the text
            log.exception("model stream failed")
            state.error = BotError(repr(exc))

    async def _persist_reply(
        self, reply: ReplyStream, accepted: Accepted, *, state: Streamed, status: TurnStatus
    ) -> Turn:
        """Wait for delivery (so message ids are known), then finish the model turn."""
        error = "interrupted" if state.cancelled else (str(state.error) if state.error else None)
        key = accepted.conversation.key
        if not await reply.wait(self.delivery_timeout):
            log.warning("reply on %s not fully delivered in time", key)
        if reply.error is not None and status == "complete":
            # What the user sees is not the whole answer: never store it as complete.
            status = "partial" if state.text else "failed"
            error = f"delivery failed: {reply.error!r}"
        parts = state.draft.parts()
        change = TurnUpdate(
            parts=parts,
            status=status,
            finish_reason=state.finish,
            usage=state.usage,
            token_estimate=state.usage.output_tokens or estimate(parts),
            message_ids=tuple(reply.target.message_ids),
            error=error[:1000] if error else None,
        )
        conv_id, turn = accepted.conversation.id, accepted.model_turn
        stored = await self.store.update_turn(conv_id, turn.id, change)
        author = accepted.user_turn.author
        day = datetime.now(UTC).date().isoformat()
        try:
            await self.store.add_usage(
                key.platform, author.id if author else "", day=day, usage=state.usage
            )
        except Exception as exc:  # the answer is stored and shown: never undo it for this
            log.warning("usage of the reply on %s not recorded: %r", key, exc)
        return stored or change.apply(turn)  # None: the thread was forgotten meanwhile

    # -- helpers -----------------------------------------------------------

    def tracked(self, target: ReplyTarget, accepted: Accepted) -> ReplyTarget:
        """`target`, saving its message ids in the pending reply as soon as they exist."""
        if isinstance(target, TrackedTarget):
            return target
        return TrackedTarget(
            target,
            self.store,
            conversation_id=accepted.conversation.id,
            turn_id=accepted.model_turn.id,
            saved=accepted.model_turn.message_ids,
        )

    async def _deliver_only(self, target: ReplyTarget, text: str) -> None:
        reply = self.scheduler.open(target)
        reply.append(text)
        reply.close()
        await reply.wait(self.delivery_timeout)

    async def tell(self, target: ReplyTarget, message: str) -> None:
        """Show only this message as the reply (no turn is stored for it)."""
        reply = self.scheduler.open(target)
        reply.close(fail_message=message)
        await reply.wait(self.delivery_timeout)
