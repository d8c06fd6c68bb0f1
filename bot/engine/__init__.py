"""The conversation engine: durable turns, streamed replies, recovery after a crash."""

from bot.engine.core import Accepted, ConversationEngine, TurnResult
from bot.engine.outcome import INTERRUPTED
from bot.engine.recovery import Recovery

__all__ = ["INTERRUPTED", "Accepted", "ConversationEngine", "Recovery", "TurnResult"]
