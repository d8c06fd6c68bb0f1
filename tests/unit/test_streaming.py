"""EditScheduler with a fake clock: first show, coalescing, fairness, 429s, finals, splits."""

from __future__ import annotations

import gc
import itertools
from dataclasses import dataclass, field

import pytest

from bot.ports import Budget
from bot.streaming import MAX_CALL_ATTEMPTS, EditScheduler
from tests.helpers import FakeClock, RecordingTarget, rate_limited

SWEEP_EVERY = EditScheduler.SWEEP_EVERY


async def test_first_text_is_shown_at_once_when_budget_allows(clock, scheduler) -> None:
    target = RecordingTarget(clock)
    reply = scheduler.open(target)
    reply.append("Hello")
    await clock.settle()
    assert [(c.kind, c.text, c.at) for c in target.calls] == [("show", "Hello", 0.0)]


async def test_edits_coalesce_to_the_budget(clock, scheduler) -> None:
    target = RecordingTarget(clock, budget=Budget("b", rate=1.0, burst=1))
    reply = scheduler.open(target)
    reply.append("a")
    await clock.settle()
    for ch in "bcdef":
        reply.append(ch)
        await clock.advance(0.1)
    # Only one call fits in the first second: the first. The next shows everything so far.
    assert [c.text for c in target.calls] == ["a"]
    await clock.advance(0.5)
    assert [c.text for c in target.calls] == ["a", "abcdef"]
    assert target.calls[1].at == pytest.approx(1.0)


async def test_final_text_is_always_delivered(clock, scheduler) -> None:
    target = RecordingTarget(clock, budget=Budget("b", rate=0.5, burst=1))
    reply = scheduler.open(target)
    for i in range(50):
        reply.append(f"w{i} ")
    reply.close()
    await clock.advance(10)
    assert await reply.wait(0)
    assert target.calls[-1].kind == "finish"
    assert target.calls[-1].text == "".join(f"w{i} " for i in range(50))
    # Everything arrived before the first slot: one call carries the whole final text.
    assert len(target.calls) == 1


async def test_budget_is_shared_fairly_between_replies(clock, scheduler) -> None:
    budget = Budget("shared", rate=2.0, burst=1)
    targets = [RecordingTarget(clock, budget=budget) for _ in range(4)]
    replies = [scheduler.open(t) for t in targets]
    for step in range(40):  # 20 s of steady output from every reply
        for r in replies:
            r.append(f"{step} ")
        await clock.advance(0.5)
    counts = [len(t.calls) for t in targets]
    assert sum(counts) <= 2.0 * 20 + 1
    assert max(counts) - min(counts) <= 1, counts
    # Round robin: consecutive calls go to different replies.
    order = sorted(((c.at, i) for i, t in enumerate(targets) for c in t.calls))
    owners = [i for _, i in order]
    assert all(a != b for a, b in itertools.pairwise(owners))


async def test_visible_lag_is_bounded_by_one_round(clock, scheduler) -> None:
    n, rate = 10, 5.0
    budget = Budget("lag", rate=rate, burst=1)
    targets = [RecordingTarget(clock, budget=budget) for _ in range(n)]
    replies = [scheduler.open(t) for t in targets]
    produced: list[list[tuple[float, int]]] = [[] for _ in range(n)]
    for _step in range(100):
        for i, r in enumerate(replies):
            r.append("x")
            produced[i].append((clock.now(), len(r.text)))
        await clock.advance(0.1)
    # For every call, the text shown is at least what the model had produced one
    # round (n / rate seconds) before.
    round_s = n / rate
    checked = 0
    for i, t in enumerate(targets):
        for c in t.calls:
            older = [length for at, length in produced[i] if at <= c.at - round_s - 1e-9]
            if older:
                assert len(c.text) >= older[-1]
                checked += 1
    # Calls in the first round have nothing older to compare with; all later ones do. Every
    # reply gets about rate * 10 s / n calls, all but the first round's qualify.
    assert all(t.calls for t in targets)
    assert checked >= sum(len(t.calls) for t in targets) - n
    assert checked >= rate * 10 * 0.8


