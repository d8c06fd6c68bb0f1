"""Pure logic of grounded, tool-using replies: offsets, markers, footers, stored parts."""

from __future__ import annotations

import json
from types import SimpleNamespace as NS

import pytest

from bot.engine.compose import ReplyDraft
from bot.gemini_events import ChunkReader, finish_reason, grounding
from bot.markup import MARKDOWN, PLAIN, Markup, footnotes, links_note, numbering
from bot.model_events import CodeOutput, CodeRun, GeneratedFile, TextDelta
from bot.types import (
    CodeOutputPart,
    CodePart,
    FilePart,
    Grounding,
    GroundingPart,
    LinkRead,
    LinksPart,
    Source,
    Support,
    TextPart,
)
from storage.codec import UnknownPartKind, dump_parts, load_parts


def _meta(text: str, spans: list[tuple[str, list[int]]], sources: list[tuple[str, str]]) -> NS:
    raw = text.encode()
    supports = []
    for quoted, idx in spans:
        start = raw.index(quoted.encode())
        supports.append(
            NS(
                segment=NS(start_index=start, end_index=start + len(quoted.encode()), text=quoted),
                grounding_chunk_indices=idx,
            )
        )
    chunks = [NS(web=NS(uri=u, title=t, domain=None)) for t, u in sources]
    return NS(grounding_chunks=chunks, grounding_supports=supports, web_search_queries=["q one"])


def test_byte_offsets_become_character_offsets() -> None:
    text = "Zürich café: ünïcode first. Release 3.2 shipped on May 5."
    meta = _meta(
        text,
        [("Release 3.2 shipped on May 5.", [0])],
        [("Release notes", "https://example.com/r")],
    )
    g = grounding(meta, text)
    (s,) = g.supports
    assert text[s.start : s.end] == "Release 3.2 shipped on May 5."
    assert g.sources[0] == Source("Release notes", "https://example.com/r", "example.com")
    assert g.queries == ("q one",)


def test_span_is_found_by_its_text_when_offsets_drift() -> None:
    text = "Alpha. Beta gamma."
    meta = NS(
        grounding_chunks=[NS(web=NS(uri="https://b.org/x", title="B", domain=None))],
        grounding_supports=[
            NS(
                segment=NS(start_index=0, end_index=3, text="Beta gamma."),
                grounding_chunk_indices=[0],
            )
        ],
        web_search_queries=None,
    )
    (s,) = grounding(meta, text).supports
    assert text[s.start : s.end] == "Beta gamma."


def test_redirect_links_take_the_domain_from_the_title() -> None:
    meta = NS(
        grounding_chunks=[
            NS(
                web=NS(
                    uri="https://vertexaisearch.cloud.google.com/grounding-api-redirect/AbC",
                    title="python.org",
                    domain=None,
                )
            )
        ],
        grounding_supports=[],
        web_search_queries=[],
    )
    assert grounding(meta, "x").sources[0].domain == "python.org"


def test_finish_reasons_are_ours() -> None:
    assert finish_reason("STOP") == "stop"
    assert finish_reason(NS(value="MAX_TOKENS")) == "max_tokens"
    assert finish_reason("PROHIBITED_CONTENT") == "blocked"
    assert finish_reason("SOMETHING_NEW") == "other"


def test_chunk_reader_maps_code_images_and_links() -> None:
    reader = ChunkReader()

    def part(**kw: object) -> NS:
        base = dict(
            thought=None, text=None, executable_code=None, code_execution_result=None,
            inline_data=None, thought_signature=None,
        )  # fmt: skip
        return NS(**{**base, **kw})

    ok, err = "URL_RETRIEVAL_STATUS_SUCCESS", "URL_RETRIEVAL_STATUS_ERROR"
    cand = NS(
        content=NS(
            parts=[
                part(text="Plot:"),
                part(executable_code=NS(code="print(1)", language="PYTHON")),
                part(code_execution_result=NS(outcome="OUTCOME_OK", output="1\n")),
                part(
                    inline_data=NS(mime_type="image/png", data=b"\x89PNG"), thought_signature=b"s"
                ),
            ]
        ),
        grounding_metadata=None,
        url_context_metadata=NS(
            url_metadata=[
                NS(retrieved_url="https://ok.test", url_retrieval_status=ok),
                NS(retrieved_url="https://bad.test", url_retrieval_status=err),
            ]
        ),
    )
    events = list(reader.parts(cand))
    assert events[0] == TextDelta("Plot:")
    assert CodeRun("print(1)", "python") in events
    assert CodeOutput("1\n", "ok") in events
    assert GeneratedFile("image/png", b"\x89PNG", origin="code", signature=b"s") in events
    (links,) = list(reader.closing())
    assert [(link.url, link.status) for link in links.links] == [
        ("https://ok.test", "read"),
        ("https://bad.test", "failed"),
    ]


