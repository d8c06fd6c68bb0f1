"""What the adapter reads from Slack events, commands and shortcuts, validated at the edge.

Handlers use these models, never raw dicts, so a payload of an odd shape (a number where
Slack sends a string, a list subtype, a ts like `1.2.3`, a size of "big") is refused in one
place and logged once, instead of raising somewhere inside a handler.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StringConstraints, ValidationError

log = logging.getLogger(__name__)

# Slack's ts: seconds, a dot, microseconds ("1700000001.000100"); lenient on digit counts.
Ts = Annotated[str, StringConstraints(pattern=r"^\d{1,12}\.\d{1,9}$")]
# User, channel, team, bot ids: short, no markup (they go into Slack markup and API calls).
SlackId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
Short = Annotated[str, StringConstraints(max_length=255)]
MAX_TEXT = 40_000  # Slack truncates messages above this; anything longer is not Slack's
Text = Annotated[str, StringConstraints(max_length=MAX_TEXT)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)


class SlackFile(_Model):
    """A file object of a message (only the fields the adapter uses)."""

    id: SlackId | None = None
    name: Short | None = None
    title: Short | None = None
    mimetype: Short | None = None
    size: Annotated[StrictInt, Field(ge=0)] | None = None
    url_private: Annotated[str, StringConstraints(max_length=2048)] | None = None
    url_private_download: Annotated[str, StringConstraints(max_length=2048)] | None = None
    file_access: Short | None = None


class MessageEvent(_Model):
    """A `message` or `app_mention` event (also an assistant thread's user message)."""

    type: Short
    subtype: Short | None = None
    user: SlackId | None = None
    channel: SlackId | None = None
    ts: Ts | None = None
    thread_ts: Ts | None = None
    text: Text | None = None
    channel_type: Short | None = None
    team: SlackId | None = None
    bot_id: Short | None = None
    bot_profile: dict[str, Any] | None = None
    # Checked one by one (files_of): a bad file is skipped with a note, not the message.
    files: list[Any] | None = None


class Command(_Model):
    """A slash command's form."""

    team_id: SlackId
    channel_id: SlackId
    user_id: SlackId
    text: Annotated[str, StringConstraints(max_length=4000)] = ""


class Ref(_Model):
    """`{"id": ...}` as interactivity payloads name a team, user or channel."""

    id: SlackId


class ShortcutMessage(_Model):
    """The message a message shortcut was used on."""

    ts: Ts
    thread_ts: Ts | None = None
    files: list[Any] | None = None


class Shortcut(_Model):
    """A message shortcut's payload."""

    team: Ref
    channel: Ref
    user: Ref
    message: ShortcutMessage


class ApiMessage(_Model):
    """A message as conversations.replies / .history return it."""

    ts: Ts
    thread_ts: Ts | None = None
    user: SlackId | None = None
    bot_id: Short | None = None
    text: Text | None = None
    files: list[Any] | None = None


M = TypeVar("M", bound=_Model)


def parse(model: type[M], data: Any, *, label: str) -> M | None:
    """`data` as `model`, or None after one WARNING naming `label` and the first problem."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "payload"
        log.warning("slack: dropped %s: %s: %s", label, where, first["msg"])
        return None


def api_messages(raw: Any) -> list[ApiMessage]:
    """The messages of a Web API answer that fit; odd ones are skipped (they are context)."""
    out: list[ApiMessage] = []
    for item in raw if isinstance(raw, list) else []:
        try:
            out.append(ApiMessage.model_validate(item))
        except ValidationError:
            log.warning("slack: skipped a message of odd shape in a Web API answer")
    return out


def ts_value(ts: str) -> tuple[int, int]:
    """A validated ts as a sortable pair (no float rounding of the microseconds)."""
    seconds, _, fraction = ts.partition(".")
    return int(seconds), int(fraction.ljust(9, "0")[:9])