async def test_429_slows_the_bucket_and_loses_no_text(clock, scheduler) -> None:
    target = RecordingTarget(clock, budget=Budget("b", rate=10.0, burst=1))
    target.fail_with[1] = rate_limited(3.0)
    reply = scheduler.open(target)
    reply.append("one ")
    await clock.settle()
    await clock.advance(0.1)
    reply.append("two ")  # this call gets the 429 at t=0.1
    await clock.advance(0.2)
    assert scheduler.rate_limited == 1
    reply.append("three")
    await clock.advance(2.5)
    assert [c.text for c in target.calls] == ["one "]  # blocked until 3.1 s
    reply.close()
    await clock.advance(1.0)
    assert target.calls[-1].kind == "finish"
    assert target.calls[-1].text == "one two three"
    assert target.calls[-1].at >= 3.1


async def test_429_in_one_bucket_does_not_block_another(clock, scheduler) -> None:
    a = RecordingTarget(clock, budget=Budget("a", rate=10.0, burst=1))
    b = RecordingTarget(clock, budget=Budget("b", rate=10.0, burst=1))
    a.fail_with[0] = rate_limited(5.0)
    ra, rb = scheduler.open(a), scheduler.open(b)
    ra.append("x")
    rb.append("y")
    await clock.advance(0.5)
    assert [c.text for c in b.calls] == ["y"]
    assert a.calls == []


async def test_parent_budget_limits_all_children(clock, scheduler) -> None:
    global_ = Budget("global", rate=1.0, burst=1)
    targets = [
        RecordingTarget(clock, budget=Budget(f"ch{i}", rate=100.0, burst=5, parent=global_))
        for i in range(3)
    ]
    replies = [scheduler.open(t) for t in targets]
    for r in replies:
        r.append("x")
    await clock.advance(0.5)
    assert sum(len(t.calls) for t in targets) == 1
    await clock.advance(2.0)
    assert sum(len(t.calls) for t in targets) == 3


async def test_long_reply_continues_in_new_messages(clock, scheduler) -> None:
    target = RecordingTarget(clock, budget=Budget("b", rate=100.0, burst=10), max_chars=100)
    reply = scheduler.open(target)
    words = [f"word{i}" for i in range(80)]
    for w in words:
        reply.append(w + " ")
    reply.close()
    await clock.advance(5)
    parts = target.visible()
    assert len(parts) >= 4
    assert all(len(p) <= 100 for p in parts)
    assert " ".join(parts).split() == words  # nothing lost, no word cut
    # Earlier parts were finished before later ones were posted.
    first_post = {}
    for c in target.calls:
        first_post.setdefault(c.part, c.at)
    assert sorted(first_post) == list(range(len(parts)))


async def test_code_fence_cut_by_a_split_is_closed_and_reopened(clock, scheduler) -> None:
    target = RecordingTarget(clock, budget=Budget("b", rate=100.0, burst=10), max_chars=120)
    reply = scheduler.open(target)
    code = "\n".join(f"print({i})  # line {i}" for i in range(30))
    reply.append(f"Here:\n```python\n{code}\n```\nDone.")
    reply.close()
    await clock.advance(5)
    parts = target.visible()
    assert len(parts) > 1
    for p in parts:
        assert p.count("```") % 2 == 0, p
        assert len(p) <= 120
    for p in parts[1:-1]:
        assert p.startswith("```python\n")
    joined = "\n".join(parts)
    for i in range(30):
        assert f"print({i})  # line {i}" in joined


async def test_failure_after_text_shows_text_then_note(clock, scheduler) -> None:
    target = RecordingTarget(clock, budget=Budget("b", rate=100.0, burst=10))
    reply = scheduler.open(target)
    reply.append("partial answer")
    reply.close(fail_message="cut short")
    await clock.advance(1)
    assert [(c.kind, c.text) for c in target.calls][-2:] == [
        ("finish", "partial answer"),
        ("fail", "cut short"),
    ]


async def test_failure_without_text_only_fails(clock, scheduler) -> None:
    target = RecordingTarget(clock)
    reply = scheduler.open(target)
    reply.close(fail_message="quota")
    await clock.advance(1)
    assert [(c.kind, c.text) for c in target.calls] == [("fail", "quota")]
    assert reply.delivered


