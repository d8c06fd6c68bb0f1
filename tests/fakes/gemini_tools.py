"""Tool-shaped pieces of the fake Gemini API (tests/fakes/gemini.py): replies with parts.

`Reply` scripts one answer: text chunks and `types.Part` chunks (executable code, code
results, inline images), each streamed as its own SSE chunk, plus the metadata Gemini sends
on the last chunk (grounding, URL context, extra usage counts). Response pieces are built
from the SDK's own types (`google.genai.types`) and serialised with `wire`, which gives the
REST shape the real API sends (camelCase, enum names, standard base64).

Also here: `grounded` (a Google Search grounded reply), `png`/`png_color` (a tiny PNG
encoder and a first-pixel decoder), `find_urls`, and `tool_reply`, the fake's automatic
answer to a request carrying tools or asking for IMAGE output.
"""

from __future__ import annotations

import asyncio
import base64
import enum
import hashlib
import re
import struct
import zlib
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from html import escape
from typing import Any
from urllib.parse import quote_plus, urlparse

import pydantic
from google.genai import types

# -- replies -------------------------------------------------------------------------------


@dataclass
class Reply:
    """A scripted answer: chunks sent `delay` seconds apart.

    A `str` chunk is a text part; a `types.Part` chunk (executable code, a code result, an
    inline image...) is sent as it is. Each chunk is one SSE event whose candidate holds that
    one part. `grounding`, `url_context` and `usage_extra` (merged into usageMetadata, e.g.
    {"toolUsePromptTokenCount": 120}) go on the last chunk, as Gemini sends them.
    """

    chunks: list[str | types.Part]
    delay: float = 0.0
    finish_reason: str = "STOP"
    first_delay: float = 0.0
    # A stalled stream: after `hold_after` chunks, wait until `hold` is set (a test sets it,
    # e.g. once the client was killed); a client gone by then gets nothing more.
    hold_after: int | None = None
    hold: asyncio.Event | None = None
    grounding: types.GroundingMetadata | None = None
    url_context: types.UrlContextMetadata | None = None
    usage_extra: dict[str, int] = field(default_factory=dict)

    def text(self) -> str:
        """The text chunks joined."""
        return "".join(c for c in self.chunks if isinstance(c, str))

    def image_count(self) -> int:
        """How many inline image parts the reply holds."""
        return sum(
            1
            for c in self.chunks
            if isinstance(c, types.Part)
            and c.inline_data is not None
            and (c.inline_data.mime_type or "").startswith("image/")
        )


def words(text: str, size: int = 12) -> list[str]:
    """`text` cut into `size`-character chunks (at least one chunk)."""
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


# -- the wire shape ------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        # The API sends bytes as standard base64 (proto3 JSON); pydantic's
        # ser_json_bytes='base64' would give the URL-safe alphabet.
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def wire(obj: pydantic.BaseModel) -> dict[str, Any]:
    """An SDK object in the REST shape: camelCase keys, no nulls, enum names, base64 bytes."""
    return _jsonable(obj.model_dump(mode="python", by_alias=True, exclude_none=True))


def part_json(chunk: str | types.Part) -> dict[str, Any]:
    """One chunk as a REST Part."""
    return {"text": chunk} if isinstance(chunk, str) else wire(chunk)


def merged_parts(chunks: Sequence[str | types.Part]) -> list[dict[str, Any]]:
    """All chunks as one candidate's parts (non-streaming): adjacent text is one part."""
    out: list[dict[str, Any]] = []
    for c in chunks:
        if isinstance(c, str) and out and set(out[-1]) == {"text"}:
            out[-1]["text"] += c
        else:
            out.append(part_json(c))
    return out


def grounding_json(g: types.GroundingMetadata) -> dict[str, Any]:
    """GroundingMetadata on the wire. proto3 JSON leaves out zero ints, so a segment at the
    start of the first part has no startIndex and no partIndex (the SDK then reads None)."""
    body = wire(g)
    for s in body.get("groundingSupports", []):
        seg = s.get("segment", {})
        for key in ("startIndex", "partIndex"):
            if seg.get(key) == 0:
                del seg[key]
    return body


