"""How a finished stream is stored and told to the user."""

from __future__ import annotations

from bot.errors import BotError, ModelBlocked
from bot.types import TurnStatus

BLOCK_REASONS = frozenset(
    {"SAFETY", "RECITATION", "PROHIBITED_CONTENT", "SPII", "BLOCKLIST", "IMAGE_SAFETY"}
)
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
    if finish in BLOCK_REASONS:
        blocked = ModelBlocked(reason=finish or "SAFETY")
        if text:
            return "partial", f"Gemini stopped this reply early ({finish.lower()})."
        return "failed", blocked.user_message
    if finish == "MAX_TOKENS":
        return "partial", "The reply reached the maximum length and was cut off."
    if finish not in (None, "STOP", "FINISH_REASON_UNSPECIFIED") and not text:
        return "failed", f"Gemini returned no answer ({finish.lower()})."
    return "complete", None
