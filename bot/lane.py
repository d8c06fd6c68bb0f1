"""A lane: one platform budget's limiter and the round-robin queue of replies waiting on
it (see EditScheduler in bot/streaming.py, which makes and forgets lanes).

Each call shows the newest text of the reply whose turn it is; a 429 holds the lane for
Retry-After and the call is tried again later with the text current then.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections import deque
from typing import TYPE_CHECKING

from bot.errors import PlatformRateLimited
from bot.limiters import Limiter, Ticket
from bot.reply_stream import ReplyStream, _Op

if TYPE_CHECKING:
    from bot.streaming import EditScheduler

__all__ = ["Lane"]

log = logging.getLogger(__name__)


class Lane:
    """One budget: a limiter and a fair queue of replies waiting to be shown.

    The scheduler forgets a lane (and its limiter) once it is idle: no reply of it is still
    being delivered, nothing is queued or in flight, and the limiter has recovered to the
    state a new one starts in. A lane for the same key made later is then indistinguishable
    from the one forgotten, so forgetting never lets a call through early.
    """

    def __init__(self, scheduler: EditScheduler, bucket: Limiter) -> None:
        self.scheduler = scheduler
        self.bucket = bucket
        self.queue: deque[ReplyStream] = deque()
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.calls: set[asyncio.Task[None]] = set()
        # Weak: a reply dropped without being closed must not pin its lane for ever.
        self.replies: weakref.WeakSet[ReplyStream] = weakref.WeakSet()
        self.rate_limited = 0

    def notify(self, reply: ReplyStream) -> None:
        """The reply has something new (text, a close): queue it and make sure we run."""
        if reply.has_work():
            if not reply.queued:
                reply.queued = True
                self.queue.append(reply)
            # Also when already queued: its next call may now be urgent (a final).
            self.wake.set()
            if self.task is None or self.task.done():
                name = f"lane:{self.bucket.budget.key}"
                self.task = asyncio.create_task(self._run(), name=name)
        reply._check_done()

    def held(self) -> bool:
        """True while a reply of this lane is still to be delivered (it will call again)."""
        for reply in list(self.replies):
            if reply.delivered:
                self.replies.discard(reply)
        return bool(self.replies)

    def recovers_in(self) -> float:
        """Seconds until the limiter is as a new lane's would be."""
        return max(self.bucket.recovers_in(), 0.0)

    async def _sleep_or_wake(self, seconds: float) -> None:
        """Sleep `seconds` on the clock, or less if notify() or a call wakes the lane."""
        self.wake.clear()
        sleeper = asyncio.ensure_future(self.scheduler.clock.sleep(max(seconds, 0.001)))
        waker = asyncio.ensure_future(self.wake.wait())
        try:
            await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            waker.cancel()

    async def _idle(self) -> bool:
        """Wait while nothing is queued; True when the task should end."""
        while not self.queue:
            self.wake.clear()
            if self.calls:
                await self.wake.wait()
                continue
            if self.held():
                # A reply still in progress will notify() (and restart us) when it has more.
                return True
            rest = self.recovers_in()
            if rest <= 0:
                self.scheduler._drop_lane(self)
                return True
            # Stay until the limiter recovers, then forget the lane (unless work comes).
            await self._sleep_or_wake(rest)
        return False

    async def _run(self) -> None:
        while True:
            if await self._idle():
                return
            wait = self.bucket.delay()
            # While the limiter holds calls back, calls that cost it nothing still go.
            picked, hint = self._pick(free=wait > 0)
            probe = False
            if picked is None and self.bucket.can_probe():
                # The estimate holds every waiting call back: an adaptive budget tries one
                # beyond it (bot/adaptive.py), so it finds out whether the platform has room.
                picked, _ = self._pick(probe=True)
                probe = picked is not None
            if picked is None:
                if not self.queue:
                    continue  # nothing left to do: _idle() decides what next
                # Sleep until the cheapest waiting call may go, or until a more urgent one
                # (a first text, a final) comes in, or a call ends.
                await self._sleep_or_wake(wait if wait > 0 else hint)
                continue
            reply, op = picked
            ticket: Ticket | None = None
            if probe:
                ticket = self.bucket.take_probe()
            elif reply.target.edits(op.part, op.text):
                ticket = self.bucket.take()
            reply.last_call_at = self.scheduler.clock.now()
            task = asyncio.create_task(self._call(reply, op, ticket))
            self.calls.add(task)
            task.add_done_callback(self._call_done)

    def _call_done(self, task: asyncio.Task[None]) -> None:
        self.calls.discard(task)
        # The lane may have looked while this task was still listed: look again.
        self.wake.set()

    def _others(self) -> int:
        """Replies of this lane still to be delivered, but one: each will need at least
        one more call (its final), which intermediate edits must leave budget for."""
        return max(0, sum(1 for r in list(self.replies) if not r.delivered) - 1)

    def _tokens_needed(self, reply: ReplyStream, op: _Op, others: int) -> int:
        """A message's first text may take the last token; a final keeps `reserve` back
        for the next reply's first text; an intermediate edit leaves the reserve and one
        call for every other reply in flight (their finals), up to a full bucket: then
        intermediate edits spend only tokens the bucket would otherwise waste (and, with
        a bucket of one, that one)."""
        reserve = self.bucket.budget.reserve
        if op.kind == "show" and reply.first_text(op):
            return 1
        if reply.urgent(op):
            return max(1, reserve)
        if others == 0 and self.bucket.budget.adaptive:
            # A lone reply on an adaptive budget may spend it to the bottom: only an empty
            # bucket lets it probe, which is how a quiet workspace finds its real limit.
            return 1
        return max(1, min(reserve + 1 + others, int(self.bucket.available_max())))

    def _pick(
        self, *, probe: bool = False, free: bool = False
    ) -> tuple[tuple[ReplyStream, _Op] | None, float]:
        """First texts first, then finals, then intermediate edits (each reply's spaced
        out), in queue order, when the bucket holds enough; with `probe`, whatever the
        bucket holds, but an intermediate edit only when no other reply is in flight.
        With `free`, only calls that cost this budget nothing. Finished or busy replies
        leave the queue. Also returns the seconds until a call now held back might go."""
        budget = self.bucket.budget
        now = self.scheduler.clock.now()
        available = self.bucket.available()
        others = self._others()
        best: tuple[int, ReplyStream, _Op] | None = None
        hint = float("inf")
        for reply in list(self.queue):
            op = reply.next_op() if not reply._in_flight else None
            if op is None:
                self.queue.remove(reply)
                reply.queued = False
                reply._check_done()
                continue
            if reply.held_until > now:
                hint = min(hint, reply.held_until - now)
                continue
            if not reply.target.edits(op.part, op.text):
                # It only posts a message, paid from another budget (Slack's
                # chat.postMessage per channel): nothing to wait for here.
                best = (0, reply, op)
                break
            if free:
                continue
            need = self._tokens_needed(reply, op, others)
            urgent = reply.urgent(op)
            if not urgent and now - reply.last_call_at < budget.spacing:
                hint = min(hint, reply.last_call_at + budget.spacing - now)
                continue
            if probe and not urgent and others > 0:
                # In a crowd, room found beyond the estimate goes to first texts and
                # finals, which need it more.
                continue
            if not probe and available < need:
                hint = min(hint, self.bucket.time_until(need))
                continue
            if best is None or need < best[0]:
                best = (need, reply, op)
                if need == 1:
                    break
        if best is None:
            return None, hint
        self.queue.remove(best[1])
        best[1].queued = False
        return (best[1], best[2]), hint

    async def _call(self, reply: ReplyStream, op: _Op, ticket: Ticket | None) -> None:
        try:
            shared_wait = False
            try:
                if ticket is not None and self.scheduler.shared is not None:
                    # The reply is in flight while it waits for the shared slot (which can
                    # take long when replicas crowd the budget): else a later call of it (its
                    # final) could be picked, go first, and be overwritten by this one's
                    # older text. After the wait the call shows the reply's newest state.
                    reply._in_flight = True
                    try:
                        shared_wait = await self.scheduler.shared.slot(self.bucket)
                    finally:
                        reply._in_flight = False
                    op = reply.next_op() or op
                sent = await reply.run_op(op, self.scheduler.clock)
            finally:
                if ticket is not None:
                    ticket.done(self.scheduler.clock.now())
            if ticket is None:
                pass
            elif sent and ticket.probe and shared_wait:
                # Held back until the replicas' shared budget had room: it went as a call
                # within that budget, which proves nothing about room beyond it.
                self.bucket.failed(ticket)
            elif sent is None:
                self.bucket.failed(ticket)
            elif sent:
                self.bucket.succeeded(ticket)
            else:  # the target found nothing to send: the token was not spent
                self.bucket.refund(ticket)
        except PlatformRateLimited as exc:
            self.rate_limited += 1
            self.scheduler.rate_limited += 1
            log.info("429 on %s: slowing down for %.2fs", self.bucket.budget.key, exc.retry_after)
            if ticket is not None:
                self.bucket.refused(ticket, exc.retry_after)
            else:
                # A call paid from another budget should have waited there; if a 429
                # still comes through, this reply at least waits it out.
                reply.held_until = self.scheduler.clock.now() + exc.retry_after
            # It lost its turn through no fault of its own: it goes first next time.
            if not reply.queued and reply.has_work():
                reply.queued = True
                self.queue.appendleft(reply)
        except BaseException:
            if ticket is not None:  # cancelled: a probe must not stay counted
                self.bucket.failed(ticket)
            raise
        else:
            if not reply.queued and reply.has_work():
                reply.queued = True
                self.queue.append(reply)
        finally:
            self.wake.set()