def candidate_metadata(reply: Reply) -> dict[str, Any]:
    """The candidate fields the last chunk carries besides content and finishReason."""
    out: dict[str, Any] = {}
    if reply.grounding is not None:
        out["groundingMetadata"] = grounding_json(reply.grounding)
    if reply.url_context is not None:
        out["urlContextMetadata"] = wire(reply.url_context)
    return out


IMAGE_OUTPUT_TOKENS = 1290  # what Gemini bills for one generated 1024x1024 image


def reply_usage(base: dict[str, int], reply: Reply) -> dict[str, int]:
    """usageMetadata for `reply`: `base` plus image output tokens, then `usage_extra`.

    Tool-use prompt tokens and thinking tokens count in totalTokenCount, as in Gemini
    (cachedContentTokenCount is part of promptTokenCount, so it does not).
    """
    usage = dict(base)
    images = reply.image_count() * IMAGE_OUTPUT_TOKENS
    usage["candidatesTokenCount"] = usage.get("candidatesTokenCount", 0) + images
    usage["totalTokenCount"] = usage.get("totalTokenCount", 0) + images
    extra = reply.usage_extra
    if "totalTokenCount" not in extra:
        for key in ("toolUsePromptTokenCount", "thoughtsTokenCount"):
            usage["totalTokenCount"] += extra.get(key, 0)
    usage.update(extra)
    return usage


# -- request side: tools -------------------------------------------------------------------

# The Tool fields google-genai 3.4.0 sends to the Gemini Developer API (_Tool_to_mldev).
KNOWN_TOOLS = frozenset(
    {
        "functionDeclarations",
        "googleSearch",
        "googleSearchRetrieval",
        "urlContext",
        "codeExecution",
        "computerUse",
        "fileSearch",
        "googleMaps",
        "mcpServers",
    }
)


def camel(name: str) -> str:
    """`url_context` -> `urlContext` (proto JSON accepts either spelling)."""
    return re.sub(r"_([a-z0-9])", lambda m: m.group(1).upper(), name)


def unknown_tool(tools: Any) -> tuple[str, str] | None:
    """(field path, Gemini's message) for the first Tool field Gemini would not parse."""
    if not isinstance(tools, list):
        return None
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict):
            continue
        for key in tool:
            if camel(key) not in KNOWN_TOOLS:
                where = f"tools[{i}]"
                return where, (
                    f'Invalid JSON payload received. Unknown name "{key}" at '
                    f"'{where}': Cannot find field."
                )
    return None


_URL = re.compile(r"https?://[^\s<>\"'`|]+", re.IGNORECASE)


def find_urls(text: str) -> list[str]:
    """http(s) URLs in `text`, in order, without repeats or trailing punctuation."""
    out: list[str] = []
    for m in _URL.finditer(text):
        url = m.group(0).rstrip(".,;:!?)]}")
        if url not in out:
            out.append(url)
    return out


# -- grounding -----------------------------------------------------------------------------

REDIRECT_PREFIX = "https://vertexaisearch.cloud.google.com/grounding-api-redirect/"


def redirect_uri(uri: str) -> str:
    """A grounding redirect link for `uri`, like the opaque ones Gemini sends (stable)."""
    digest = hashlib.sha256(uri.encode()).digest() + hashlib.sha256(b"r" + uri.encode()).digest()
    return REDIRECT_PREFIX + "AUZIYQ" + base64.urlsafe_b64encode(digest).decode().rstrip("=")


def domain(uri: str) -> str:
    """`https://www.example.com/x` -> `example.com`."""
    return (urlparse(uri).hostname or "").removeprefix("www.")


