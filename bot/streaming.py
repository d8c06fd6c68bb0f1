"""EditScheduler: turns model deltas into paced ReplyTarget calls.

Every platform call of a reply (show, finish, fail) goes through a lane: one lane per
Budget key (e.g. one Slack workspace's chat.update budget, or one Discord channel). A lane
is a token bucket plus a round-robin queue of replies that have something new to show, so
replies in flight on the same budget share it fairly and each call shows the newest text
(edits coalesce). A 429 blocks the lane for Retry-After and the call is retried later with
whatever text is current then, so no text is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeAlias

from bot.clock import Clock, SystemClock
from bot.errors import PlatformRateLimited
from bot.ports import Budget, ReplyTarget
from bot.splitting import split_message

log = logging.getLogger(__name__)

# A target call that fails for another reason than a 429 is retried this often.
MAX_CALL_ATTEMPTS = 3


@dataclass(slots=True)
class Ticket:
    """One call counted by a limiter (and its parent); done() when the call returns."""

    entry: list[float] | None
    parent: Ticket | None

    def done(self, now: float) -> None:
        """The platform has certainly seen the call by now: count it from here."""
        if self.entry is not None:
            self.entry[0] = max(self.entry[0], now)
        if self.parent is not None:
            self.parent.done(now)


class TokenBucket:
    """Classic token bucket with an optional parent (e.g. Discord's global limit)."""

    def __init__(self, budget: Budget, clock: Clock, parent: Limiter | None = None) -> None:
        self.budget = budget
        self.clock = clock
        self.parent = parent
        self.tokens = float(budget.burst)
        self.updated = clock.now()
        self.blocked_until = 0.0

    def _refill(self, now: float) -> None:
        if self.budget.rate == float("inf"):
            self.tokens = float(self.budget.burst)
        else:
            self.tokens = min(
                float(self.budget.burst), self.tokens + (now - self.updated) * self.budget.rate
            )
        self.updated = now

    def delay(self) -> float:
        """Seconds until a call may be made (0 when one may be made now)."""
        now = self.clock.now()
        self._refill(now)
        wait = max(0.0, self.blocked_until - now)
        # The epsilon stops float rounding (0.999999...) from asking for a zero-length sleep.
        if self.tokens < 1 - 1e-9:
            wait = max(wait, (1 - self.tokens) / self.budget.rate)
        if self.parent is not None:
            wait = max(wait, self.parent.delay())
        return wait

    def available(self) -> float:
        """Tokens in the bucket now."""
        self._refill(self.clock.now())
        return self.tokens

    def time_until(self, tokens: float) -> float:
        """Seconds until the bucket holds `tokens`."""
        return max(0.0, (tokens - self.available()) / self.budget.rate)

    def take(self) -> Ticket:
        """Spend one token (call only when delay() is 0)."""
        self.tokens -= 1
        return Ticket(None, self.parent.take() if self.parent is not None else None)

    def penalize(self, retry_after: float) -> None:
        """A 429: no calls until Retry-After has passed, and start again from an empty bucket."""
        now = self.clock.now()
        self.blocked_until = max(self.blocked_until, now + retry_after)
        self.tokens = min(self.tokens, 0.0)
        self.updated = now


class SlidingWindow:
    """At most `burst` calls in any `window` seconds, with an optional parent."""

    # Calls reach the platform a little after we send them, and not evenly late: counting
    # each call this much later keeps the platform's own window from seeing burst + 1.
    JITTER = 0.05

    def __init__(self, budget: Budget, clock: Clock, parent: Limiter | None = None) -> None:
        self.budget = budget
        self.clock = clock
        self.parent = parent
        # [time] cells: the send time plus JITTER, moved to the completion time by done().
        self.sent: list[list[float]] = []
        self.blocked_until = 0.0

    def _trim(self, now: float) -> list[float]:
        """Drop calls older than the window; the remaining times, oldest first."""
        self.sent = [e for e in self.sent if e[0] > now - self.budget.window]
        return sorted(e[0] for e in self.sent)

    def delay(self) -> float:
        """Seconds until a call may be made (0 when one may be made now)."""
        now = self.clock.now()
        times = self._trim(now)
        wait = max(0.0, self.blocked_until - now)
        if len(times) >= self.budget.burst:
            wait = max(wait, times[-self.budget.burst] + self.budget.window - now)
        if self.parent is not None:
            wait = max(wait, self.parent.delay())
        return wait

    def available(self) -> float:
        """Calls that may be made now."""
        return float(self.budget.burst - len(self._trim(self.clock.now())))

    def time_until(self, tokens: float) -> float:
        """Seconds until `tokens` calls may be made."""
        now = self.clock.now()
        times = self._trim(now)
        short = int(tokens) - (self.budget.burst - len(times))
        if short <= 0:
            return 0.0
        return max(0.0, times[short - 1] + self.budget.window - now)

    def take(self) -> Ticket:
        """Count one call (call only when delay() is 0); hand the ticket to done()."""
        entry = [self.clock.now() + self.JITTER]
        self.sent.append(entry)
        return Ticket(entry, self.parent.take() if self.parent is not None else None)

    def penalize(self, retry_after: float) -> None:
        """A 429: no calls until Retry-After has passed."""
        self.blocked_until = max(self.blocked_until, self.clock.now() + retry_after)


Limiter: TypeAlias = TokenBucket | SlidingWindow


@dataclass(slots=True)
class _Op:
    kind: str  # "show" | "finish" | "fail"
    part: int
    text: str


class ReplyStream:
    """One reply in flight: the engine appends text; the scheduler shows it."""

    def __init__(self, target: ReplyTarget, lane: _Lane) -> None:
        self.target = target
        self._lane = lane
        self._limit = target.max_chars
        self.frozen: list[str] = []
        self.tail = ""
        self._shown: dict[int, str] = {}
        self._closed = False
        self._finish_sent = False
        self._fail_message: str | None = None
        self._fail_sent = False
        self._in_flight = False
        self.queued = False
        self.error: BaseException | None = None
        self._attempts = 0
        self._done = asyncio.Event()
        self.first_show_at: float | None = None

    @property
    def text(self) -> str:
        """Everything appended so far, as it will be shown (split across parts)."""
        return "".join(self.frozen) + self.tail

    def append(self, delta: str) -> None:
        """Add model text; it will be shown as soon as the budget allows."""
        if self._closed or not delta:
            return
        self.tail += delta
        while len(self.tail) > self._limit:
            head, rest = split_message(self.tail, self._limit)
            self.frozen.append(head)
            self.tail = rest
        self._lane.notify(self)

    def close(self, *, fail_message: str | None = None) -> None:
        """No more text; deliver the final text (and a failure note if given)."""
        if self._closed:
            return
        self._closed = True
        self._fail_message = fail_message
        if not self.tail and self.frozen:
            self.tail = self.frozen.pop()
        self._lane.notify(self)

    async def wait(self, limit: float | None = None) -> bool:
        """Wait until everything is delivered; False when `limit` seconds pass first."""
        if self._done.is_set():
            return True
        try:
            await asyncio.wait_for(self._done.wait(), limit)
        except TimeoutError:
            return False
        return True

    @property
    def delivered(self) -> bool:
        """True when the final state is on screen (or delivery gave up)."""
        return self._done.is_set()

    def next_op(self) -> _Op | None:
        """The next call this reply needs, lowest part first."""
        if self.error is not None:
            return None
        for i, text in enumerate(self.frozen):
            if self._shown.get(i) != text:
                return _Op("show", i, text)
        last = len(self.frozen)
        if self._closed:
            if not self._finish_sent and (self.tail or last > 0 or self._fail_message is None):
                return _Op("finish", last, self.tail)
            if self._fail_message is not None and not self._fail_sent:
                return _Op("fail", last, self._fail_message)
            return None
        if self.tail and self._shown.get(last) != self.tail:
            return _Op("show", last, self.tail)
        return None

    def urgent(self, op: _Op) -> bool:
        """First text of a message, a finished message, or the end: never held back."""
        return op.kind != "show" or op.part not in self._shown or op.part < len(self.frozen)

    def has_work(self) -> bool:
        """True when a call is needed and none is in flight."""
        return not self._in_flight and self.next_op() is not None

    def _check_done(self) -> None:
        if self._closed and not self._in_flight and self.next_op() is None:
            self._done.set()

    async def run_op(self, op: _Op, clock: Clock) -> None:
        """Perform one call; record success, or leave the state dirty for a retry."""
        self._in_flight = True
        try:
            if op.kind == "show":
                await self.target.show(op.text, part=op.part)
                self._shown[op.part] = op.text
            elif op.kind == "finish":
                await self.target.finish(op.text, part=op.part)
                self._shown[op.part] = op.text
                self._finish_sent = True
            else:
                await self.target.fail(op.text)
                self._fail_sent = True
            if self.first_show_at is None and op.kind != "fail":
                self.first_show_at = clock.now()
            self._attempts = 0
        except PlatformRateLimited:
            raise
        except Exception as exc:  # any platform failure: retry a little, then give up
            self._attempts += 1
            log.warning("reply call %s failed (attempt %d): %r", op.kind, self._attempts, exc)
            if self._attempts >= MAX_CALL_ATTEMPTS:
                self.error = exc
        finally:
            self._in_flight = False
            if self.error is not None:
                self._done.set()
            else:
                self._check_done()


class _Lane:
    """One budget: a token bucket and a fair queue of replies waiting to be shown."""

    def __init__(self, scheduler: EditScheduler, bucket: Limiter) -> None:
        self.scheduler = scheduler
        self.bucket = bucket
        self.queue: deque[ReplyStream] = deque()
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.calls: set[asyncio.Task[None]] = set()
        self.rate_limited = 0
        self.last_call_at = float("-inf")
        self.next_need = 1

    def notify(self, reply: ReplyStream) -> None:
        if reply.has_work():
            if not reply.queued:
                reply.queued = True
                self.queue.append(reply)
            # Also when already queued: its next call may now be urgent (a final).
            self.wake.set()
        reply._check_done()
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._run(), name=f"lane:{self.bucket.budget.key}")

    async def _run(self) -> None:
        clock = self.scheduler.clock
        while True:
            while not self.queue:
                self.wake.clear()
                if not self.calls:
                    # Idle: let the task end; notify() starts a new one.
                    try:
                        await asyncio.wait_for(self.wake.wait(), 1.0)
                    except TimeoutError:
                        if not self.queue and not self.calls:
                            return
                else:
                    await self.wake.wait()
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
                self.wake.clear()
                sleeper = asyncio.ensure_future(clock.sleep(max(need, 0.001)))
                waker = asyncio.ensure_future(self.wake.wait())
                try:
                    await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    sleeper.cancel()
                    waker.cancel()
                continue
            reply, op = picked
            ticket = self.bucket.take()
            self.last_call_at = clock.now()
            task = asyncio.create_task(self._call(reply, op, ticket))
            self.calls.add(task)
            task.add_done_callback(self.calls.discard)

    def _tokens_needed(self, reply: ReplyStream, op: _Op) -> int:
        """A message's first text may take the last token; a final keeps one back for the
        next reply's first text; an intermediate edit leaves the whole reserve."""
        reserve = self.bucket.budget.reserve
        if op.kind == "show" and op.part not in reply._shown:
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
    """Shares each platform budget fairly among all replies in flight on it."""

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock: Clock = clock or SystemClock()
        self._lanes: dict[str, _Lane] = {}
        self._buckets: dict[str, Limiter] = {}
        self.rate_limited = 0

    def _bucket(self, budget: Budget) -> Limiter:
        bucket = self._buckets.get(budget.key)
        if bucket is None:
            parent = self._bucket(budget.parent) if budget.parent else None
            kind = SlidingWindow if budget.window > 0 else TokenBucket
            bucket = kind(budget, self.clock, parent)
            self._buckets[budget.key] = bucket
        return bucket

    def open(self, target: ReplyTarget) -> ReplyStream:
        """Start a reply on the target's budget."""
        lane = self._lanes.get(target.budget.key)
        if lane is None:
            lane = _Lane(self, self._bucket(target.budget))
            self._lanes[target.budget.key] = lane
        return ReplyStream(target, lane)

    async def call(self, budget: Budget, fn: Callable[[], Awaitable[None]]) -> None:
        """Run a one-off platform call (not part of a reply) within a budget."""
        bucket = self._bucket(budget)
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

    async def aclose(self) -> None:
        """Cancel the lane workers (pending replies stop being shown)."""
        for lane in self._lanes.values():
            tasks = [t for t in (lane.task, *lane.calls) if t is not None]
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
