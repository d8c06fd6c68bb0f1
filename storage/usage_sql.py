"""Token usage per user and day: the SQL both engines share (SQLite's `?` placeholders;
PostgreSQL numbers them with storage.installs.numbered)."""

from __future__ import annotations

from typing import Any

from bot.types import Usage

ADD_USAGE = (
    "INSERT INTO usage (platform, user_id, day, turns, prompt_tokens, output_tokens, "
    "tool_tokens, cached_tokens) VALUES (?, ?, ?, 1, ?, ?, ?, ?) "
    "ON CONFLICT (platform, user_id, day) DO UPDATE SET turns=usage.turns+1, "
    "prompt_tokens=usage.prompt_tokens+excluded.prompt_tokens, "
    "output_tokens=usage.output_tokens+excluded.output_tokens, "
    "tool_tokens=usage.tool_tokens+excluded.tool_tokens, "
    "cached_tokens=usage.cached_tokens+excluded.cached_tokens"
)
GET_USAGE = (
    "SELECT turns, prompt_tokens, output_tokens, tool_tokens, cached_tokens FROM usage "
    "WHERE platform=? AND user_id=? AND day=?"
)


def usage_params(platform: str, user_id: str, day: str, usage: Usage) -> tuple[Any, ...]:
    """ADD_USAGE's parameters."""
    return (
        platform,
        user_id,
        day,
        usage.prompt_tokens,
        usage.output_tokens,
        usage.tool_tokens,
        usage.cached_tokens,
    )