_ENTRY_STYLE = (
    "<style>\n.container {\n  align-items: center;\n  border-radius: 8px;\n  display: flex;\n"
    "  font-family: Google Sans, Roboto, sans-serif;\n  font-size: 14px;\n  line-height: 20px;\n"
    "  padding: 8px 12px;\n}\n.chip {\n  display: inline-block;\n  border: solid 1px;\n"
    "  border-radius: 16px;\n  min-width: 14px;\n  padding: 5px 16px;\n  text-align: center;\n"
    "  user-select: none;\n  margin: 0 8px;\n  -webkit-tap-highlight-color: transparent;\n}\n"
    ".carousel {\n  overflow: auto;\n  scrollbar-width: none;\n  white-space: nowrap;\n"
    "  margin-right: -12px;\n}\n.headline {\n  display: flex;\n  margin-right: 4px;\n}\n"
    "@media (prefers-color-scheme: light) {\n  .container {\n    background-color: #fafafa;\n"
    "    box-shadow: 0 0 0 1px #0000000f;\n  }\n  .chip {\n    background-color: #ffffff;\n"
    "    border-color: #d2d2d2;\n    color: #5e5e5e;\n    text-decoration: none;\n  }\n}\n"
    "@media (prefers-color-scheme: dark) {\n  .container {\n    background-color: #1f1f1f;\n"
    "    box-shadow: 0 0 0 1px #ffffff26;\n  }\n  .chip {\n    background-color: #2c2c2c;\n"
    "    border-color: #3c4043;\n    color: #fff;\n    text-decoration: none;\n  }\n}\n</style>\n"
)
_ENTRY_LOGO = (
    '<svg class="logo-light" width="18" height="18" viewBox="9 9 35 35" fill="none" '
    'xmlns="http://www.w3.org/2000/svg"><path fill-rule="evenodd" clip-rule="evenodd" '
    'd="M42.8622 27.0064C42.8622 25.7839 42.7525 24.6084 42.5487 23.4799H26.3109V30.1568H35.5'
    "897C35.1821 32.3041 33.9596 34.1222 32.1258 35.3448V39.6864H37.7213C40.9814 36.677 42.862"
    '2 32.2571 42.8622 27.0064V27.0064Z" fill="#4285F4"/></svg>'
)


def search_entry_point(queries: Sequence[str]) -> types.SearchEntryPoint:
    """The "Search suggestions" chip HTML Gemini returns with a grounded answer."""
    chips = "\n".join(
        f'    <a class="chip" href="https://www.google.com/search?q={quote_plus(q)}'
        f'&amp;client=app-vertex-grounding&amp;safesearch=active">{escape(q)}</a>'
        for q in queries
    )
    html = (
        f'{_ENTRY_STYLE}<div class="container">\n  <div class="headline">\n    {_ENTRY_LOGO}\n'
        f'  </div>\n  <div class="carousel">\n{chips}\n  </div>\n</div>\n'
    )
    return types.SearchEntryPoint(rendered_content=html)


def grounding_metadata(
    text: str,
    *,
    sources: Sequence[tuple[str, str, str]],
    queries: Sequence[str],
    redirect: bool = False,
) -> types.GroundingMetadata:
    """Grounding for `text`: one web chunk and one support per (title, uri, supported_text).

    Segment offsets are UTF-8 byte offsets into the text part, as Gemini documents. With
    `redirect` the chunk uri is a grounding redirect link and its title the site's domain,
    as the real API sends them (the Gemini API never fills GroundingChunkWeb.domain).
    """
    chunks: list[types.GroundingChunk] = []
    supports: list[types.GroundingSupport] = []
    for i, (title, uri, supported) in enumerate(sources):
        at = text.find(supported)
        if at < 0 or not supported:
            raise ValueError(f"supported text {supported!r} is not in the reply text")
        start = len(text[:at].encode())
        web = (
            types.GroundingChunkWeb(uri=redirect_uri(uri), title=domain(uri))
            if redirect
            else types.GroundingChunkWeb(uri=uri, title=title)
        )
        chunks.append(types.GroundingChunk(web=web))
        supports.append(
            types.GroundingSupport(
                segment=types.Segment(
                    start_index=start,
                    end_index=start + len(supported.encode()),
                    part_index=0,
                    text=supported,
                ),
                grounding_chunk_indices=[i],
            )
        )
    return types.GroundingMetadata(
        grounding_chunks=chunks,
        grounding_supports=supports,
        web_search_queries=list(queries),
        search_entry_point=search_entry_point(queries),
    )


