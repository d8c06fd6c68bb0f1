"""The bot over several gateway connections: DISCORD_SHARD_COUNT and DISCORD_SHARD_IDS.

ShardedDiscordBot is DiscordBot on discord.py's AutoShardedBot: one gateway connection per
shard this process runs (DISCORD_SHARD_IDS; by default every shard of DISCORD_SHARD_COUNT),
each receiving the events of the guilds Discord assigns to it, `(guild_id >> 22) % count`
(DMs come to shard 0). The shards share one REST client, cache and adapter.

It is used only when sharding is configured. Without it the adapter keeps discord.py's plain
Bot: AutoShardedBot is not the same client with one shard (it asks `GET /gateway/bot` when
given no count and first connects where that answer says; its ready, resume and disconnect
events and its handling of fatal close codes take other paths).

Where it departs from discord.py's defaults:
- `auto` takes the count from `GET /gateway/bot` but connects to the configured gateway
  (DISCORD_GATEWAY_URL, else Discord's), where discord.py's own reconnects go too.
- IDENTIFYs are paced as Discord asks: `max_concurrency` of them per 5 s (from the same
  answer's `session_start_limit`), one per bucket `shard_id % max_concurrency`, where
  discord.py waits 5 s before every IDENTIFY but the first. The pacing is per process.
- Health: a shard is up once its READY's guilds are loaded (`on_shard_ready`) or its session
  is RESUMED, down from its disconnect; the bot is `connected` when every shard is up.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import discord
from discord.ext import commands as ext_commands

from adapters.discord.client import DiscordBot

if TYPE_CHECKING:
    from adapters.discord.adapter import DiscordAdapter

log = logging.getLogger(__name__)

IDENTIFY_WINDOW_S = 5.0  # Discord: max_concurrency IDENTIFYs per 5 seconds


class IdentifyPacer:
    """When each shard may IDENTIFY: one per bucket (`shard_id % max_concurrency`) per
    window, the first of each bucket at once."""

    def __init__(self, *, max_concurrency: int = 1, window: float = IDENTIFY_WINDOW_S) -> None:
        self.max_concurrency = max(1, max_concurrency)
        self.window = window
        self._next: dict[int, float] = {}  # bucket -> earliest time of its next IDENTIFY

    def reserve(self, shard_id: int, now: float) -> float:
        """Seconds `shard_id` waits before it IDENTIFYs; the slot is taken from now on."""
        bucket = shard_id % self.max_concurrency
        at = max(now, self._next.get(bucket, now))
        self._next[bucket] = at + self.window
        return at - now


class ShardedDiscordBot(DiscordBot, ext_commands.AutoShardedBot):
    """DiscordBot with one gateway connection per shard this process runs."""

    def __init__(
        self,
        adapter: DiscordAdapter,
        *,
        shard_count: int | None,
        shard_ids: Sequence[int] | None = None,
    ) -> None:
        super().__init__(
            adapter, shard_count=shard_count, shard_ids=list(shard_ids) if shard_ids else None
        )
        self.pacer = IdentifyPacer()
        self._up: set[int] = set()

    # -- start -------------------------------------------------------------------

    async def launch_shards(self) -> None:
        """Read the recommended count and the IDENTIFY limit, then connect every shard."""
        try:
            recommended, _url, limits = await self.http.get_bot_gateway()
        except discord.GatewayNotFound:
            if self.shard_count is None:
                raise  # `auto` cannot go on without Discord's count
            log.warning("discord: GET /gateway/bot failed; identifying one shard per 5 s")
        else:
            self.pacer = IdentifyPacer(max_concurrency=int(limits.get("max_concurrency") or 1))
            if self.shard_count is None:
                self.shard_count = recommended
                log.info("discord: %d shard(s), as Discord recommends", recommended)
            elif self.shard_count < recommended:
                log.warning(
                    "discord: DISCORD_SHARD_COUNT=%d but Discord recommends %d shards",
                    self.shard_count,
                    recommended,
                )
        log.info(
            "discord: running shard(s) %s of %d",
            ", ".join(map(str, self.shard_ids or range(self.shard_count or 0))),
            self.shard_count,
        )
        await super().launch_shards()

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        """Wait for the shard's IDENTIFY slot (instead of discord.py's 5 s every time)."""
        delay = self.pacer.reserve(shard_id or 0, asyncio.get_running_loop().time())
        if delay > 0:
            log.info("discord: shard %s identifies in %.1f s (Discord's limit)", shard_id, delay)
            await asyncio.sleep(delay)

    # -- health ------------------------------------------------------------------

    def shard_states(self) -> dict[int, bool]:
        """Each shard this process runs (once the count is known) and whether it is up."""
        if self.shard_count is None:
            return {}
        shards = self.shards
        closed = self.is_closed()
        return {
            i: i in self._up and i in shards and not shards[i].is_closed() and not closed
            for i in self.shard_ids or range(self.shard_count)
        }

    @property
    def connected(self) -> bool:
        """True while every shard this process runs is up."""
        states = self.shard_states()
        return bool(states) and all(states.values())

    async def on_shard_ready(self, shard_id: int) -> None:
        """The shard was IDENTIFYed and its guilds have streamed in."""
        self._up.add(shard_id)
        log.info("discord: shard %d connected", shard_id)

    async def on_shard_resumed(self, shard_id: int) -> None:
        """The shard's dropped session was RESUMEd."""
        self._up.add(shard_id)
        log.info("discord: shard %d resumed", shard_id)

    async def on_shard_disconnect(self, shard_id: int) -> None:
        """The shard's connection dropped; discord.py reconnects it."""
        if shard_id in self._up and not self.is_closed():
            log.warning("discord: shard %d disconnected; reconnecting", shard_id)
        self._up.discard(shard_id)

    async def on_disconnect(self) -> None:
        """Per shard: on_shard_disconnect says which."""

    async def on_resumed(self) -> None:
        """Per shard: on_shard_resumed says which."""
