"""How a reply's extras look on each platform: source markers and footnotes, search links,
notes on links that could not be read, code blocks and status lines.

The engine composes the reply with the target's `Markup`; adapters only pick a style:
Slack's markdown block renders standard Markdown links, Discord wants masked links with the
URL in angle brackets (so no embed unfurls for each source), and the console prints URLs.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote_plus

from bot.types import Grounding, LinkRead, Source

LinkStyle = Literal["markdown", "angle", "plain"]
ACTIVITY = {
    "searching": "Searching the web…",
    "reading_links": "Reading {n} link{s}…",
    "running_code": "Running code…",
    "drawing": "Drawing…",
}
LINK_PROBLEM = {
    "failed": "could not be read",
    "unsafe": "refused as unsafe",
    "paywalled": "paywalled",
}
NAMED_LINKS = 5  # unreadable links named one by one; the rest are counted
# Code or output longer than this is attached as a file instead of shown inline.
INLINE_CODE_CHARS = 1_500
INLINE_CODE_LINES = 30


@dataclass(frozen=True, slots=True)
class Markup:
    """A platform's way of writing links, italics and code blocks."""

    links: LinkStyle = "markdown"

    def link(self, label: str, url: str) -> str:
        """A link with a label."""
        label = label.replace("[", "(").replace("]", ")").strip() or url
        if self.links == "plain":
            return f"{label} <{url}>" if label != url else url
        target = f"<{url}>" if self.links == "angle" else url.replace(")", "%29")
        return f"[{label}]({target})"

    def bare(self, url: str) -> str:
        """A URL on its own (in angle brackets on Discord, so it does not unfurl)."""
        return f"<{url}>" if self.links == "angle" else url

    def italic(self, text: str) -> str:
        """An italic line (plain text on the console)."""
        return text if self.links == "plain" else f"_{text}_"

    def code(self, body: str, language: str = "") -> str:
        """A fenced code block (the fence never closes early on backticks in `body`)."""
        fence = "````" if "```" in body else "```"
        return f"{fence}{language}\n{body.rstrip()}\n{fence}"


MARKDOWN = Markup("markdown")
PLAIN = Markup("plain")


def activity_line(activity: str, count: int = 0) -> str:
    """A status line for a tool at work, e.g. "Reading 2 links…"."""
    template = ACTIVITY.get(activity, "Working…")
    return template.format(n=count or "the", s="" if count == 1 else "s")


def numbering(g: Grounding) -> list[int]:
    """Source indices in footnote order: first cited first, then the uncited ones."""
    order: list[int] = []
    for support in sorted(g.supports, key=lambda s: s.end):
        for i in support.sources:
            if i not in order:
                order.append(i)
    order += [i for i in range(len(g.sources)) if i not in order]
    return order


def markers(g: Grounding, order: Sequence[int]) -> dict[int, str]:
    """Text offset -> the markers to insert there, like "[1][3]"."""
    number = {src: n for n, src in enumerate(order, 1)}
    at: dict[int, list[int]] = {}
    for s in g.supports:
        nums = at.setdefault(s.end, [])
        nums += [number[i] for i in s.sources if i in number and number[i] not in nums]
    return {pos: "".join(f"[{n}]" for n in sorted(nums)) for pos, nums in at.items() if nums}


def insert_markers(text: str, at: dict[int, str]) -> str:
    """`text` with markers inserted at character offsets (after trailing punctuation kept)."""
    out: list[str] = []
    last = 0
    for pos in sorted(p for p in at if 0 <= p <= len(text)):
        out.append(text[last:pos])
        out.append(at[pos])
        last = pos
    out.append(text[last:])
    return "".join(out)


def footnotes(g: Grounding, order: Sequence[int], markup: Markup, limit: int = 0) -> str:
    """The numbered sources, then the searches Gemini ran as Google search links; within
    `limit` characters when given (so it fits one message): domains go first, then the
    last sources, then searches; each drop is said."""
    searches = [
        markup.link(q, f"https://www.google.com/search?q={quote_plus(q)}") for q in g.queries
    ]
    # Search Suggestions are what Google's terms ask to show: sources go before searches.
    for queries in range(len(searches), -1, -1):
        for keep in range(len(order), -1, -1):
            for with_domain in (True, False):
                text = _footer(g, order, markup, with_domain, keep, searches[:queries])
                if not limit or len(text) <= limit:
                    return text
    return ""


def _footer(
    g: Grounding,
    order: Sequence[int],
    markup: Markup,
    with_domain: bool,
    keep: int,
    searches: Sequence[str],
) -> str:
    lines: list[str] = []
    if order:
        lines.append("Sources:")
        for n, i in enumerate(order[:keep], 1):
            lines.append(f"[{n}] {_source(g.sources[i], markup, with_domain=with_domain)}")
        if keep < len(order):
            lines.append(markup.italic(f"({len(order) - keep} more not shown: too long here)"))
    if searches:
        more = len(g.queries) - len(searches)
        lines.append("Searched: " + " · ".join(searches) + (f" (+{more} more)" if more else ""))
    return "\n".join(lines)


def _source(s: Source, markup: Markup, *, with_domain: bool = True) -> str:
    title = s.title or s.domain or s.uri
    named = with_domain and s.domain and s.domain.lower() not in title.lower()
    tail = f" ({s.domain})" if named else ""
    return markup.link(title, s.uri) + tail


def links_note(links: Sequence[LinkRead], markup: Markup) -> str:
    """A short note naming the links Gemini could not read (empty when all were read)."""
    bad = [link for link in links if link.status != "read"]
    if not bad:
        return ""
    named = ", ".join(
        f"{markup.bare(link.url[:200])} ({LINK_PROBLEM.get(link.status, link.status)})"
        for link in bad[:NAMED_LINKS]
    )
    if len(bad) > NAMED_LINKS:
        named += f" and {len(bad) - NAMED_LINKS} more"
    noun = "This link" if len(bad) == 1 else "These links"
    return markup.italic(f"{noun} could not be used: {named}.")


# No \b: a URL right after a word character (`_https://…_` in italics) still links.
_SCHEME = re.compile(r"(https?|ftp)://", re.I)
_WWW = re.compile(r"(www)\.", re.I)


def defang(text: str) -> str:
    """URLs the model wrote, made unclickable (a zero-width space after the scheme and in
    `www.`) but still readable: only links the bot builds itself may be followed."""
    text = _SCHEME.sub(lambda m: f"{m.group(1)}:\u200b//", text)
    return _WWW.sub(lambda m: f"{m.group(1)}\u200b.", text)


def too_long(body: str) -> bool:
    """True when code or output is better attached as a file than shown inline."""
    return len(body) > INLINE_CODE_CHARS or body.count("\n") >= INLINE_CODE_LINES
