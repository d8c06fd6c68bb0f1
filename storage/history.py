"""The history policy, written once for every store: a conversation's first turn always,
then as many of its newest turns as fit the token budget, oldest first."""

from __future__ import annotations

from collections.abc import Iterable

from bot.types import Turn


def fit(first: Turn, newest_first: Iterable[Turn], budget: int) -> tuple[list[Turn], int, bool]:
    """The turns after `first` that fit `budget` with it (oldest first), the tokens they
    and `first` use, and True when a turn was left out for the budget (False: the turns
    given ran out first, so older ones, if any, may still fit)."""
    used = first.token_estimate
    kept: list[Turn] = []
    for turn in newest_first:
        if used + turn.token_estimate > budget:
            kept.reverse()
            return kept, used, True
        used += turn.token_estimate
        kept.append(turn)
    kept.reverse()
    return kept, used, False
