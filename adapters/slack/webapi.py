"""Slack Web API calls as the reply targets make them: the budgets each method is paced
on (bot/adaptive.py learns what Slack really grants), a 429 as PlatformRateLimited, and
the markdown block a message carries."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from slack_sdk.errors import SlackApiError

from bot.errors import PlatformRateLimited
from bot.ports import Budget

# Slack's documented rates, where the budgets start; they learn what Slack really grants
# from its answers (bot/adaptive.py). Slack documents no burst sizes: these are the bursts
# a quiet workspace certainly gets, and probing finds more.
UPDATE_PER_S = 50 / 60  # chat.update: Tier 3, 50+/min per workspace
UPDATE_BURST = 5
APPEND_PER_S = 100 / 60  # chat.appendStream: Tier 4, 100+/min per workspace
APPEND_BURST = 10
POST_PER_S = 1.0  # chat.postMessage: 1/s per channel, "short bursts" allowed
POST_BURST = 3
STREAM_PER_S = 20 / 60  # chat.startStream, chat.stopStream: Tier 2, 20+/min per workspace
STREAM_BURST = 5
# A lone reply's edits at most this often: smooth to read, and a crowd needs no more.
EDIT_EVERY_S = 0.4
MARKDOWN_LIMIT = 12_000  # a markdown block's text
FILES_PER_S = 20 / 60  # files.getUploadURLExternal, completeUploadExternal: Tier 2+


def files_budget(team: str) -> Budget:
    """The workspace's file upload budget."""
    return Budget(f"slack:{team}:files.upload", FILES_PER_S, burst=5)


def update_budget(team: str) -> Budget:
    """The workspace's chat.update budget, shared by every reply in it."""
    return Budget(
        f"slack:{team}:chat.update",
        UPDATE_PER_S,
        burst=UPDATE_BURST,
        reserve=1,
        spacing=EDIT_EVERY_S,
        adaptive=True,
    )


def append_budget(team: str) -> Budget:
    """The workspace's chat.appendStream budget."""
    return Budget(
        f"slack:{team}:chat.appendStream",
        APPEND_PER_S,
        burst=APPEND_BURST,
        reserve=1,
        spacing=EDIT_EVERY_S,
        adaptive=True,
    )


def stream_budget(team: str, method: str) -> Budget:
    """The workspace's chat.startStream or chat.stopStream budget (Tier 2)."""
    return Budget(f"slack:{team}:{method}", STREAM_PER_S, burst=STREAM_BURST, adaptive=True)


def post_budget(team: str, channel: str) -> Budget:
    """One channel's chat.postMessage budget; what one channel teaches about Slack's
    limit is used in every channel of the workspace."""
    return Budget(
        f"slack:{team}:{channel}:chat.postMessage",
        POST_PER_S,
        burst=POST_BURST,
        adaptive=True,
        family=f"slack:{team}:chat.postMessage",
    )


async def call(fn: Callable[..., Awaitable[Any]], **kwargs: Any) -> Any:
    """Call a Web API method; a 429 becomes PlatformRateLimited with Slack's Retry-After."""
    try:
        return await fn(**kwargs)
    except SlackApiError as exc:
        if exc.response is not None and exc.response.status_code == 429:
            retry = float(
                exc.response.headers.get("Retry-After", exc.response.headers.get("retry-after", 1))
            )
            raise PlatformRateLimited(retry, "slack 429") from None
        raise


def blocks(text: str) -> list[dict[str, str]]:
    """A markdown block, which renders standard Markdown (code fences, lists, tables)."""
    return [{"type": "markdown", "text": text[:MARKDOWN_LIMIT]}]
