"""EditScheduler: turns model deltas into paced ReplyTarget calls.

Every platform call of a reply (show, finish, fail) goes through a lane: one lane per
Budget key (e.g. one Slack workspace's chat.update budget, or one Discord channel). A lane
(bot/lane.py) is a limiter (bot/limiters.py) plus a round-robin queue of replies that have
something new to show, so replies in flight on the same budget share it fairly and each
call shows the newest text (edits coalesce). A 429 blocks the lane for Retry-After and the
call is retried later with whatever text is current then, so no text is lost.

Lanes live only while they matter: once no reply of a lane is being delivered and its
limiter is back to the state of a new one (full bucket or empty window, no Retry-After
pending), the lane is forgotten, so a bot that served a million Discord threads keeps only
the few of the last seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable

from bot.adaptive import AdaptiveBucket, Estimate
from bot.clock import Clock, SystemClock
from bot.errors import PlatformRateLimited
from bot.lane import Lane
from bot.limiters import Limiter, SlidingWindow, TokenBucket
from bot.ports import Budget, ReplyTarget, SharedLimits
from bot.reply_stream import MAX_CALL_ATTEMPTS, ReplyStream
from bot.shared_limits import SharedSlots

__all__ = ["MAX_CALL_ATTEMPTS", "EditScheduler", "ReplyStream"]

log = logging.getLogger(__name__)


class EditScheduler:
    """Shares each platform budget fairly among all replies in flight on it.

    Lanes and limiters are made on first use and forgotten once idle and fully recovered
    (see Lane), so a process serving many threads or workspaces keeps only the recent ones:
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
        self._lanes: dict[str, Lane] = {}
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

    def _drop_lane(self, lane: Lane) -> bool:
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
            lane = Lane(self, bucket)
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