def _grounded() -> Grounding:
    return Grounding(
        sources=(
            Source("Docs", "https://docs.example.com/a", "docs.example.com"),
            Source("Blog post", "https://blog.test/p", "blog.test"),
            Source("Unused", "https://u.test/", "u.test"),
        ),
        supports=(Support(0, 12, (1,)), Support(13, 24, (0, 1))),
        queries=("what changed",),
    )


def test_markers_follow_citation_order_and_footer_lists_every_source() -> None:
    draft = ReplyDraft(MARKDOWN)
    draft.add_text("First claim.")
    draft.add_text(" Second one.")
    draft.grounding = _grounded()
    body, footer = draft.final()
    assert body == "First claim.[1] Second one.[1][2]"
    assert numbering(draft.grounding) == [1, 0, 2]
    assert "[1] [Blog post](https://blog.test/p) (blog.test)" in footer
    assert "[2] [Docs](https://docs.example.com/a)" in footer
    assert "[3] [Unused](https://u.test/)" in footer
    assert "Searched: [what changed](https://www.google.com/search?q=what+changed)" in footer


def test_discord_links_are_masked_without_embeds_and_console_links_plain() -> None:
    g = _grounded()
    angle = footnotes(g, numbering(g), Markup("angle"))
    assert "[Blog post](<https://blog.test/p>)" in angle
    assert "(<https://www.google.com/search?q=what+changed>)" in angle
    plain = footnotes(g, numbering(g), PLAIN)
    assert "Blog post <https://blog.test/p>" in plain and "](" not in plain


def test_unreadable_links_are_named() -> None:
    note = links_note(
        [LinkRead("https://ok.test", "read"), LinkRead("https://x.test", "failed")], MARKDOWN
    )
    assert note == "_This link could not be used: https://x.test (could not be read)._"
    assert links_note([LinkRead("https://ok.test", "read")], MARKDOWN) == ""


def test_code_blocks_inline_and_long_code_attached() -> None:
    draft = ReplyDraft(MARKDOWN)
    draft.add_text("Let me compute.")
    shown = draft.add_code(CodeRun("print(6 * 7)"))
    assert shown == "\n\n```python\nprint(6 * 7)\n```\n\n"
    assert draft.add_output(CodeOutput("42\n")) == "Output:\n```\n42\n```\n\n"
    long_code = "\n".join(f"x{i} = {i}" for i in range(200))
    note = draft.add_code(CodeRun(long_code))
    assert "code-1.py" in note and draft.files[0].name == "code-1.py"
    assert draft.files[0].data == long_code.encode()
    assert [type(p) for p in draft.parts()] == [TextPart, CodePart, CodeOutputPart, CodePart]


def test_parts_round_trip_and_unknown_kinds_fail_loudly() -> None:
    parts = (
        TextPart("hi"),
        FilePart("ab" * 32, "image/png", "image-1.png", 10, b"\x00sig\xff"),
        FilePart("cd" * 32, "text/plain", "notes.txt", 3),
        CodePart("print(1)", "python"),
        CodeOutputPart("1", "failed"),
        GroundingPart(_grounded()),
        LinksPart((LinkRead("https://x.test", "unsafe"),)),
    )
    assert load_parts(dump_parts(parts)) == parts
    with pytest.raises(UnknownPartKind):
        load_parts(json.dumps([{"t": "hologram", "x": 1}]))
    with pytest.raises(UnknownPartKind):
        load_parts(json.dumps([{"sha256": "x", "mime": "a/b", "name": "n", "size": 1}]))


def test_a_footer_of_long_redirect_links_fits_one_discord_message() -> None:
    redirect = "https://vertexaisearch.cloud.google.com/grounding-api-redirect/" + "A" * 230
    g = Grounding(
        sources=tuple(
            Source(f"site{i}.example.org", f"{redirect}{i}", f"site{i}.example.org")
            for i in range(12)
        ),
        supports=tuple(Support(i, i + 1, (i,)) for i in range(12)),
        queries=("first query", "second query"),
    )
    angle = Markup("angle")
    full = footnotes(g, numbering(g), angle)
    assert len(full) > 2000
    fitted = footnotes(g, numbering(g), angle, 1990)
    assert len(fitted) <= 1990 and fitted.startswith("Sources:\n[1] ")
    assert "more not shown: too long here" in fitted
    kept = fitted.count("](<https://vertexaisearch")
    assert 4 <= kept < 12  # as many as fit, in order
    assert f"[{kept}] " in fitted and f"[{kept + 1}] " not in fitted


