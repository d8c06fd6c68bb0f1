"""EditScheduler: turns model deltas into paced ReplyTarget calls.

Every platform call of a reply (show, finish, fail) goes through a lane: one lane per
Budget key (e.g. one Slack workspace's chat.update budget, or one Discord channel). A lane
is a limiter (bot/limiters.py) plus a round-robin queue of replies that have something new
to show, so replies in flight on the same budget share it fairly and each call shows the
newest text (edits coalesce). A 429 blocks the lane for Retry-After and the call is retried
later with whatever text is current then, so no text is lost.

Lanes live only while they matter: once no reply of a lane is being delivered and its
limiter is back to the state of a new one (full bucket or empty window, no Retry-After
pending), the lane is forgotten, so a bot that served a million Discord threads keeps only
the few of the last seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections import deque
from collections.abc import Awaitable, Callable

from bot.clock import Clock, SystemClock
from bot.errors import PlatformRateLimited
from bot.limiters import Limiter, SlidingWindow, Ticket, TokenBucket
from bot.ports import Budget, ReplyTarget
from bot.reply_stream import MAX_CALL_ATTEMPTS, ReplyStream, _Op

__all__ = ["MAX_CALL_ATTEMPTS", "EditScheduler", "ReplyStream"]

log = logging.getLogger(__name__)


class _Lane:
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
        self.last_call_at = float("-inf")
        self.next_need = 1

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
        """Seconds until the limiter (and the edit spacing) is as a new lane's would be."""
        spacing = self.last_call_at + self.bucket.budget.spacing - self.scheduler.clock.now()
        return max(self.bucket.recovers_in(), spacing, 0.0)

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
        clock = self.scheduler.clock
        while True:
            if await self._idle():
                return
            wait = self.bucket.delay()
            if wait > 0:
                await clock.sleep(wait)
                continue
            picked = self._pick()
            if picked is None:
                # Nothing waiting may use what is left: sleep until the cheapest waiting call
                # may go, or until a more urgent one (a first text, a final) comes in.
                need = self.bucket.time_until(self.next_need)
                if self.next_need > self.bucket.budget.reserve:
                    need = max(need, self.last_call_at + self.bucket.budget.spacing - clock.now())
                await self._sleep_or_wake(need)
                continue
            reply, op = picked
            ticket = self.bucket.take()
            self.last_call_at = clock.now()
            task = asyncio.create_task(self._call(reply, op, ticket))
            self.calls.add(task)
            task.add_done_callback(self._call_done)

    def _call_done(self, task: asyncio.Task[None]) -> None:
        self.calls.discard(task)
        # The lane may have looked while this task was still listed: look again.
        self.wake.set()

    def _tokens_needed(self, reply: ReplyStream, op: _Op) -> int:
        """A message's first text may take the last token; a final keeps one back for the
        next reply's first text; an intermediate edit leaves the whole reserve."""
        reserve = self.bucket.budget.reserve
        if op.kind == "show" and (
            op.part not in reply._shown or (op.part in reply._status_parts and reply.urgent(op))
        ):
            return 1
        if reply.urgent(op):
            return max(1, reserve)
        return reserve + 1

    def _pick(self) -> tuple[ReplyStream, _Op] | None:
        """First texts first, then finals, then intermediate edits (spaced out), each in
        queue order, when the bucket holds enough. Finished or busy replies leave the queue.
        Sets `self.next_need` to the tokens the cheapest waiting call needs."""
        budget = self.bucket.budget
        available = self.bucket.available()
        spaced = self.scheduler.clock.now() - self.last_call_at >= budget.spacing
        best: tuple[int, ReplyStream, _Op] | None = None
        self.next_need = budget.reserve + 1
        for reply in list(self.queue):
            op = reply.next_op() if not reply._in_flight else None
            if op is None:
                self.queue.remove(reply)
                reply.queued = False
                reply._check_done()
                continue
            need = self._tokens_needed(reply, op)
            self.next_need = min(self.next_need, need)
            if available < need or (need > budget.reserve and not spaced):
                continue
            if best is None or need < best[0]:
                best = (need, reply, op)
                if need == 1:
                    break
        if best is None:
            return None
        self.queue.remove(best[1])
        best[1].queued = False
        return best[1], best[2]

    async def _call(self, reply: ReplyStream, op: _Op, ticket: Ticket) -> None:
        try:
            try:
                await reply.run_op(op, self.scheduler.clock)
            finally:
                ticket.done(self.scheduler.clock.now())
        except PlatformRateLimited as exc:
            self.rate_limited += 1
            self.scheduler.rate_limited += 1
            log.info("429 on %s: slowing down for %.2fs", self.bucket.budget.key, exc.retry_after)
            self.bucket.penalize(exc.retry_after)
            # It lost its turn through no fault of its own: it goes first next time.
            if not reply.queued and reply.has_work():
                reply.queued = True
                self.queue.appendleft(reply)
        else:
            if not reply.queued and reply.has_work():
                reply.queued = True
                self.queue.append(reply)
        finally:
            self.wake.set()