async def test_other_errors_are_retried(clock, scheduler) -> None:
    # Two failures, then the third attempt (MAX_CALL_ATTEMPTS) gets through.
    target = RecordingTarget(clock, budget=Budget("b", rate=100.0, burst=10))
    target.fail_with = {0: RuntimeError("boom"), 1: RuntimeError("boom")}
    reply = scheduler.open(target)
    reply.append("x")
    reply.close()
    await clock.advance(1)
    assert target._attempts == MAX_CALL_ATTEMPTS
    assert reply.delivered and reply.error is None
    assert [(c.kind, c.text) for c in target.calls] == [("finish", "x")]


async def test_other_errors_are_given_up_after_max_attempts(clock, scheduler) -> None:
    # The contract: a call failing MAX_CALL_ATTEMPTS times in a row (not a 429) ends the
    # delivery: reply.error holds the last failure, wait() returns, the target gets no more
    # calls (not even fail(): the platform is not taking them), and the text stays in the
    # reply for the engine to store.
    target = RecordingTarget(clock, budget=Budget("b", rate=100.0, burst=10))
    boom = RuntimeError("boom 3")
    target.fail_with = {0: RuntimeError("boom 1"), 1: RuntimeError("boom 2"), 2: boom}
    reply = scheduler.open(target)
    reply.append("first")
    await clock.advance(1)
    assert target._attempts == MAX_CALL_ATTEMPTS
    assert reply.error is boom
    assert reply.delivered and await reply.wait(0)
    reply.append(" second")
    reply.close(fail_message="cut short")
    await clock.advance(1)
    assert target._attempts == MAX_CALL_ATTEMPTS
    assert target.calls == []
    assert reply.text == "first second"


async def test_sliding_window_never_lets_more_than_burst_through_any_window(
    clock, scheduler
) -> None:
    # Discord-style: 5 writes in any 5 s. A token bucket of 5 at 1/s would let 9 through.
    target = RecordingTarget(clock, budget=Budget("ch", rate=1.0, burst=5, window=5.0))
    reply = scheduler.open(target)
    for i in range(200):
        reply.append(f"w{i} ")
        await clock.advance(0.05)
    reply.close()
    await clock.advance(30, step=0.05)
    assert await reply.wait(0)
    times = [c.at for c in target.calls]
    assert len(times) > 6
    for i in range(len(times) - 5):
        assert times[i + 5] - times[i] >= 5.0
    # The window is used: the first five go out at once, not one a second.
    assert times[4] - times[0] < 1.0
    assert target.calls[-1].text == "".join(f"w{i} " for i in range(200))


async def test_sliding_window_parent_caps_all_channels(clock, scheduler) -> None:
    global_ = Budget("global", rate=2.0, burst=2, window=1.0)
    targets = [
        RecordingTarget(
            clock, budget=Budget(f"c{i}", rate=1.0, burst=5, window=5.0, parent=global_)
        )
        for i in range(4)
    ]
    for t in targets:
        scheduler.open(t).append("x")
    await clock.advance(0.5)
    assert sum(len(t.calls) for t in targets) == 2
    await clock.advance(1.0)
    assert sum(len(t.calls) for t in targets) == 4


async def test_a_final_does_not_wait_behind_held_back_edits(clock, scheduler) -> None:
    # The reserve holds intermediate edits back; the final must use it at once.
    target = RecordingTarget(clock, budget=Budget("ch", rate=1.0, burst=5, window=5.0, reserve=1))
    reply = scheduler.open(target)
    for i in range(10):
        reply.append(f"w{i} ")
        await clock.advance(0.05)
    assert len(target.calls) == 4  # the fifth call is kept for the final
    await clock.advance(0.5)
    reply.close()
    await clock.settle()
    await clock.advance(0.01)
    assert target.calls[-1].kind == "finish"
    assert target.calls[-1].at == pytest.approx(1.0, abs=0.02)


# -- forgetting idle lanes -------------------------------------------------------------


def remembered(scheduler: EditScheduler) -> tuple[set[str], set[str]]:
    """The budget keys the scheduler keeps a lane and a limiter for."""
    return set(scheduler._lanes), set(scheduler._buckets)


async def deliver(clock: FakeClock, scheduler: EditScheduler, target: RecordingTarget, text: str):
    reply = scheduler.open(target)
    reply.append(text)
    reply.close()
    await clock.settle()
    return reply


