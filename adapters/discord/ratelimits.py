"""Forget discord.py's per-channel rate-limit records once they are back to a fresh state.

discord.py keeps one `Ratelimit` per bucket and channel (every thread the bot wrote in) and
drops them only when it holds 256 or more that sat unused for 5 minutes. A bot answering in
many threads keeps thousands alive (about 1 KB each). A record whose window has reset, with
no request in flight or waiting, is exactly what discord.py would create anew on the next
request, so it can go at once (the one difference: a new record lets one request through
until Discord's headers give the bucket's size, a round trip of pacing, never a 429).

This reads private attributes of discord.py's HTTPClient (the version is pinned in the
locks); tests/adapters/test_discord_ratelimits.py fails if an upgrade changes them.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger(__name__)

PRUNE_EVERY_S = 5.0  # cheap (a dict scan); keeps a busy bot to seconds of records
IDLE_S = 5.0  # unused at least this long: no burst of ours is mid-way through it


def prune(http: Any, now: float) -> int:
    """Drop the reset, idle records from `http._buckets`; returns how many."""
    over = http._global_over  # an asyncio.Event once logged in (discord.py's MISSING before)
    if isinstance(over, asyncio.Event) and not over.is_set():
        # A global 429 is being waited out: requests sit between get_ratelimit() and
        # acquire() holding a record that looks idle. Never prune then.
        return 0
    buckets: dict[str, Any] = http._buckets
    gone = [
        key
        for key, b in buckets.items()
        if b.outgoing == 0
        and not b._pending_requests
        and now - b._last_request >= IDLE_S
        and (b.expires is None or now > b.expires)
    ]
    for key in gone:
        del buckets[key]
    return len(gone)


async def keep_pruned(http: Any) -> None:
    """Prune every PRUNE_EVERY_S until cancelled."""
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(PRUNE_EVERY_S)
        try:
            prune(http, loop.time())
        except Exception as exc:  # never worth stopping the bot over
            log.warning("discord: pruning rate-limit records failed: %r", exc)


# A reply's writes: posts and edits (Discord gives both one bucket today; if it ever gives
# them two, the stricter record counts).
MESSAGE_ROUTES = (
    "POST /channels/{channel_id}/messages",
    "PATCH /channels/{channel_id}/messages/{message_id}",
)


def bucket_wait(http: Any, channel_id: int | str) -> float:
    """Seconds discord.py's records of a channel's message buckets say the next write must
    wait: Discord's X-RateLimit headers, as discord.py keeps them (0 when it knows of no
    wait, or has no record yet). The scheduler asks this before each write, so text is not
    handed to discord.py only to sit in its queue while newer text arrives."""
    try:
        now = asyncio.get_running_loop().time()
        wait = 0.0
        for route in MESSAGE_ROUTES:
            key = http._bucket_hashes.get(route) or route
            record = http._buckets.get(f"{key}:{channel_id}")
            if record is None or record.expires is None or record.remaining > 0:
                continue
            wait = max(wait, float(record.expires) - now)
        return wait
    except Exception:  # a changed discord.py: the window in target.py still paces writes
        return 0.0