def test_grounding_fields_from_earlier_chunks_are_kept() -> None:
    reader = ChunkReader()
    text_part = NS(thought=None, text="Alpha beta.", executable_code=None,
                   code_execution_result=None, inline_data=None)  # fmt: skip
    first = NS(
        content=NS(parts=[text_part]),
        grounding_metadata=NS(grounding_chunks=None, grounding_supports=None,
                              web_search_queries=["alpha"]),
        url_context_metadata=None,
    )  # fmt: skip
    last = NS(
        content=None,
        grounding_metadata=NS(
            grounding_chunks=[NS(web=NS(uri="https://a.test/", title="A", domain=None))],
            grounding_supports=[],
            web_search_queries=None,
        ),
        url_context_metadata=None,
    )
    list(reader.parts(first))
    list(reader.parts(last))
    (g,) = list(reader.closing())
    assert g.queries == ("alpha",) and g.sources[0].uri == "https://a.test/"


async def test_generated_images_go_back_inline_within_one_requests_budget() -> None:
    from collections import Counter
    from datetime import UTC, datetime, timedelta

    from bot.engine.content import ContentBuilder
    from bot.ports import FileData, InlineData
    from bot.types import Author, NewTurn, RemoteFile, ThreadKey
    from storage.memory import MemoryStore

    class Uploads:
        def __init__(self) -> None:
            self.count = 0

        async def upload(self, *, data: bytes, mime_type: str, display_name: str) -> RemoteFile:
            self.count += 1
            expires = datetime.now(UTC) + timedelta(hours=48)
            return RemoteFile(f"https://files.test/{self.count}", mime_type, expires)

    store = MemoryStore(max_blob_bytes=64 * 1024 * 1024)
    model = Uploads()
    builder = ContentBuilder(
        store=store,
        model=model,  # type: ignore[arg-type]
        inline_max_bytes=1024 * 1024,
        max_attachment_bytes=64 * 1024 * 1024,
        counters=Counter(),
    )
    conv = await store.get_or_create_conversation(ThreadKey("console", "l", "c", "t"))
    turns = []
    for i in range(3):
        data = bytes([i]) * (7 * 1024 * 1024)
        sha = await store.put_blob(data, mime_type="image/png")
        part = FilePart(sha, "image/png", f"image-{i}.png", len(data), f"sig{i}".encode())
        turns.append(
            await store.append_turn(conv.id, NewTurn("user", (TextPart("draw"),), Author("u", "U")))
        )
        turns.append(await store.append_turn(conv.id, NewTurn("model", (part,))))
    contents = await builder.contents(turns)
    files = [p for c in contents for p in c.parts if not isinstance(p, str)]
    # The newest image inline (7 MB of the 12 MB budget); the two older ones uploaded.
    assert [type(p) for p in files] == [FileData, FileData, InlineData]
    assert [p.signature for p in files] == [b"sig0", b"sig1", b"sig2"]
    assert model.count == 2


def test_defang_also_catches_urls_glued_to_words_or_italics() -> None:
    from bot.markup import defang

    for text in ("_https://evil.test/login_", "xhttps://evil.test", "__HTTPS://evil.test__"):
        assert "://" not in defang(text).replace(":\u200b//", ""), text
    assert defang("_www.evil.test_") == "_www\u200b.evil.test_"
    assert defang("WWW.evil.test") == "WWW\u200b.evil.test"


def test_domains_go_before_sources_and_a_links_note_is_bounded() -> None:
    g = Grounding(
        sources=tuple(
            Source(f"Title number {i}", f"https://s{i}.example.org/{'p' * 60}", f"s{i}.example.org")
            for i in range(12)
        ),
        queries=("q",),
    )
    full = footnotes(g, numbering(g), MARKDOWN)
    without_domains = full.replace(" (s", "\x00").split("\x00")[0]  # any domain suffix gone
    assert without_domains != full
    fitted = footnotes(g, numbering(g), MARKDOWN, len(full) - 20)
    assert "more not shown" not in fitted and "(s0.example.org)" not in fitted
    assert fitted.count("](https://s") == 12
    bad = [LinkRead(f"https://down{i}.test/{'x' * 150}", "failed") for i in range(12)]
    note = links_note(bad, MARKDOWN)
    assert note.count("https://down") == 5 and note.endswith("and 7 more._")
    draft = ReplyDraft(MARKDOWN)
    draft.add_text("text")
    draft.links = tuple(bad)
    draft.grounding = g
    _body, footer = draft.final(limit=2000)
    assert len(footer) <= 2000 + 2