async def test_idle_lane_is_forgotten_once_its_bucket_is_full_again(clock, scheduler) -> None:
    target = RecordingTarget(clock, budget=Budget("b", rate=1.0, burst=2))
    reply = await deliver(clock, scheduler, target, "x")
    assert reply.delivered and [c.at for c in target.calls] == [0.0]
    # One of two tokens spent: a new bucket would be full, so this one is kept for 1 s.
    await clock.advance(0.9)
    assert remembered(scheduler) == ({"b"}, {"b"})
    await clock.advance(0.2)
    assert remembered(scheduler) == (set(), set())


async def test_idle_sliding_window_is_forgotten_once_empty(clock, scheduler) -> None:
    budget = Budget("ch", rate=1.0, burst=5, window=5.0)
    for i in range(3):
        await deliver(clock, scheduler, RecordingTarget(clock, budget=budget), f"r{i}")
    await clock.advance(4.9)
    assert remembered(scheduler) == ({"ch"}, {"ch"})
    await clock.advance(0.5)  # the last call leaves the window (JITTER included)
    assert remembered(scheduler) == (set(), set())


async def test_many_threads_leave_no_lanes_behind(clock, scheduler) -> None:
    global_ = Budget("global", rate=50.0, burst=50, window=1.0)
    for i in range(200):
        budget = Budget(f"thread{i}", rate=1.0, burst=5, window=5.0, parent=global_)
        await deliver(clock, scheduler, RecordingTarget(clock, budget=budget), "x")
        await clock.advance(0.05)
    lanes, buckets = remembered(scheduler)
    # Only the last ~5 s of threads (5.05 s / 0.05 s) are still recovering.
    assert 0 < len(lanes) <= 102 and "global" in buckets
    await clock.advance(6)
    assert remembered(scheduler) == (set(), set())


async def test_lane_is_kept_while_work_is_queued_behind_a_429(clock, scheduler) -> None:
    target = RecordingTarget(clock, budget=Budget("b", rate=10.0, burst=1))
    target.fail_with[0] = rate_limited(30.0)
    reply = scheduler.open(target)
    reply.append("x")
    reply.close()
    await clock.advance(29)
    assert target.calls == [] and not reply.delivered
    assert remembered(scheduler) == ({"b"}, {"b"})
    await clock.advance(1.5)
    assert reply.delivered and target.calls[-1].text == "x"
    assert target.calls[-1].at == pytest.approx(30.0)
    await clock.advance(1)
    assert remembered(scheduler) == (set(), set())


async def test_lane_is_kept_while_a_retry_after_block_is_pending(clock, scheduler) -> None:
    budget = Budget("b", rate=100.0, burst=10)
    await deliver(clock, scheduler, RecordingTarget(clock, budget=budget), "x")
    assert remembered(scheduler) == ({"b"}, {"b"})  # one token short for 10 ms
    scheduler._lanes["b"].bucket.penalize(100.0)  # e.g. a 429 on another call on the budget
    await clock.advance(SWEEP_EVERY + 1)
    await deliver(clock, scheduler, RecordingTarget(clock, budget=Budget("other", 1.0)), "y")
    assert "b" in remembered(scheduler)[1]  # the sweep ran and kept the blocked one
    # The block holds for a reply opened now, on the same limiter.
    late = RecordingTarget(clock, budget=budget)
    await deliver(clock, scheduler, late, "z")
    await clock.advance(38)
    assert late.calls == [] and "b" in remembered(scheduler)[0]
    await clock.advance(1)
    assert [c.at for c in late.calls] == [pytest.approx(100.0)]
    await clock.advance(1)
    assert "b" not in remembered(scheduler)[0]


