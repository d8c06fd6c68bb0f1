"""Our own error types. Adapters and the engine never see SDK exceptions."""

from __future__ import annotations

import math


class BotError(Exception):
    """Base class; `user_message` is short, human and safe to show."""

    user_message = "Something went wrong. Please try again."

    def __init__(self, detail: str = "", *, user_message: str | None = None) -> None:
        super().__init__(detail or self.user_message)
        if user_message is not None:
            self.user_message = user_message


class ModelError(BotError):
    """Any failure talking to the model."""


class ModelRateLimited(ModelError):
    """The model provider's quota or rate limit was hit."""

    def __init__(self, detail: str = "", *, retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        if retry_after is not None:
            wait = max(1, math.ceil(retry_after))
            msg = f"Gemini's quota is used up for now. Try again in about {wait} seconds."
        else:
            msg = "Gemini's quota is used up for now. Try again in a minute."
        super().__init__(detail, user_message=msg)


class ModelBlocked(ModelError):
    """The prompt or the reply was blocked by safety filters."""

    def __init__(self, detail: str = "", *, reason: str = "SAFETY") -> None:
        self.reason = reason
        super().__init__(
            detail,
            user_message=(
                f"Gemini declined to answer this ({reason.lower().replace('_', ' ')}). "
                "Try rephrasing."
            ),
        )


class ModelTooLarge(ModelError):
    """The request (history plus files) is more than the model accepts."""

    user_message = (
        "That is more than Gemini can take in one request. "
        "Try a smaller file, or /forget this thread and start again."
    )


class ModelUnavailable(ModelError):
    """The model is overloaded, down or unreachable."""

    user_message = "Gemini is unavailable right now. Please try again in a few minutes."


class ModelNotFound(ModelError):
    """Gemini does not know the model (retired, renamed or misspelt): only an admin can fix it."""

    def __init__(self, detail: str = "", *, model: str) -> None:
        self.model = model.removeprefix("models/")
        super().__init__(
            detail or f"model {self.model} not found",
            user_message=(
                f"The model {self.model} is no longer available from Google; an admin must "
                "change GEMINI_MODEL or the persona's model."
            ),
        )


class ModelFileUnavailable(ModelError):
    """A file referenced by URI is gone from the provider (deleted or expired early)."""

    user_message = "A file in this conversation is no longer available to Gemini."


class ModelAuthError(ModelError):
    """The API key is missing, invalid or lacks permission."""

    user_message = "The bot's Gemini API key was refused. Please tell the bot's operator."


class ModelBadRequest(ModelError):
    """Gemini rejected the request for another reason (unknown model, bad file...)."""

    user_message = "Gemini could not process this request."


class PlatformRateLimited(BotError):
    """A chat platform answered 429; raised by ReplyTarget methods."""

    def __init__(self, retry_after: float, detail: str = "") -> None:
        self.retry_after = retry_after
        super().__init__(detail or f"rate limited for {retry_after}s")


class AttachmentError(BotError):
    """An attachment could not be used; the rest of the message still is."""


class UnknownPersona(BotError):
    """A persona name that is not defined."""

    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        super().__init__(
            name, user_message=f"Unknown persona '{name}'. Choose one of: {', '.join(known)}."
        )


class AccessDenied(BotError):
    """The user or channel is not allowed to use the bot, or the command needs an admin."""

    user_message = "You are not allowed to do that here."


class SchemaTooNew(RuntimeError):
    """The database has migrations this release does not know: a newer one wrote it, and
    running on a schema this code may misread could lose data, so start-up stops."""
