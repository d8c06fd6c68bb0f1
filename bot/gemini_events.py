"""Gemini response chunks to our model events (bot/model_events.py).

Reads the SDK's response objects by attribute only, so bot/gemini.py stays the one module
that imports google.genai; every Gemini name (finish reasons, URL statuses, outcomes,
byte offsets) is translated here and goes no further.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from bot.model_events import (
    CodeOutput,
    CodeRun,
    FinishReason,
    GeneratedFile,
    LinksRead,
    ModelEvent,
    TextDelta,
    ToolActivity,
)
from bot.types import CodeOutcome, Grounding, LinkRead, LinkStatus, Source, Support, Usage

FINISH: dict[str, FinishReason] = {
    "STOP": "stop",
    "MAX_TOKENS": "max_tokens",
    "SAFETY": "safety",
    "RECITATION": "recitation",
    "IMAGE_RECITATION": "recitation",
    "BLOCKLIST": "blocked",
    "PROHIBITED_CONTENT": "blocked",
    "SPII": "blocked",
    "IMAGE_SAFETY": "safety",
    "IMAGE_PROHIBITED_CONTENT": "blocked",
    "MODEL_ARMOR": "blocked",
    "MALFORMED_FUNCTION_CALL": "malformed",
    "UNEXPECTED_TOOL_CALL": "malformed",
    "TOO_MANY_TOOL_CALLS": "malformed",
    "MALFORMED_RESPONSE": "malformed",
    "MISSING_THOUGHT_SIGNATURE": "malformed",
}
LINK_STATUS: dict[str, LinkStatus] = {
    "URL_RETRIEVAL_STATUS_SUCCESS": "read",
    "URL_RETRIEVAL_STATUS_PAYWALL": "paywalled",
    "URL_RETRIEVAL_STATUS_UNSAFE": "unsafe",
}
OUTCOME: dict[str, CodeOutcome] = {
    "OUTCOME_OK": "ok",
    "OUTCOME_DEADLINE_EXCEEDED": "timeout",
}


def enum_name(value: Any) -> str:
    """An SDK enum (or its string) as its upper-case name."""
    return str(getattr(value, "value", value)).upper()


def finish_reason(value: Any) -> FinishReason:
    """Gemini's finish reason in our words (None and unknown ones: "other")."""
    return FINISH.get(enum_name(value), "other") if value is not None else "stop"


def usage(um: Any) -> Usage:
    """UsageMetadata as Usage (thinking tokens are billed as output)."""
    return Usage(
        prompt_tokens=um.prompt_token_count or 0,
        output_tokens=(um.candidates_token_count or 0) + (um.thoughts_token_count or 0),
        tool_tokens=um.tool_use_prompt_token_count or 0,
        cached_tokens=um.cached_content_token_count or 0,
    )


class ChunkReader:
    """Reads one streamed reply chunk by chunk; keeps what only makes sense at the end."""

    def __init__(self) -> None:
        self.text = ""  # the answer's text so far (grounding offsets refer to it)
        self.started = False  # something visible was produced: no retry after this
        self.grounding: Any = None
        self.url_context: Any = None
        self._code_ran = False

    def parts(self, candidate: Any) -> Iterator[ModelEvent]:
        """The events of one candidate's parts; remembers its metadata."""
        if getattr(candidate, "grounding_metadata", None) is not None:
            self.grounding = _merge(self.grounding, candidate.grounding_metadata)
        if getattr(candidate, "url_context_metadata", None) is not None:
            self.url_context = candidate.url_context_metadata
        content = candidate.content
        for part in (content.parts if content else None) or []:
            if part.thought:
                continue
            if part.text:
                self.started = True
                self.text += part.text
                yield TextDelta(part.text)
            elif part.executable_code is not None:
                self.started = self._code_ran = True
                code = part.executable_code
                lang = enum_name(code.language or "PYTHON").replace("LANGUAGE_UNSPECIFIED", "")
                yield CodeRun(code.code or "", (lang or "python").lower())
                yield ToolActivity("running_code")
            elif part.code_execution_result is not None:
                self.started = True
                res = part.code_execution_result
                yield CodeOutput(res.output or "", OUTCOME.get(enum_name(res.outcome), "failed"))
            elif part.inline_data is not None and part.inline_data.data:
                self.started = True
                blob = part.inline_data
                yield GeneratedFile(
                    blob.mime_type or "application/octet-stream",
                    bytes(blob.data),
                    origin="code" if self._code_ran else "image",
                    signature=part.thought_signature or None,
                )

    def closing(self) -> Iterator[ModelEvent]:
        """Sources and links read, once the text is complete."""
        if self.grounding is not None:
            g = grounding(self.grounding, self.text)
            if g.sources or g.queries:
                yield g
        if self.url_context is not None:
            links = tuple(
                LinkRead(
                    m.retrieved_url, LINK_STATUS.get(enum_name(m.url_retrieval_status), "failed")
                )
                for m in self.url_context.url_metadata or []
                if m.retrieved_url
            )
            if links:
                yield LinksRead(links)


def _merge(old: Any, new: Any) -> Any:
    """Grounding metadata of a later chunk, keeping fields only an earlier one carried
    (searches may come before the sources)."""
    if old is None:
        return new
    for name in ("grounding_chunks", "grounding_supports", "web_search_queries"):
        if not getattr(new, name, None) and getattr(old, name, None):
            try:
                setattr(new, name, getattr(old, name))
            except (AttributeError, TypeError, ValueError):  # a frozen object: keep the newer
                return new
    return new


def grounding(meta: Any, text: str) -> Grounding:
    """GroundingMetadata as Grounding, with spans as character offsets into `text`.

    Gemini gives a supported segment's start and end in UTF-8 bytes; they become
    character offsets here. When they do not land on the segment's own text (offsets of
    another part, or drift), the segment text is searched for instead, and a span that
    cannot be found is dropped rather than put in the wrong place.
    """
    sources: list[Source] = []
    for chunk in meta.grounding_chunks or []:
        web = chunk.web
        if web is None or not web.uri:
            continue
        title = web.title or ""
        domain = web.domain or _domain(web.uri, title)
        sources.append(Source(title or domain or web.uri, web.uri, domain))
    raw = text.encode("utf-8")
    supports: list[Support] = []
    for s in meta.grounding_supports or []:
        idx = tuple(i for i in (s.grounding_chunk_indices or []) if 0 <= i < len(sources))
        seg = s.segment
        if not idx or seg is None:
            continue
        span = _span(raw, text, seg.start_index or 0, seg.end_index, seg.text or "")
        if span is not None:
            supports.append(Support(span[0], span[1], idx, seg.text or ""))
    queries = tuple(q for q in meta.web_search_queries or [] if q)
    return Grounding(tuple(sources), tuple(supports), queries)


def _span(
    raw: bytes, text: str, start: int, end: int | None, quoted: str
) -> tuple[int, int] | None:
    if end is not None and 0 <= start < end <= len(raw):
        try:
            a = len(raw[:start].decode("utf-8"))
            b = a + len(raw[start:end].decode("utf-8"))
        except UnicodeDecodeError:
            a = b = -1
        if a >= 0 and (not quoted or text[a:b] == quoted):
            return a, b
    if quoted and (at := text.find(quoted)) >= 0:
        return at, at + len(quoted)
    return None


def _domain(uri: str, title: str) -> str:
    # Search grounding links are Google redirect URLs whose title is the site's domain.
    host = urlsplit(uri).hostname or ""
    if host.endswith("vertexaisearch.cloud.google.com") and "." in title and " " not in title:
        return title
    return host.removeprefix("www.")
