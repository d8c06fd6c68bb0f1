"""What a turn produces and carries: the accepted message, the turn's result, and the
note every persona gets about multi-person threads."""

from __future__ import annotations

from dataclasses import dataclass, replace

from bot.errors import BotError
from bot.types import Conversation, Persona, Turn

THREAD_NOTE = (
    "You are replying in a chat thread. Each user message starts with the speaker's name in "
    "square brackets, like [Ada]; several people may take part, so keep track of who said what. "
    "Do not start your own replies with a name in brackets."
)
FAILED = "Something went wrong on our side while answering; please try again."
# Told a message that arrives while the only process is shutting down (with replicas,
# another one answers it: ConversationEngine._hand_off).
RESTARTING = "The bot is restarting; please try again in a minute."


@dataclass(frozen=True, slots=True)
class TurnResult:
    """What one turn did (for adapters, tests and metrics)."""

    status: str
    text: str
    finish_reason: str | None = None
    notes: tuple[str, ...] = ()
    error: BotError | None = None
    dropped: int = 0
    user_turn_id: int | None = None
    model_turn_id: int | None = None


@dataclass(frozen=True, slots=True)
class Accepted:
    """A message stored with its pending reply: from here on a crash cannot lose it."""

    conversation: Conversation
    user_turn: Turn
    model_turn: Turn


def with_thread_note(persona: Persona, dropped: int) -> Persona:
    """The persona told it is in a multi-person thread (and how much history was cut)."""
    note = THREAD_NOTE
    if dropped:
        note += (
            f" {dropped} earlier message(s) of this thread were left out to fit the "
            "context; only the first message and the most recent ones are shown."
        )
    return replace(persona, system_instruction=f"{persona.system_instruction}\n\n{note}")
