"""Adaptive budgets on a fake clock against a platform whose limit the bot is not told.

The platform is a token bucket that answers 429 with a whole-second Retry-After, as Slack
does. Replies stream without pause, so there is always more to show than any limit allows.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field

import pytest

from bot.adaptive import QUIET
from bot.ports import Budget
from bot.streaming import EditScheduler
from tests.helpers import FakeClock, RecordingTarget, rate_limited


@dataclass
class Platform:
    """A hidden token bucket: what the platform really grants."""

    clock: FakeClock
    rate: float
    burst: int
    tokens: float = -1.0
    at: float = 0.0
    accepted: list[float] = field(default_factory=list)
    refused: list[tuple[float, float]] = field(default_factory=list)  # (at, retry_after)

    def hit(self) -> None:
        now = self.clock.now()
        if self.tokens < 0:
            self.tokens = float(self.burst)
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            self.accepted.append(now)
            return
        retry = max(1, math.ceil((1 - self.tokens) / self.rate))
        self.refused.append((now, retry))
        raise rate_limited(retry)

    def calls_between(self, start: float, end: float) -> int:
        return sum(1 for t in self.accepted if start <= t < end)


@dataclass
class LimitedTarget(RecordingTarget):
    """A RecordingTarget whose every call goes through the hidden platform limit."""

    platform: Platform | None = None

    async def _call(self, kind: str, text: str, part: int) -> None:
        assert self.platform is not None
        self.platform.hit()
        await super()._call(kind, text, part)


DOCUMENTED = Budget("ws:chat.update", rate=1.0, burst=5, reserve=1, spacing=0.2, adaptive=True)


async def stream(
    clock: FakeClock, scheduler: EditScheduler, platform: Platform, *, replies: int, seconds: float
) -> list[LimitedTarget]:
    """`replies` replies on one budget, each appending a word every 0.1 s."""
    targets = [
        LimitedTarget(clock, budget=DOCUMENTED, platform=platform, max_chars=100_000)
        for _ in range(replies)
    ]
    streams = [scheduler.open(t) for t in targets]
    for step in range(int(seconds * 10)):
        for s in streams:
            s.append(f"{step} ")
        await clock.advance(0.1)
    for s in streams:
        s.close()
    await clock.advance(120, step=1.0)
    for s, t in zip(streams, targets, strict=True):
        assert await s.wait(0)
        assert t.visible() == ["".join(f"{i} " for i in range(int(seconds * 10)))]
    return targets


def retry_after_honoured(platform: Platform) -> bool:
    """No call reached the platform while a Retry-After it gave was running."""
    calls = sorted(platform.accepted + [t for t, _ in platform.refused])
    return all(not (t < c < t + r) for t, r in platform.refused for c in calls)


async def test_converges_below_a_stricter_hidden_limit(clock, scheduler) -> None:
    # Documented 1/s with a burst of 5; the platform grants 0.4/s with a burst of 3.
    platform = Platform(clock, rate=0.4, burst=3)
    await stream(clock, scheduler, platform, replies=4, seconds=300)
    est = scheduler.estimate(DOCUMENTED)
    assert est is not None
    assert est.rate <= 0.4 * 1.3 and est.burst <= 4
    assert retry_after_honoured(platform)
    # The edge is found with few 429s: a handful at first, then about one probe per
    # quiet period (each refused probe is the price of checking for more room).
    assert len(platform.refused) <= 6 + 300 / QUIET, platform.refused
    # And what the platform grants is used: over the last 200 s, at least 70 % of it.
    assert platform.calls_between(100, 300) >= 0.7 * 0.4 * 200


async def test_a_lone_reply_learns_a_more_generous_limit_than_documented(clock, scheduler) -> None:
    # The platform grants 4/s with a burst of 40: probes find the room, a few 429s mark it,
    # and a lone reply edits every 0.2 s (its spacing) instead of every second.
    platform = Platform(clock, rate=4.0, burst=40)
    await stream(clock, scheduler, platform, replies=1, seconds=120)
    est = scheduler.estimate(DOCUMENTED)
    assert est is not None and est.burst > DOCUMENTED.burst and est.rate > DOCUMENTED.rate
    assert retry_after_honoured(platform)
    # Far more than the documented 1/s gets through (a static budget would stop at 1/s).
    assert platform.calls_between(20, 120) >= 3.5 * 100
    assert len(platform.refused) <= 3 + 120 / QUIET, platform.refused


async def test_backs_off_on_a_429_within_the_estimate_and_honours_retry_after(
    clock, scheduler
) -> None:
    target = RecordingTarget(clock, budget=DOCUMENTED)
    reply = scheduler.open(target)
    reply.append("a")
    await clock.settle()
    est = scheduler.estimate(DOCUMENTED)
    assert est is not None and (est.rate, est.burst) == (1.0, 5)
    target.fail_with[target._attempts] = rate_limited(3.0)  # the next call: refused
    reply.append("b")
    await clock.advance(0.5)
    assert (est.rate, est.burst) == (0.5, 2)  # halved
    reply.append("c")
    await clock.advance(2.0)
    assert [c.text for c in target.calls] == ["a"]  # nothing during Retry-After
    await clock.advance(2.0)
    assert [c.text for c in target.calls] == ["a", "abc"]  # retried with the newest text
    assert scheduler.rate_limited == 1


async def test_recovers_after_a_quiet_period(clock, scheduler) -> None:
    # One 429 (say another app's burst) cuts the estimate; the platform itself grants the
    # documented limit, so once QUIET s pass without a 429 the rate comes back.
    platform = Platform(clock, rate=1.0, burst=5)
    targets = [LimitedTarget(clock, budget=DOCUMENTED, platform=platform) for _ in range(2)]
    streams = [scheduler.open(t) for t in targets]
    targets[0].fail_with[1] = rate_limited(1.0)
    rates: list[tuple[float, float]] = []
    for step in range(int((QUIET + 60) * 10)):
        for s in streams:
            s.append(f"{step} ")
        await clock.advance(0.1)
        est = scheduler.estimate(DOCUMENTED)
        assert est is not None
        rates.append((clock.now(), est.rate))
    assert min(r for _, r in rates) == 0.5  # halved at the 429
    assert all(r == 0.5 for t, r in rates if 1 < t < QUIET)  # held while it is recent
    back = min(t for t, r in rates if t > 1 and r >= 1.0)
    assert QUIET < back <= QUIET + 10
    # ... and the calls per second are back to what the platform grants.
    assert platform.calls_between(QUIET + 10, QUIET + 60) >= 0.8 * 50
    assert retry_after_honoured(platform)
    for s in streams:
        s.close()
    await clock.advance(60, step=1.0)


async def test_replies_share_a_learned_budget_fairly(clock, scheduler) -> None:
    platform = Platform(clock, rate=0.8, burst=4)
    targets = await stream(clock, scheduler, platform, replies=4, seconds=200)
    counts = [len(t.calls) for t in targets]
    assert max(counts) - min(counts) <= 2, counts


async def test_one_probe_for_the_whole_family_of_channel_budgets(clock, scheduler) -> None:
    # Ten channels post at once: each channel's budget is its own, what they learn is
    # shared. The platform allows 3 per channel: one probe finds it (one 429), not ten.
    platforms = {c: Platform(clock, rate=1.0, burst=3) for c in range(10)}

    def budget(c: int) -> Budget:
        return Budget(f"ws:C{c}:post", rate=1.0, burst=3, adaptive=True, family="ws:post")

    async def post(c: int) -> None:
        platforms[c].hit()

    import asyncio

    tasks = [
        asyncio.ensure_future(scheduler.call(budget(c), lambda c=c: post(c)))
        for c in range(10)
        for _ in range(5)
    ]
    await clock.advance(10, step=0.05)
    assert all(t.done() for t in tasks)
    refused = sum(len(p.refused) for p in platforms.values())
    assert refused == 1
    assert all(len(p.accepted) == 5 for p in platforms.values())
    assert all(retry_after_honoured(p) for p in platforms.values())
    # The 4th and 5th posts of a channel came when its bucket allowed them (1 s, 2 s).
    late = [p.accepted[3] for p in platforms.values()]
    assert max(late) <= 2.0 + 0.1


async def test_probes_only_from_an_empty_bucket_and_never_stay_counted(clock, scheduler) -> None:
    # A call made while tokens are left proves nothing about room beyond the estimate.
    budget = Budget("ws:post", rate=1.0, burst=2, adaptive=True)
    outcomes = iter(["ok", "ok", "ok", "429", "error"])
    seen: list[tuple[float, bool]] = []

    async def post() -> None:
        est = scheduler.estimate(budget)
        assert est is not None
        seen.append((clock.now(), est.probing > 0))
        outcome = next(outcomes)
        if outcome == "429":
            raise rate_limited(1.0)
        if outcome == "error":
            raise RuntimeError("boom")

    await scheduler.call(budget, post)
    await scheduler.call(budget, post)
    assert seen == [(0.0, False), (0.0, False)]  # within the burst: no probes
    await scheduler.call(budget, post)  # the bucket is empty: a probe, accepted
    est = scheduler.estimate(budget)
    assert est is not None and est.probing == 0 and est.burst == 3
    assert seen[-1] == (0.0, True)
    task = asyncio.ensure_future(scheduler.call(budget, post))  # refused probe, then ...
    await clock.advance(0.5)
    assert est.probing == 0 and est.burst == 3  # a refused probe keeps the estimate
    with pytest.raises(RuntimeError):  # ... its retry after Retry-After fails otherwise
        await clock.advance(2.0)
        await task
    assert est.probing == 0
    # A probe cancelled mid-call is not left counted either.
    est.quiet_until = clock.now()

    async def hang() -> None:
        await clock.sleep(100)

    bucket = scheduler._buckets["ws:post"]
    bucket.tokens, bucket.updated = 0.0, clock.now()
    hung = asyncio.ensure_future(scheduler.call(budget, hang))
    await clock.settle()
    assert est.probing == 1
    hung.cancel()
    await clock.settle()
    assert est.probing == 0


async def test_refused_probes_in_a_row_wait_longer_each_time(clock, scheduler) -> None:
    budget = Budget("ws:update", rate=1.0, burst=1, adaptive=True)
    bucket = scheduler._bucket(budget)
    est = scheduler.estimate(budget)
    assert est is not None
    pauses = []

    def empty_at(t: float) -> None:
        clock.t = t
        bucket.tokens, bucket.updated, bucket.blocked_until = 0.0, t, 0.0

    for _ in range(4):
        empty_at(max(clock.t, est.quiet_until))
        assert bucket.can_probe()
        ticket = bucket.take_probe()
        bucket.refused(ticket, 1.0)
        pauses.append(est.quiet_until - clock.now())
    assert pauses == [20.0, 40.0, 80.0, 160.0]
    empty_at(est.quiet_until)
    bucket.succeeded(bucket.take_probe())
    assert est.quiet == 20.0  # an accepted probe: back to the short pause
