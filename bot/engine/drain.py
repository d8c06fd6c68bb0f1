"""Shutting the engine down (SIGTERM): the turns in flight get the grace period; a message
that arrives meanwhile is told to ask again, or, with replicas, stored and left to another
replica that serves the database, which answers it as a new message.

Two phases, so that a steady stream of arriving messages cannot stretch the drain: first the
turns in flight; then the store is closed to arriving messages (they are only told to ask
again) and the ones being stored or handed off at that moment get a short while to finish.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from bot.engine.results import RESTARTING, TurnResult
from bot.ports import ReplyTarget
from bot.types import IncomingMessage

if TYPE_CHECKING:
    from bot.engine.core import ConversationEngine

log = logging.getLogger(__name__)

# How long the messages caught mid-hand-off get once the turns in flight are done (a store
# write and an UPDATE: milliseconds), unless the grace is shorter still.
LATE_S = 5.0
# How long telling the other replicas may take (their view of this one is only a hint).
ANNOUNCE_S = 2.0


async def announce_draining(engine: ConversationEngine) -> None:
    """Tell the other replicas this one drains: they stop counting on it to take a
    hand-off over. Once is enough; a failure only costs that hint."""
    if not engine.locks.shared or engine.draining_announced or engine.locks.lost.is_set():
        return
    engine.draining_announced = True
    try:
        await asyncio.wait_for(engine.locks.draining(), ANNOUNCE_S)
    except Exception as exc:
        log.warning("could not tell the other replicas this one is draining: %r", exc)


async def shut_down(engine: ConversationEngine, *, grace: float) -> None:
    """Stop taking turns. Phase one: the turns in flight get `grace` s, then are
    interrupted. Phase two: arriving messages no longer touch the store, and those being
    stored or handed off get up to LATE_S more."""
    engine.accepting = False
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace
    await announce_draining(engine)
    if engine.locks.lost.is_set():  # the others are taking this one's replies over now
        deadline = loop.time()
    await _finish(engine.live_tasks(), deadline - loop.time())
    engine.closed = True
    await _finish(engine.live_tasks(), min(grace, LATE_S))


async def _finish(tasks: set[asyncio.Task[Any]], within: float) -> None:
    if not tasks:
        return
    _done, still = await asyncio.wait(tasks, timeout=max(0.0, within))
    for task in still:
        task.cancel()
    if still:
        await asyncio.wait(still, timeout=10)


async def arriving(
    engine: ConversationEngine, message: IncomingMessage, target: ReplyTarget
) -> TurnResult:
    """A message that arrived while shutting down: handed off when another replica serves,
    else told to ask again. Not a message with files (fetching them, and telling what was
    skipped, would be new work here) or a persona choice (checked in the thread's turn)."""
    if not engine.closed and not message.attachments and message.persona is None:
        try:
            serving = engine.locks.shared and await engine.locks.peers()
        except Exception as exc:
            log.warning("could not look for another replica to answer %s: %r", message.key, exc)
            serving = False
        if serving and not engine.closed:  # the look may have outlasted phase one
            return await _hand_off(engine, message, target)
    if message.event_id:
        engine.release(message.key.platform, message.event_id)
    await engine.tell(target, RESTARTING)
    return TurnResult("rejected", "")


async def _hand_off(
    engine: ConversationEngine, message: IncomingMessage, target: ReplyTarget
) -> TurnResult:
    """Store the message as any other and leave its reply to another replica."""
    try:
        accepted = await engine.accept(message)
    except Exception as exc:
        log.warning("could not store a message while shutting down: %r", exc)
        await engine.tell(target, RESTARTING)
        return TurnResult("rejected", "")
    finally:
        if message.event_id:
            engine.release(message.key.platform, message.event_id)
    if accepted is None:
        return TurnResult("duplicate", "")
    try:
        await engine.locks.hand_off(accepted.model_turn.id)
    except Exception as exc:
        # Still this replica's: taken over as a dead replica's once it has stopped.
        engine.counters["hand_off_failures"] += 1
        log.warning("handing the reply on %s to another replica failed: %r", message.key, exc)
        return TurnResult("stored", "")
    engine.counters["handed_off"] += 1
    return TurnResult("handed_off", "")