async def test_rate_limit_holds_across_forgetting(clock, scheduler) -> None:
    # Replies on one Discord-like channel, some soon after the last (the lane is reused),
    # some after a pause (it was forgotten): never more than 5 calls in any 5 s.
    budget = Budget("ch", rate=1.0, burst=5, window=5.0, reserve=1, spacing=0.3)
    targets: list[RecordingTarget] = []
    forgotten = reused = 0
    for gap in [0.0, 0.1, 1.0, 5.2, 0.1, 0.1, 3.0, 5.2, 0.0, 6.0, 0.2]:
        await clock.advance(gap, step=0.05)
        if "ch" in remembered(scheduler)[0]:
            reused += 1
        else:
            forgotten += 1
        target = RecordingTarget(clock, budget=budget)
        targets.append(target)
        reply = scheduler.open(target)
        for w in range(6):
            reply.append(f"w{w} ")
            await clock.advance(0.1)
        reply.close()
        while not reply.delivered:
            await clock.advance(0.05)
    await clock.advance(60, step=0.05)
    assert forgotten >= 3 and reused >= 5
    times = sorted(c.at for t in targets for c in t.calls)
    assert all(t.calls[-1].kind == "finish" for t in targets)
    for i in range(len(times) - 5):
        assert times[i + 5] - times[i] >= 5.0, times[i : i + 6]


async def test_parent_is_kept_while_a_child_uses_it(clock, scheduler) -> None:
    global_ = Budget("global", rate=2.0, burst=2, window=1.0)
    a = RecordingTarget(clock, budget=Budget("a", rate=1.0, burst=5, window=5.0, parent=global_))
    b = RecordingTarget(clock, budget=Budget("b", rate=100.0, burst=100, parent=global_))
    ra = scheduler.open(a)  # no text yet: a's lane and the parent must stay
    await deliver(clock, scheduler, b, "1")
    await deliver(clock, scheduler, RecordingTarget(clock, budget=b.budget), "2")
    await clock.advance(SWEEP_EVERY + 1)
    await deliver(clock, scheduler, RecordingTarget(clock, budget=Budget("c", 1.0)), "c")
    assert remembered(scheduler)[1] >= {"global", "a"} and "b" not in remembered(scheduler)[1]
    # The parent kept its count: two calls in its window, so a third in it must wait.
    ra.append("x")
    await deliver(clock, scheduler, RecordingTarget(clock, budget=b.budget), "3")
    await deliver(clock, scheduler, RecordingTarget(clock, budget=b.budget), "4")
    await clock.advance(0.5)
    at = sorted(c.at for t in (a,) for c in t.calls)
    assert len(at) == 1
    ra.close()
    await clock.advance(10)
    assert ra.delivered
    await clock.advance(SWEEP_EVERY)
    await deliver(clock, scheduler, RecordingTarget(clock, budget=Budget("d", float("inf"))), "")
    await clock.settle()
    assert remembered(scheduler) == (set(), set())


async def test_lane_of_an_open_reply_is_never_forgotten(clock, scheduler) -> None:
    budget = Budget("b", rate=10.0, burst=1)
    target = RecordingTarget(clock, budget=budget)
    reply = scheduler.open(target)  # the model has not answered yet
    lane = reply._lane
    await clock.advance(SWEEP_EVERY + 1)
    other = await deliver(clock, scheduler, RecordingTarget(clock, budget=budget), "other")
    assert other._lane is lane  # the sweep kept it; both replies share one limiter
    await clock.advance(SWEEP_EVERY + 1)
    scheduler.open(RecordingTarget(clock, budget=Budget("c", 1.0)))
    assert scheduler._lanes["b"] is lane
    reply.append("late")
    reply.close()
    await clock.advance(1)
    assert target.calls[-1].text == "late"
    assert "b" not in remembered(scheduler)[0]


async def test_reply_dropped_without_close_does_not_pin_its_lane(clock, scheduler) -> None:
    reply = scheduler.open(RecordingTarget(clock, budget=Budget("b", rate=10.0, burst=1)))
    del reply
    gc.collect()
    await clock.advance(SWEEP_EVERY + 1)
    scheduler.open(RecordingTarget(clock, budget=Budget("c", 1.0)))
    assert "b" not in remembered(scheduler)[0]


async def test_one_off_call_limiters_are_swept(clock, scheduler) -> None:
    budget = Budget("post", rate=1.0, burst=3)
    seen: list[float] = []

    async def post() -> None:
        seen.append(clock.now())

    for _ in range(3):
        await scheduler.call(budget, post)
    assert "post" in remembered(scheduler)[1]
    await clock.advance(SWEEP_EVERY + 1)
    await scheduler.call(Budget("other", rate=1.0), post)
    assert "post" not in remembered(scheduler)[1]


