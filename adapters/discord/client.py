"""The discord.py client of the adapter, and whether its gateway session is up.

`connected` follows the session, not only the first READY: a dropped connection
(`on_disconnect`) makes it False until the session is RESUMEd (`on_resumed`) or a new one
is IDENTIFYed (`on_ready` again). /healthz reads it. A sharded bot (shards.py) follows each
of its shards instead.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import discord
from discord.ext import commands as ext_commands

from adapters.discord.guard import guard_parsers
from adapters.discord.ratelimits import keep_pruned

if TYPE_CHECKING:
    from adapters.discord.adapter import DiscordAdapter

log = logging.getLogger(__name__)


class DiscordBot(ext_commands.Bot):
    """discord.py's Bot, composed in setup_hook (as in discord.py's advanced_startup)."""

    def __init__(self, adapter: DiscordAdapter, **shard_options: Any) -> None:
        intents = discord.Intents.default()
        intents.message_content = True  # privileged: enable it in the developer portal
        super().__init__(
            command_prefix=ext_commands.when_mentioned,
            intents=intents,
            help_command=None,
            allowed_mentions=discord.AllowedMentions.none(),
            # Wait at most this long after READY for the guilds to stream in.
            guild_ready_timeout=1.0,
            **shard_options,  # shard_count and shard_ids, for ShardedDiscordBot only
        )
        self.adapter = adapter
        self.session_up = False
        self._pruner: asyncio.Task[None] | None = None
        # Parsing errors would otherwise end the whole gateway connection (see guard.py).
        guard_parsers(self._connection.parsers)

    @property
    def connected(self) -> bool:
        """True while the gateway session is READY or RESUMED and not closed."""
        return self.session_up and not self.is_closed()

    def shard_states(self) -> dict[int, bool]:
        """Each shard this process runs and whether it is up; none without sharding."""
        return {}

    async def setup_hook(self) -> None:
        """Commands are registered (and synced if they changed) once logged in."""
        self._pruner = asyncio.create_task(keep_pruned(self.http), name="discord:ratelimits")
        await self.adapter.setup(self)

    async def close(self) -> None:
        """Stop pruning, then close discord.py's client."""
        if self._pruner is not None:
            self._pruner.cancel()
        await super().close()

    async def on_ready(self) -> None:
        """A session was IDENTIFYed (at start, or afresh after an invalidated one)."""
        self.session_up = True
        log.info("discord: connected as %s in %d guild(s)", self.user, len(self.guilds))

    async def on_resumed(self) -> None:
        """The dropped session was RESUMEd: events missed meanwhile are replayed."""
        self.session_up = True
        log.info("discord: session resumed")

    async def on_disconnect(self) -> None:
        """The gateway connection dropped; discord.py reconnects on its own."""
        if self.session_up and not self.is_closed():  # not our own shutdown
            log.warning("discord: gateway disconnected; reconnecting")
        self.session_up = False

    async def on_message(self, message: discord.Message) -> None:
        """Every message the gateway delivers goes to the adapter."""
        await self.adapter.on_message(message)
