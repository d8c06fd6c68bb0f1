"""Pruning discord.py's rate-limit records: only reset, idle ones go (real discord.py objects,
so an upgrade that renames what ratelimits.py reads fails here)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import discord.http

from adapters.discord.ratelimits import IDLE_S, prune


async def test_only_reset_idle_records_are_pruned() -> None:
    loop = asyncio.get_running_loop()
    now = loop.time()
    http = discord.http.HTTPClient(loop)
    http._global_over = asyncio.Event()  # as static_login() leaves it: no global 429 now
    http._global_over.set()
    make = http.get_ratelimit
    fresh_idle = make("a")  # never used since created: like a new one
    fresh_idle._last_request = now - IDLE_S - 1
    waiting_window = make("b")  # Discord's window not reset yet
    waiting_window._last_request = now - IDLE_S - 1
    waiting_window.expires = now + 3
    in_flight = make("c")
    in_flight._last_request = now - IDLE_S - 1
    in_flight.outgoing = 1
    queued = make("d")
    queued._last_request = now - IDLE_S - 1
    queued._pending_requests.append(loop.create_future())
    make("e")  # used a moment ago
    reset = make("f")
    reset._last_request = now - IDLE_S - 1
    reset.expires = now - 1
    assert prune(http, now) == 2
    assert set(http._buckets) == {"b", "c", "d", "e"}
    assert fresh_idle is not http.get_ratelimit("a")  # made anew on the next request
    await http.close()


async def test_prune_reads_only_what_discord_py_has() -> None:
    record = SimpleNamespace(outgoing=0, _pending_requests=[], _last_request=0.0, expires=None)
    over = asyncio.Event()
    http = SimpleNamespace(_buckets={"x": record}, _global_over=over)
    assert prune(http, IDLE_S + 1) == 0  # a global 429 is being waited out: nothing goes
    over.set()
    assert prune(http, IDLE_S + 1) == 1 and http._buckets == {}
    names = set(discord.http.Ratelimit.__slots__)
    assert {"outgoing", "_pending_requests", "_last_request", "expires"} <= names
    real = discord.http.HTTPClient(asyncio.get_running_loop())
    assert hasattr(real, "_global_over") and isinstance(real._buckets, dict)
    await real.close()
