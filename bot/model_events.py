"""What a model stream yields: typed, provider-neutral events (bot/gemini.py maps to them).

A reply is a sequence of events: text as it is written, tool activity while a tool runs,
code the model ran and its output, files it made, and after the text the sources it used
and the links it read. The last event is always `Finished`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from bot.types import (
    CodeOutcome,
    CodeOutputPart,
    CodePart,
    Grounding,
    LinkRead,
    LinkStatus,
    Source,
    Support,
    Usage,
)

# Why a reply ended, in our own words (the provider's names stay in its module).
# stop: done; max_tokens: hit the output limit; safety: stopped by a safety filter;
# recitation: stopped for quoting too much; blocked: other policy stop (prohibited
# content, blocklist, personal data, image safety); malformed: the model produced an
# unusable call or output; other: anything else.
FinishReason = Literal[
    "stop", "max_tokens", "safety", "recitation", "blocked", "malformed", "other"
]
STOPPED_BY_POLICY: frozenset[str] = frozenset({"safety", "recitation", "blocked"})

ToolName = Literal["google_search", "url_context", "code_execution"]
# The tool-activity signal: what the model is doing while no text arrives.
Activity = Literal["searching", "reading_links", "running_code", "drawing"]


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of reply text."""

    text: str


@dataclass(frozen=True, slots=True)
class LinksRead:
    """The links read for this answer."""

    links: tuple[LinkRead, ...]


@dataclass(frozen=True, slots=True)
class GeneratedFile:
    """A file the model made: an image, or a chart its code drew."""

    mime_type: str
    data: bytes
    origin: Literal["image", "code"] = "image"
    # Opaque provider data to send back with the file in later turns (Gemini 3 image models
    # sign their images and refuse an edit of one without its signature).
    signature: bytes | None = None


# Code the model wrote and ran, and what it printed: the same values a model turn stores.
CodeRun = CodePart
CodeOutput = CodeOutputPart


@dataclass(frozen=True, slots=True)
class ToolActivity:
    """The model is using a tool: for a status line while no text arrives."""

    activity: Activity
    count: int = 0  # e.g. how many links are being read


@dataclass(frozen=True, slots=True)
class Finished:
    """The last event of a stream."""

    finish_reason: FinishReason
    usage: Usage


ModelEvent = (
    TextDelta
    | Grounding
    | LinksRead
    | GeneratedFile
    | CodeRun
    | CodeOutput
    | ToolActivity
    | Finished
)


__all__ = [
    "Activity",
    "CodeOutcome",
    "CodeOutput",
    "CodeRun",
    "FinishReason",
    "Finished",
    "GeneratedFile",
    "Grounding",
    "LinkRead",
    "LinkStatus",
    "LinksRead",
    "ModelEvent",
    "Source",
    "Support",
    "TextDelta",
    "ToolActivity",
    "ToolName",
]