def grounded(
    text: str,
    *,
    sources: list[tuple[str, str, str]],
    queries: list[str],
    chunk_size: int = 12,
    delay: float = 0.0,
    redirect: bool = False,
) -> Reply:
    """A Google Search grounded reply: `text` streamed in chunks, grounding on the last one.

    Each source is (title, uri, supported_text); supported_text must occur in `text`.
    """
    return Reply(
        words(text, chunk_size),
        delay=delay,
        grounding=grounding_metadata(text, sources=sources, queries=queries, redirect=redirect),
    )


def url_context_metadata(
    urls: Sequence[str], *, unreadable: Collection[str] = (), unsafe: Collection[str] = ()
) -> types.UrlContextMetadata:
    """One url_metadata entry per URL: SUCCESS, or ERROR / UNSAFE for the listed ones."""
    status = types.UrlRetrievalStatus

    def retrieval(url: str) -> types.UrlRetrievalStatus:
        if url in unsafe:
            return status.URL_RETRIEVAL_STATUS_UNSAFE
        if url in unreadable:
            return status.URL_RETRIEVAL_STATUS_ERROR
        return status.URL_RETRIEVAL_STATUS_SUCCESS

    return types.UrlContextMetadata(
        url_metadata=[
            types.UrlMetadata(retrieved_url=u, url_retrieval_status=retrieval(u)) for u in urls
        ]
    )


# -- PNG -----------------------------------------------------------------------------------

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (255, 0, 0),
    "green": (0, 255, 0),
    "blue": (0, 0, 255),
}


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def _encode_png(width: int, height: int, rows: Sequence[bytes]) -> bytes:
    """An 8-bit RGB PNG from `height` rows of `3 * width` bytes (filter type 0)."""
    if width < 1 or height < 1 or len(rows) != height or any(len(r) != 3 * width for r in rows):
        raise ValueError("rows must be height rows of 3 * width bytes")
    raw = b"".join(b"\x00" + r for r in rows)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        _PNG_SIGNATURE
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(raw))
        + _png_chunk(b"IEND", b"")
    )


