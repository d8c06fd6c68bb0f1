"""Start-up recovery: replies a crashed process left pending are answered again or marked.

Every reply is stored as a pending model turn before the model is called, with its platform
message ids saved as soon as they exist and its text every few seconds (checkpoint.py). A
process killed mid-reply leaves that turn pending; the next process finds it before taking
new events and, by RECOVERY, either answers the user turn again in the frozen message
(`resume`, at most once per reply) or marks the message as interrupted (`mark`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Literal

from bot.engine.checkpoint import TargetWrapper
from bot.ports import Adapter, EditsBeforeConnected, ReplyTarget
from bot.types import PendingReply, ThreadKey, TurnStatus, TurnUpdate

if TYPE_CHECKING:
    from bot.engine.core import ConversationEngine

log = logging.getLogger(__name__)

RecoveryMode = Literal["resume", "mark"]
TargetFor = Callable[[ThreadKey, tuple[str, ...]], Awaitable[ReplyTarget | None]]

REGENERATED = "_Regenerated after a restart._\n\n"
MARKED = (
    "_⚠️ This reply was interrupted when the bot restarted. "
    "Send your message again (or mention me) to get a full answer._"
)
SUPERSEDED = "_(Replaced: the answer was regenerated after a restart.)_"


class _Recovered(TargetWrapper):
    """A platform target over a reply's existing messages that records which it re-used."""

    def __init__(self, target: ReplyTarget, existing: int) -> None:
        super().__init__(target)
        self.existing = existing
        self.used = -1

    async def start(self) -> None:
        if not self.existing:  # nothing was posted before the crash: show a sign now
            await self.target.start()

    async def show(self, text: str, *, part: int) -> None:
        self.used = max(self.used, part)
        await self.target.show(text, part=part)

    async def finish(self, text: str, *, part: int) -> None:
        self.used = max(self.used, part)
        await self.target.finish(text, part=part)


# How long recovery waits for a platform to connect before it gives up on a reply (stored
# as interrupted; the message keeps what it showed).
CONNECT_WAIT_S = 120.0


def targets_from(adapters: Sequence[Adapter], *, wait: float = CONNECT_WAIT_S) -> TargetFor:
    """Recovery targets from the running adapters: the one named like the thread's
    platform, once it can edit messages (connected, or sooner where it says so);
    None where no adapter can edit that platform."""

    def ready(adapter: Adapter) -> bool:
        if isinstance(adapter, EditsBeforeConnected):
            return adapter.can_edit
        return adapter.connected

    async def target_for(key: ThreadKey, message_ids: tuple[str, ...]) -> ReplyTarget | None:
        adapter = next((a for a in adapters if a.name == key.platform), None)
        make = getattr(adapter, "recovery_target", None)
        if adapter is None or make is None:
            return None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while not ready(adapter):
            if loop.time() > deadline:
                log.warning(
                    "recovery: %s did not connect; %s left as interrupted", key.platform, key
                )
                return None
            await asyncio.sleep(0.05)
        target: ReplyTarget = await make(key, message_ids)
        return target

    return target_for


