"""Discord text helpers: readable prompts and thread names."""

from __future__ import annotations

import re
from collections.abc import Mapping

MAX_THREAD_NAME = 100
_MENTION = re.compile(r"<@!?(\d+)>")
_ROLE = re.compile(r"<@&(\d+)>")
_CHANNEL = re.compile(r"<#(\d+)>")
_EMOJI = re.compile(r"<a?:(\w+):\d+>")
# <https://…> is Discord's way to post a link without an embed; the model wants the URL.
_NO_EMBED = re.compile(r"<(https?://[^\s<>]+)>")


def readable(text: str, *, bot_id: str, names: Mapping[str, str]) -> str:
    """The prompt as people read it: the bot's mention dropped, others as @Name."""

    def user(m: re.Match[str]) -> str:
        if m.group(1) == bot_id:
            return ""
        return "@" + names.get(m.group(1), m.group(1))

    text = _MENTION.sub(user, text)
    text = _ROLE.sub("@role", text)
    text = _CHANNEL.sub("#channel", text)
    text = _EMOJI.sub(r":\1:", text)
    text = _NO_EMBED.sub(r"\1", text)
    return re.sub(r"[ \t]{2,}", " ", text).strip()


def thread_name(prompt: str, fallback: str = "Gemini") -> str:
    """A thread title from the prompt: one line, no markup, within Discord's 100 chars."""
    line = next((ln for ln in prompt.splitlines() if ln.strip()), "")
    line = re.sub(r"[`*_~|>#]+", "", line)
    line = re.sub(r"https?://\S+", "link", line)
    line = re.sub(r"\s+", " ", line).strip(" -:")
    if not line:
        return fallback
    if len(line) <= MAX_THREAD_NAME:
        return line
    cut = line[: MAX_THREAD_NAME - 1]
    space = cut.rfind(" ")
    if space > MAX_THREAD_NAME // 2:
        cut = cut[:space]
    return cut.rstrip(" ,.;:") + "…"
