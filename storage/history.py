"""The history policy, written once for every store: a conversation's first turn always,
then as many of its newest turns as fit the token budget, oldest first."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

from bot.types import History, Turn


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


# Older turns are read newest first in pages, so a 5,000-turn thread costs what a short one
# does: reading stops at the first page whose turns no longer fit.
PAGE = 64


async def read_recent(
    first: Turn, page: Callable[[int], Awaitable[list[Turn]]], budget: int
) -> tuple[list[Turn], bool]:
    """Over the "recent turns" primitive `page(offset)` (up to PAGE turns after the first,
    newest first, skipping `offset`): the newest turns that fit `budget` with `first`, plus
    the one past the edge when the budget ended it (so a cache knows where it ends), newest
    first; and True when the budget ended it (False: every turn was read)."""
    newest_first: list[Turn] = []
    offset = 0
    while True:
        rows = await page(offset)
        newest_first.extend(rows)
        kept, _, cut = fit(first, newest_first, budget)
        if cut:
            return newest_first[: len(kept) + 1], True
        if len(rows) < PAGE:
            return newest_first, False
        offset += PAGE


def history(first: Turn | None, newest_first: list[Turn], budget: int) -> History:
    """The History for `budget` from a first turn and the newest turns read after it
    (sequence numbers run 1, 2, 3... so the newest one's says how many turns there are)."""
    if first is None:
        return History((), 0, 0)
    kept, used, _ = fit(first, newest_first, budget)
    turns = (first, *kept)
    last_seq = newest_first[0].seq if newest_first else first.seq
    return History(turns, last_seq - len(turns), used)
