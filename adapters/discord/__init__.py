"""Discord adapter: discord.py commands.Bot, app commands and streamed edits."""

from adapters.discord.adapter import DiscordAdapter

__all__ = ["DiscordAdapter"]