class Recovery:
    """Finds pending replies at start-up and resumes or marks each one once."""

    def __init__(self, engine: ConversationEngine, *, mode: RecoveryMode = "resume") -> None:
        self.engine = engine
        self.mode = mode
        self.done: dict[str, int] = {"resumed": 0, "marked": 0, "failed": 0, "answered": 0}

    def _count(self, outcome: str) -> None:
        self.done[outcome] += 1
        self.engine.counters[f"recovered_{outcome}"] += 1

    async def find(self) -> list[PendingReply]:
        """Every reply a process that is gone left pending, now this one's to recover
        (at start-up, before taking new events; with replicas, also periodically)."""
        pending = await self.engine.locks.orphans()
        if pending:
            log.info(
                "recovery: %d unfinished repl(ies) found (RECOVERY=%s)", len(pending), self.mode
            )
        return pending

    async def start(
        self, pending: list[PendingReply], target_for: TargetFor
    ) -> list[asyncio.Task[None]]:
        """Recover each reply in a task that holds its thread's lock from the start, so
        new messages in that thread wait for it."""
        tasks = [
            asyncio.create_task(self._one(p, target_for), name=f"recover:{p.conversation.key}")
            for p in pending
        ]
        for task in tasks:
            self.engine.track(task)
        await asyncio.sleep(0)  # each task takes its thread's lock before events flow
        return tasks

    async def _one(self, p: PendingReply, target_for: TargetFor) -> None:
        key = p.conversation.key
        self.engine.working.add(p.model_turn.id)
        try:
            async with self.engine.locks.hold(
                key, conversation_id=p.conversation.id, seq=p.model_turn.seq
            ):
                try:
                    await self._recover(p, target_for)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    self._count("failed")
                    log.exception("recovery of the reply on %s failed", key)
                    await self._fallback(p, target_for)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the hold failed: still pending, found again later
            log.warning("recovery of the reply on %s could not hold its thread: %r", key, exc)
        finally:
            self.engine.working.discard(p.model_turn.id)

    async def stranded(self, seen: set[int]) -> tuple[list[PendingReply], set[int]]:
        """This process's pending replies that no task of it is answering (a failure left
        them): those also seen so at the previous look (`seen`), so a reply whose task is
        a moment from starting is never taken; and the ids seen so now."""
        mine = await self.engine.locks.own_pending()
        idle = [p for p in mine if p.model_turn.id not in self.engine.working]
        found = [p for p in idle if p.model_turn.id in seen]
        if found:
            log.warning("recovery: %d reply(ies) of this process were stranded", len(found))
        return found, {p.model_turn.id for p in idle} - {p.model_turn.id for p in found}

    async def _fallback(self, p: PendingReply, target_for: TargetFor) -> None:
        """A recovery that failed still closes the reply: marked, never left frozen."""
        try:
            turn = (
                await self.engine.store.update_turn(
                    p.conversation.id, p.model_turn.id, TurnUpdate(attempts=1)
                )
            ) or p.model_turn
            if turn.status != "pending":
                return  # answer() got as far as storing it
            target = await target_for(p.conversation.key, turn.message_ids)
            if target is not None:
                await self._mark(replace(p, model_turn=turn), _Recovered(target, 0))
                return
        except Exception:
            log.exception("marking the reply on %s failed too", p.conversation.key)
        # The platform is out of reach (channel gone, no permission): close it in the store
        # at least, so later start-ups do not try again forever.
        status: TurnStatus = "partial" if p.model_turn.text else "failed"
        try:
            await self.engine.store.update_turn(
                p.conversation.id,
                p.model_turn.id,
                TurnUpdate(status=status, error="interrupted by a restart; recovery failed"),
            )
        except Exception as exc:
            log.warning("could not close the reply on %s: %r", p.conversation.key, exc)

    async def _recover(self, p: PendingReply, target_for: TargetFor) -> None:
        store = self.engine.store
        conv, turn = p.conversation, p.model_turn
        target = await target_for(conv.key, turn.message_ids)
        if target is None:
            status: TurnStatus = "partial" if turn.text else "failed"
            await store.update_turn(
                conv.id, turn.id, TurnUpdate(status=status, error="interrupted by a restart")
            )
            self._count("marked")
            return
        wrapped = _Recovered(target, len(turn.message_ids))
        if p.handed_off and turn.attempts == 0:  # never begun: answered as a new message
            await store.update_turn(conv.id, turn.id, TurnUpdate(attempts=1))
            await self._resume(p, wrapped, prefix="")
            self._count("answered")
        elif self.mode == "resume" and turn.attempts == 0:
            # Counted before the call: if this answer is cut by another crash, the next
            # start-up marks the message instead of trying again.
            await store.update_turn(conv.id, turn.id, TurnUpdate(attempts=1))
            await self._resume(p, wrapped)
            self._count("resumed")
        else:
            await self._mark(p, wrapped)
            self._count("marked")

    async def _resume(self, p: PendingReply, target: _Recovered, prefix: str = REGENERATED) -> None:
        from bot.engine.core import Accepted

        engine = self.engine
        accepted = Accepted(p.conversation, p.user_turn, p.model_turn)
        tracked = engine.tracked(target, accepted)  # a new placeholder's id is saved at once
        await tracked.start()  # a sign in the thread when the crash left no message
        persona = await engine.persona_for(p.conversation, p.conversation.persona)
        await engine.answer(accepted, persona, tracked, prefix=prefix)
        # Messages of the old reply that the new one did not need would keep stale text.
        for part in range(target.used + 1, target.existing):

            async def supersede(part: int = part) -> None:
                await target.target.show(SUPERSEDED, part=part)

            await engine.scheduler.call(target.budget, supersede)

    async def _mark(self, p: PendingReply, target: _Recovered) -> None:
        engine = self.engine
        text = p.model_turn.text
        reply = engine.scheduler.open(target)
        reply.append(f"{text}\n\n{MARKED}" if text else MARKED)
        reply.close()
        await reply.wait(engine.delivery_timeout)
        await engine.store.update_turn(
            p.conversation.id,
            p.model_turn.id,
            TurnUpdate(
                status="partial" if text else "failed",
                error="interrupted by a restart; marked",
                message_ids=tuple(target.message_ids),
            ),
        )
