"""The history policy every store uses (storage/history.py): first turn, then the newest
turns that fit, oldest first; and whether the budget, not the turns given, ended it."""

from __future__ import annotations

from datetime import UTC, datetime

from bot.types import TextPart, Turn, Usage
from storage.history import fit


def turn(seq: int, tokens: int) -> Turn:
    return Turn(
        id=seq,
        seq=seq,
        role="user",
        parts=(TextPart(f"t{seq}"),),
        author=None,
        status="complete",
        finish_reason=None,
        usage=Usage(),
        token_estimate=tokens,
        message_ids=(),
        error=None,
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


def test_first_then_the_newest_that_fit_oldest_first() -> None:
    first = turn(1, 10)
    newest_first = [turn(5, 10), turn(4, 10), turn(3, 10), turn(2, 10)]
    kept, used, cut = fit(first, newest_first, budget=35)
    assert [t.seq for t in kept] == [4, 5] and used == 30 and cut


def test_the_turns_running_out_is_not_the_budget_ending() -> None:
    first = turn(1, 10)
    kept, used, cut = fit(first, [turn(3, 5), turn(2, 5)], budget=100)
    assert [t.seq for t in kept] == [2, 3] and used == 20 and not cut


def test_a_newer_turn_over_the_budget_stops_the_history_there() -> None:
    # No gaps: an older small turn is not taken past a newer one that does not fit.
    first = turn(1, 10)
    kept, _, cut = fit(first, [turn(3, 100), turn(2, 1)], budget=50)
    assert kept == [] and cut
