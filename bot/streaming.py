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
from collections import Counter, deque
from collections.abc import Awaitable, Callable

from bot.adaptive import AdaptiveBucket, Estimate
from bot.clock import Clock, SystemClock
from bot.errors import PlatformRateLimited
from bot.limiters import Limiter, SlidingWindow, Ticket, TokenBucket
from bot.ports import Budget, ReplyTarget, SharedLimits
from bot.reply_stream import MAX_CALL_ATTEMPTS, ReplyStream, _Op
from bot.shared_limits import SharedSlots

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


class EditScheduler:
    """Shares each platform budget fairly among all replies in flight on it.

    Lanes and limiters are made on first use and forgotten once idle and fully recovered
    (see _Lane), so a process serving many threads or workspaces keeps only the recent ones:
    a lane forgets itself when it goes idle, and a sweep at most every SWEEP_EVERY seconds
    (run by open() and call()) catches the rest (limiters used only by call(), parents,
    replies dropped without being closed).
    """

    SWEEP_EVERY = 60.0
    FORGET_AFTER = 600.0  # seconds an unused adaptive estimate is remembered

    def __init__(self, clock: Clock | None = None, shared: SharedLimits | None = None) -> None:
        self.clock: Clock = clock or SystemClock()
        # With replicas: every call also claims its slot from the budgets they share.
        self.shared = SharedSlots(shared, self.clock) if shared is not None else None
        self._lanes: dict[str, _Lane] = {}
        self._buckets: dict[str, Limiter] = {}
        self._estimates: dict[str, Estimate] = {}
        # Calls a reply will need beyond its final, announced before it is open (a
        # placeholder's first-text edit): spare() counts them.
        self.promised: Counter[str] = Counter()
        self.rate_limited = 0
        self._next_sweep = float("-inf")

    def _bucket(self, budget: Budget) -> Limiter:
        bucket = self._buckets.get(budget.key)
        if bucket is None:
            parent = self._bucket(budget.parent) if budget.parent else None
            if parent is not None:
                parent.users += 1
            if budget.adaptive:
                family = budget.family or budget.key
                estimate = self._estimates.get(family)
                if estimate is None:
                    estimate = self._estimates[family] = Estimate(budget, self.clock)
                bucket = AdaptiveBucket(budget, self.clock, estimate, parent)
            elif budget.window > 0:
                bucket = SlidingWindow(budget, self.clock, parent)
            else:
                bucket = TokenBucket(budget, self.clock, parent)
            self._buckets[budget.key] = bucket
        return bucket

    def promise(self, budget: Budget) -> None:
        """A reply will need one call of `budget` beyond its final (a placeholder's
        first-text edit): spare() counts it until it is kept."""
        self.promised[budget.key] += 1

    def keep(self, budget: Budget) -> None:
        """A promised call is made (or no longer needed)."""
        self.promised[budget.key] -= 1
        if self.promised[budget.key] <= 0:
            del self.promised[budget.key]

    def spare(self, budget: Budget) -> float:
        """Calls the budget can make now beyond one for every reply in flight on it and
        every call promised (`promised`): above 0, one more call costs nobody a wait."""
        bucket = self._buckets.get(budget.key)
        if bucket is not None:
            tokens = bucket.available()
        else:
            est = self.estimate(budget)
            tokens = float(est.burst if est is not None else budget.burst)
        if self.shared is not None and self.shared.spent_within(
            budget.key, budget.burst / budget.rate
        ):
            # With replicas this replica's limiter sees only its own calls: a claim that
            # found the shared budget spent moments ago (about the time it takes to refill
            # its burst) says the workspace is crowded, whatever the local bucket holds.
            tokens = 0.0
        lane = self._lanes.get(budget.key)
        live = sum(1 for r in list(lane.replies) if not r.delivered) if lane else 0
        return tokens - live - self.promised[budget.key]

    def estimate(self, budget: Budget) -> Estimate | None:
        """What an adaptive budget's family has learned so far (None: nothing yet)."""
        return self._estimates.get(budget.family or budget.key)

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
        if isinstance(bucket, AdaptiveBucket):
            bucket.estimate.users -= 1
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
        for family, est in list(self._estimates.items()):
            # What was learned is kept a while after its last use: the next burst of
            # replies in that workspace starts from it rather than from the documentation.
            if est.users == 0 and (est.at_rest() or now - est.last_used > self.FORGET_AFTER):
                del self._estimates[family]

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
                probe = wait > 0 and bucket.can_probe()
                if wait > 0 and not probe:
                    await self._wait_for(bucket, wait)
                    continue
                ticket = bucket.take_probe() if probe else bucket.take()
                waited = False
                try:
                    if self.shared is not None:
                        waited = await self.shared.slot(bucket)
                    await fn()
                except PlatformRateLimited as exc:
                    bucket.refused(ticket, exc.retry_after)
                    continue
                except BaseException:
                    bucket.failed(ticket)
                    raise
                finally:
                    ticket.done(self.clock.now())
                if waited and ticket.probe:  # it went within the shared budget: no news
                    bucket.failed(ticket)
                else:
                    bucket.succeeded(ticket)
                return
        finally:
            bucket.users -= 1

    async def _wait_for(self, bucket: Limiter, seconds: float) -> None:
        """Sleep `seconds`, or less when the family's probe ends (it may be this call's
        turn to probe, or the probe proved room)."""
        if not isinstance(bucket, AdaptiveBucket) or not bucket.estimate.probing:
            await self.clock.sleep(seconds)
            return
        sleeper = asyncio.ensure_future(self.clock.sleep(seconds))
        changed = asyncio.ensure_future(bucket.estimate.changed.wait())
        try:
            await asyncio.wait({sleeper, changed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            changed.cancel()

    async def aclose(self) -> None:
        """Cancel the lane workers (pending replies stop being shown)."""
        for lane in self._lanes.values():
            tasks = [t for t in (lane.task, *lane.calls) if t is not None]
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
