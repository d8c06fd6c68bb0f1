"""Catch-up and thread summaries, platform-neutral.

Adapters read a channel's or a thread's history into `ChannelMessage`s (bounded by
CATCHUP_MAX_MESSAGES), `Summariser` summarises them within HISTORY_TOKEN_BUDGET (map/reduce
when they do not fit one request), and `compose` makes the answer, each point linked to
the messages it comes from.
"""

from bot.catchup.answer import Answer, Kept, Read, compose
from bot.catchup.summarise import Progress, Subject, Summariser, Summary
from bot.catchup.transcript import ChannelMessage, FileRef, Render, Transcript, link_references
from bot.catchup.window import Window, WindowError, parse_since, stamp

__all__ = [
    "Answer",
    "ChannelMessage",
    "FileRef",
    "Kept",
    "Progress",
    "Read",
    "Render",
    "Subject",
    "Summariser",
    "Summary",
    "Transcript",
    "Window",
    "WindowError",
    "compose",
    "link_references",
    "parse_since",
    "stamp",
]
