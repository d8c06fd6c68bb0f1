"""EditScheduler with a fake clock: first show, coalescing, fairness, 429s, finals, splits."""

from __future__ import annotations

import itertools

import pytest

from bot.ports import Budget
from bot.streaming import EditScheduler
from tests.helpers import FakeClock, RecordingTarget, rate_limited


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def scheduler(clock: FakeClock):
    s = EditScheduler(clock)
    yield s
    await s.aclose()


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
    for i, t in enumerate(targets):
        for c in t.calls:
            older = [length for at, length in produced[i] if at <= c.at - round_s - 1e-9]
            if older:
                assert len(c.text) >= older[-1]


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


async def test_other_errors_are_retried_then_given_up(clock, scheduler) -> None:
    target = RecordingTarget(clock, budget=Budget("b", rate=100.0, burst=10))
    target.fail_with = {0: RuntimeError("boom"), 1: RuntimeError("boom")}
    reply = scheduler.open(target)
    reply.append("x")
    reply.close()
    await clock.advance(1)
    assert reply.delivered and reply.error is None
    assert target.calls[-1].text == "x"


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
