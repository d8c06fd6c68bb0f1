"""Split long replies into platform-sized messages without breaking code fences or words."""

from __future__ import annotations

import re

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")


class _Fence:
    __slots__ = ("info", "marker")

    def __init__(self, marker: str, info: str) -> None:
        self.marker = marker
        self.info = info


def _step(fence: _Fence | None, line: str) -> _Fence | None:
    """Fence state after `line` (without its newline)."""
    m = _FENCE.match(line)
    if not m:
        return fence
    marker, rest = m.group(1), m.group(2).strip()
    if fence is None:
        return _Fence(marker, rest)
    if marker[0] == fence.marker[0] and len(marker) >= len(fence.marker) and not rest:
        return None
    return fence


def open_fence_at(text: str) -> tuple[str, str] | None:
    """The (marker, info) of a code fence still open at the end of `text`, else None."""
    fence: _Fence | None = None
    for line in text.split("\n"):
        fence = _step(fence, line)
    return (fence.marker, fence.info) if fence else None


def split_message(text: str, limit: int) -> tuple[str, str]:
    """Split `text` (longer than `limit`) into a head of at most `limit` chars and the rest.

    Preference: a paragraph break, then a line break outside code, then a line break inside
    a code block (the fence is closed in the head and reopened in the rest), then a space,
    then a hard cut. Breaks in the first half of the window are used only when nothing
    better exists, so messages stay full.
    """
    if len(text) <= limit:
        return text, ""
    if limit < 16:
        raise ValueError("limit too small to split sensibly")
    reserve = 4  # room for "\n```" when a fence must be closed
    window = limit - reserve
    para = line_out = line_in = -1
    fence: _Fence | None = None
    pos = 0
    for line in text.split("\n"):
        end = pos + len(line)
        if end > window:
            break
        if line.strip() == "" and fence is None and pos > 0:
            para = pos - 1 if text[pos - 1] == "\n" else pos
        fence = _step(fence, line)
        if end < len(text):
            if fence is None:
                line_out = end
            else:
                line_in = end
        pos = end + 1
    half = limit // 2
    cut = -1
    for candidate in (para, line_out, line_in):
        if candidate >= half:
            cut = candidate
            break
    if cut < 0:
        cut = max(para, line_out, line_in)
    if cut < half:
        space = text.rfind(" ", 0, window)
        if space > cut:
            cut = space
    if cut <= 0:
        cut = window
    head, rest = text[:cut], text[cut:]
    head = head.rstrip()
    rest = rest.lstrip(" ") if rest.startswith(" ") else rest.lstrip("\n")
    state = open_fence_at(head)
    if state is not None:
        marker, info = state
        head = f"{head}\n{marker}"
        rest = f"{marker}{info}\n{rest}"
    return head, rest
