"""DISCORD_SHARD_COUNT and DISCORD_SHARD_IDS, parsed and checked for bot/settings.py.

A count is a whole number of shards (1 or more) or `auto`: the count Discord recommends in
`GET /gateway/bot`. The ids are the shards this process runs (`0,1`), each below the count;
they need a numeric count, because every process of the bot must agree on it: Discord sends
a guild's events to shard `(guild_id >> 22) % count` only. Neither set: no sharding (one
gateway connection sees every guild). Each problem is one ValueError message, which
load_settings() turns into one line naming the variable.
"""

from __future__ import annotations

from typing import Final, Literal

AUTO: Final = "auto"
ShardCount = int | Literal["auto"]


def parse_shard_count(raw: object) -> ShardCount | None:
    """A DISCORD_SHARD_COUNT value: None (blank), `auto`, or a whole number >= 1."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    if isinstance(raw, str) and raw.strip().lower() == AUTO:
        return AUTO
    if isinstance(raw, int) and not isinstance(raw, bool):
        count = raw
    elif isinstance(raw, str) and raw.strip().isdecimal():
        count = int(raw.strip())
    else:
        count = 0
    if count < 1:
        raise ValueError("must be a whole number of shards (1 or more), or auto")
    return count


def parse_shard_ids(raw: object) -> tuple[int, ...] | None:
    """DISCORD_SHARD_IDS: comma-separated shard numbers (blanks dropped), sorted; None
    when blank."""
    if raw is None:
        return None
    items = raw.split(",") if isinstance(raw, str) else raw
    if not isinstance(items, list | tuple):
        raise ValueError("must be comma-separated shard numbers, such as 0,1")
    texts = [str(i).strip() for i in items if str(i).strip()]
    if not texts:
        return None
    if not all(t.isdecimal() for t in texts):
        raise ValueError("must be comma-separated shard numbers, such as 0,1")
    ids = [int(t) for t in texts]
    twice = sorted({i for i in ids if ids.count(i) > 1})
    if twice:
        raise ValueError(f"lists shard {', '.join(map(str, twice))} more than once")
    return tuple(sorted(ids))


def check_shard_ids(ids: tuple[int, ...], count: ShardCount | None) -> None:
    """Raise ValueError when `ids` do not fit DISCORD_SHARD_COUNT."""
    if count is None:
        raise ValueError("needs DISCORD_SHARD_COUNT, the total number of shards over every process")
    if count == AUTO:
        raise ValueError(
            "needs a number in DISCORD_SHARD_COUNT, not auto: every process must agree on "
            "the total number of shards"
        )
    assert isinstance(count, int)
    beyond = [i for i in ids if i >= count]
    if beyond:
        raise ValueError(
            f"shard{'s' if len(beyond) > 1 else ''} {', '.join(map(str, beyond))} out of "
            f"range: with DISCORD_SHARD_COUNT="
            f"{count} the ids go from 0 to {count - 1}"
        )