class EditScheduler:
    """Shares each platform budget fairly among all replies in flight on it.

    Lanes and limiters are made on first use and forgotten once idle and fully recovered
    (see _Lane), so a process serving many threads or workspaces keeps only the recent ones:
    a lane forgets itself when it goes idle, and a sweep at most every SWEEP_EVERY seconds
    (run by open() and call()) catches the rest (limiters used only by call(), parents,
    replies dropped without being closed).
    """

    SWEEP_EVERY = 60.0

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock: Clock = clock or SystemClock()
        self._lanes: dict[str, _Lane] = {}
        self._buckets: dict[str, Limiter] = {}
        self.rate_limited = 0
        self._next_sweep = float("-inf")

    def _bucket(self, budget: Budget) -> Limiter:
        bucket = self._buckets.get(budget.key)
        if bucket is None:
            parent = self._bucket(budget.parent) if budget.parent else None
            if parent is not None:
                parent.users += 1
            kind = SlidingWindow if budget.window > 0 else TokenBucket
            bucket = kind(budget, self.clock, parent)
            self._buckets[budget.key] = bucket
        return bucket

    def _drop_lane(self, lane: _Lane) -> bool:
        """Forget an idle, recovered lane (and then its limiter if nothing else uses it)."""
        key = lane.bucket.budget.key
        if self._lanes.get(key) is not lane or lane.queue or lane.calls or lane.held():
            return False
        if lane.recovers_in() > 0:
            return False
        del self._lanes[key]
        lane.bucket.users -= 1
        self._drop_bucket(lane.bucket)
        return True

    def _drop_bucket(self, bucket: Limiter) -> None:
        """Forget a limiter nothing uses once it is as a new one would be; then its parent."""
        key = bucket.budget.key
        if self._buckets.get(key) is not bucket or bucket.users > 0 or bucket.recovers_in() > 0:
            return
        del self._buckets[key]
        if bucket.parent is not None:
            bucket.parent.users -= 1
            self._drop_bucket(bucket.parent)

    def sweep(self) -> None:
        """Forget every idle, recovered lane and limiter (at most every SWEEP_EVERY s)."""
        now = self.clock.now()
        if now < self._next_sweep:
            return
        self._next_sweep = now + self.SWEEP_EVERY
        for lane in list(self._lanes.values()):
            # A running lane task forgets its lane itself when it goes idle.
            if lane.task is None or lane.task.done():
                self._drop_lane(lane)
        for bucket in list(self._buckets.values()):
            self._drop_bucket(bucket)

    def open(self, target: ReplyTarget) -> ReplyStream:
        """Start a reply on the target's budget."""
        self.sweep()
        lane = self._lanes.get(target.budget.key)
        if lane is None:
            bucket = self._bucket(target.budget)
            bucket.users += 1
            lane = _Lane(self, bucket)
            self._lanes[target.budget.key] = lane
        reply = ReplyStream(target, lane)
        lane.replies.add(reply)
        return reply

    async def call(self, budget: Budget, fn: Callable[[], Awaitable[None]]) -> None:
        """Run a one-off platform call (not part of a reply) within a budget."""
        self.sweep()
        bucket = self._bucket(budget)
        # Held for the whole call, waits included: the limiter must not be forgotten (and
        # a second one made for the key) while this call still counts against it.
        bucket.users += 1
        try:
            while True:
                wait = bucket.delay()
                if wait > 0:
                    await self.clock.sleep(wait)
                    continue
                ticket = bucket.take()
                try:
                    await fn()
                    return
                except PlatformRateLimited as exc:
                    bucket.penalize(exc.retry_after)
                finally:
                    ticket.done(self.clock.now())
        finally:
            bucket.users -= 1

    async def aclose(self) -> None:
        """Cancel the lane workers (pending replies stop being shown)."""
        for lane in self._lanes.values():
            tasks = [t for t in (lane.task, *lane.calls) if t is not None]
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
