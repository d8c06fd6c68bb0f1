"""How a finished stream is stored and told to the user."""

from __future__ import annotations

from bot.errors import BotError, ModelBlocked
from bot.model_events import STOPPED_BY_POLICY
from bot.types import TurnStatus

INTERRUPTED = "The bot restarted before this reply was finished; ask again to continue."


def outcome(
    text: str, finish: str | None, error: BotError | None, cancelled: bool
) -> tuple[TurnStatus, str | None]:
    """(status, note for the user) of a finished stream."""
    if cancelled:
        return ("partial" if text else "failed"), INTERRUPTED
    if error is not None:
        if text:
            return "partial", f"The reply was cut short: {error.user_message}"
        return "failed", error.user_message
    if finish in STOPPED_BY_POLICY:
        blocked = ModelBlocked(reason=(finish or "safety").upper())
        if text:
            return "partial", f"Gemini stopped this reply early ({finish})."
        return "failed", blocked.user_message
    if finish == "max_tokens":
        return "partial", "The reply reached the maximum length and was cut off."
    if finish not in (None, "stop") and not text:
        return "failed", f"Gemini returned no answer ({finish})."
    return "complete", None