async def test_status_line_shows_until_text_replaces_it_at_once(clock, scheduler) -> None:
    # Spacing would hold an intermediate edit back; text replacing a status is a first text.
    budget = Budget("b", rate=1.0, burst=5, reserve=2, spacing=1.0)
    target = RecordingTarget(clock, budget=budget)
    reply = scheduler.open(target)
    reply.status("_Searching the web…_")
    await clock.settle()
    reply.append("Found it")
    await clock.settle()
    assert [(c.text, c.at) for c in target.calls] == [
        ("_Searching the web…_", 0.0),
        ("Found it", 0.0),
    ]
    reply.status("_Running code…_")  # after text: a transient last line
    await clock.advance(1.5)
    assert target.calls[-1].text == "Found it\n\n_Running code…_"
    reply.append(" and more")
    reply.close()
    await clock.advance(3)
    assert target.visible() == ["Found it and more"]


async def test_replace_adds_markers_and_keeps_the_footer_in_the_last_message(
    clock, scheduler
) -> None:
    target = RecordingTarget(clock, budget=Budget("b", rate=100.0, burst=10), max_chars=100)
    reply = scheduler.open(target)
    text = " ".join(f"w{i}" for i in range(40))  # 149 chars: two messages
    reply.append(text)
    await clock.advance(1)
    footer = "Sources:\n[1] [Docs](https://d.test/a)"
    reply.replace(text.replace("w5 ", "w5[1] "), footer=footer)
    reply.close()
    await clock.advance(2)
    parts = target.visible()
    assert all(len(p) <= 100 for p in parts)
    assert "w5[1]" in parts[0]
    assert parts[-1].endswith(footer) and all(footer not in p for p in parts[:-1])
    assert " ".join(" ".join(parts).replace(footer, "").split()) == text.replace("w5", "w5[1]")


async def test_a_gauge_adds_the_wait_the_platform_client_knows_of(clock, scheduler) -> None:
    # E.g. discord.py's record of Discord's headers says the channel's bucket is empty for
    # 2 s more: the lane holds the text (and coalesces it) instead of queueing it there.
    until = {"t": 2.0}
    budget = Budget("ch", rate=10.0, burst=5, gauge=lambda: until["t"] - clock.now())
    target = RecordingTarget(clock, budget=budget)
    reply = scheduler.open(target)
    reply.append("a")
    await clock.advance(1.0)
    reply.append("b")
    assert target.calls == []
    await clock.advance(1.5)
    assert [(c.text, c.at) for c in target.calls] == [("ab", 2.0)]


@dataclass
class PostingTarget(RecordingTarget):
    """A target whose new messages are posted from another budget (as Slack's are), and
    which finds nothing to send when the text is already shown."""

    posted: set[int] = field(default_factory=set)

    def edits(self, part: int, text: str) -> bool:
        shown = self.visible()
        return part in self.posted and not (shown and shown[-1] == text)

    async def show(self, text: str, *, part: int) -> bool | None:
        new = part not in self.posted
        self.posted.add(part)
        await self._call("show", text, part)
        return not new

    async def finish(self, text: str, *, part: int) -> bool | None:
        if self.visible() and self.visible()[-1] == text:
            return False  # already on screen
        await self._call("finish", text, part)
        return True


async def test_a_post_paid_elsewhere_goes_while_the_budget_is_empty(clock, scheduler) -> None:
    budget = Budget("b", rate=0.1, burst=1)
    busy = RecordingTarget(clock, budget=budget)
    other = scheduler.open(busy)
    other.append("x")  # takes the only token for 10 s
    await clock.settle()
    target = PostingTarget(clock, budget=budget)
    reply = scheduler.open(target)
    reply.append("first")
    await clock.advance(0.1)
    assert [(c.text, c.at) for c in target.calls] == [("first", 0.0)]
    # ... and a final that finds its text on screen gives the token back: none was spent.
    reply.close()
    await clock.advance(0.1)
    assert await reply.wait(0)
    lane = scheduler._lanes["b"]
    assert lane.bucket.available() == pytest.approx(0.02, abs=0.01)  # only the refill