def png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A valid `width` x `height` PNG filled with one colour."""
    return _encode_png(width, height, [bytes(rgb) * width] * height)


def chart_png(values: Sequence[int] = (3, 5, 2, 6, 4), width: int = 64, height: int = 48) -> bytes:
    """A small bar chart (blue bars on white), like the plot code execution returns."""
    white, bar = bytes((255, 255, 255)), bytes((66, 133, 244))
    top = max(values)
    slot = width // len(values)
    rows = []
    for y in range(height):
        level = (height - 1 - y) / (height - 1) * top  # the value this row stands for
        row = bytearray()
        for x in range(width):
            i = x // slot
            on = i < len(values) and 1 <= x % slot < slot - 1 and values[i] > level
            row += bar if on else white
        rows.append(bytes(row))
    return _encode_png(width, height, rows)


def png_color(data: bytes) -> tuple[int, int, int]:
    """The colour of the top-left pixel of an 8-bit RGB or RGBA PNG."""
    if not data.startswith(_PNG_SIGNATURE):
        raise ValueError("not a PNG")
    pos, idat, header = len(_PNG_SIGNATURE), b"", b""
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        tag, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if tag == b"IHDR":
            header = body
        elif tag == b"IDAT":
            idat += body
        elif tag == b"IEND":
            break
        pos += 12 + length
    if len(header) != 13 or header[8] != 8 or header[9] not in (2, 6):
        raise ValueError("only 8-bit RGB/RGBA PNGs are supported")
    raw = zlib.decompress(idat)
    # raw[0] is the first row's filter type; for the first pixel of the first row every
    # filter predicts 0, so the bytes after it are the pixel itself.
    return raw[1], raw[2], raw[3]


# -- automatic answers ---------------------------------------------------------------------

# toolUsePromptTokenCount the fake reports per tool use (positive, deterministic).
SEARCH_TOKENS, URL_TOKENS, CODE_TOKENS = 96, 420, 180

_CODE = (
    "import matplotlib.pyplot as plt\n\n"
    "values = [3, 5, 2, 6, 4]\n"
    "plt.bar(range(len(values)), values)\n"
    'plt.title("Values")\n'
    "plt.show()\n"
    'print(f"plotted {len(values)} values, max {max(values)}")\n'
)


def code_execution_parts() -> list[str | types.Part]:
    """What Gemini streams for a plotting request with code execution on."""
    return [
        "Let me plot that with Python.\n",
        types.Part(
            executable_code=types.ExecutableCode(language=types.Language.PYTHON, code=_CODE)
        ),
        types.Part(
            code_execution_result=types.CodeExecutionResult(
                outcome=types.Outcome.OUTCOME_OK, output="plotted 5 values, max 6\n"
            )
        ),
        types.Part(inline_data=types.Blob(mime_type="image/png", data=chart_png())),
        "The chart shows five bars; the fourth is the highest.",
    ]


def colour_for(text: str) -> str:
    """blue if the text says blue, else green if it says green, else red."""
    for name in ("blue", "green"):
        if re.search(rf"\b{name}\b", text, re.IGNORECASE):
            return name
    return "red"


# Gemini 3 image models sign each image they make and want the signature back with it.
IMAGE_SIGNATURE = b"fake-image-thought-signature"


def tool_reply(
    echo: str,
    *,
    user_text: str,
    tools: Sequence[str],
    modalities: Sequence[str],
    unreadable: Collection[str] = (),
    unsafe: Collection[str] = (),
    redirect: bool = True,
    delay: float = 0.0,
) -> Reply:
    """The fake's answer when nothing is scripted. `echo` is the plain answer text.

    IMAGE output: a short text and a 64x64 PNG (blue/green/red after the user's words).
    Otherwise codeExecution with "plot"/"chart"/"run" in the user's text: text, code, its
    result, a chart PNG, text. Otherwise googleSearch: `echo` plus one sentence, grounded
    on two sites. urlContext adds url_context_metadata for the URLs in the user's text.
    Any tool used adds toolUsePromptTokenCount.
    """
    tool_tokens = 0
    reply: Reply
    if "IMAGE" in modalities:
        colour = colour_for(user_text)
        reply = Reply(
            [
                f"Here is a {colour} image.",
                types.Part(
                    inline_data=types.Blob(
                        mime_type="image/png", data=png(64, 64, COLOURS[colour])
                    ),
                    thought_signature=IMAGE_SIGNATURE,
                ),
            ],
            delay=delay,
        )
    elif "codeExecution" in tools and re.search(r"\b(plot|chart|run)", user_text, re.I):
        reply = Reply(code_execution_parts(), delay=delay)
        tool_tokens += CODE_TOKENS
    elif "googleSearch" in tools:
        second = "Two independent sources confirm this."
        text = f"{echo} {second}"
        slug = quote_plus(user_text.strip()[:60] or "search")
        sources = [
            ("Wikipedia", f"https://en.wikipedia.org/wiki/{slug}", echo),
            ("Britannica", f"https://www.britannica.com/topic/{slug}", second),
        ]
        reply = grounded(text, sources=sources, queries=[user_text], delay=delay, redirect=redirect)
        tool_tokens += SEARCH_TOKENS
    else:
        reply = Reply(words(echo), delay=delay)
    urls = find_urls(user_text) if "urlContext" in tools else []
    if urls:
        reply.url_context = url_context_metadata(urls, unreadable=unreadable, unsafe=unsafe)
        tool_tokens += URL_TOKENS * len(urls)
    if tool_tokens:
        reply.usage_extra["toolUsePromptTokenCount"] = tool_tokens
    return reply
