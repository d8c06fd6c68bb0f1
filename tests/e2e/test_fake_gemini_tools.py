"""The fake Gemini's tool shapes, through the real SDK: grounding, URL context, code
execution, image output, tool usage counts and the request checks."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from tests.fakes.gemini import (
    API_KEY,
    COLOURS,
    DEFAULT_MODEL,
    IMAGE_MODEL,
    FakeGemini,
    Reply,
    grounded,
    png,
    png_color,
)
from tests.fakes.gemini_tools import REDIRECT_PREFIX, wire

SEARCH = types.Tool(google_search=types.GoogleSearch())
URLS = types.Tool(url_context=types.UrlContext())
CODE = types.Tool(code_execution=types.ToolCodeExecution())


@pytest.fixture
async def client(fake_gemini: FakeGemini) -> AsyncIterator[genai.Client]:
    c = genai.Client(
        api_key=API_KEY,
        http_options=types.HttpOptions(base_url=fake_gemini.base_url, api_version="v1beta"),
    )
    try:
        yield c
    finally:
        await c.aio.aclose()


async def stream(
    client: genai.Client,
    text: str,
    *,
    model: str = DEFAULT_MODEL,
    config: types.GenerateContentConfig | None = None,
) -> list[types.GenerateContentResponse]:
    it = await client.aio.models.generate_content_stream(model=model, contents=text, config=config)
    return [r async for r in it]


def parts(chunks: list[types.GenerateContentResponse]) -> list[types.Part]:
    return [p for r in chunks for p in r.candidates[0].content.parts]


def text_of(chunks: list[types.GenerateContentResponse]) -> str:
    return "".join(p.text for p in parts(chunks) if p.text is not None)


# -- the wire shape --------------------------------------------------------------------------


def test_wire_is_camel_case_with_enum_names_and_standard_base64() -> None:
    data = b"\xfb\xff\xfe\x01\x02\x03\x04"
    part = types.Part(inline_data=types.Blob(mime_type="image/png", data=data))
    assert wire(part) == {"inlineData": {"mimeType": "image/png", "data": "+//+AQIDBA=="}}
    code = types.Part(
        code_execution_result=types.CodeExecutionResult(outcome=types.Outcome.OUTCOME_OK)
    )
    assert wire(code) == {"codeExecutionResult": {"outcome": "OUTCOME_OK"}}


def test_png_round_trip() -> None:
    data = png(64, 64, (1, 2, 3))
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert png_color(data) == (1, 2, 3)
    with pytest.raises(ValueError):
        png_color(b"GIF89a")


# -- scripted replies ------------------------------------------------------------------------


async def test_grounded_reply_offsets_are_utf8_bytes(
    fake_gemini: FakeGemini, client: genai.Client
) -> None:
    first, second = "Zürich is in Switzerland.", "Its lake is called Zürichsee."
    text = f"{first} {second}"
    fake_gemini.enqueue(
        grounded(
            text,
            sources=[
                ("Zürich - Wikipedia", "https://en.wikipedia.org/wiki/Z%C3%BCrich", first),
                ("Lake Zurich", "https://www.britannica.com/place/Lake-Zurich", second),
            ],
            queries=["where is Zürich"],
            chunk_size=7,
        )
    )
    chunks = await stream(client, "where is Zürich?")
    assert len(chunks) == -(-len(text) // 7)
    assert text_of(chunks) == text
    assert all(r.candidates[0].grounding_metadata is None for r in chunks[:-1])
    g = chunks[-1].candidates[0].grounding_metadata
    assert g is not None
    assert [(c.web.title, c.web.uri, c.web.domain) for c in g.grounding_chunks] == [
        ("Zürich - Wikipedia", "https://en.wikipedia.org/wiki/Z%C3%BCrich", None),
        ("Lake Zurich", "https://www.britannica.com/place/Lake-Zurich", None),
    ]
    data = text.encode()
    sup0, sup1 = g.grounding_supports
    # proto3 JSON leaves zero ints out: the first segment has no startIndex nor partIndex.
    assert sup0.segment.start_index is None and sup0.segment.part_index is None
    assert data[: sup0.segment.end_index].decode() == first
    # "ü" is two bytes: a character offset would be one short.
    assert sup1.segment.start_index == len(first) + 2 == text.index(second) + 1
    assert data[sup1.segment.start_index : sup1.segment.end_index].decode() == second
    assert [s.segment.text for s in g.grounding_supports] == [first, second]
    assert [s.grounding_chunk_indices for s in g.grounding_supports] == [[0], [1]]
    assert g.web_search_queries == ["where is Zürich"]
    html = g.search_entry_point.rendered_content
    assert html.startswith("<style>") and '<a class="chip"' in html and "Zürich" in html


async def test_grounded_redirect_links(fake_gemini: FakeGemini, client: genai.Client) -> None:
    fake_gemini.enqueue(
        grounded(
            "Fact.",
            sources=[("Ignored", "https://www.example.org/page", "Fact.")],
            queries=["q"],
            redirect=True,
        )
    )
    chunks = await stream(client, "q")
    web = chunks[-1].candidates[0].grounding_metadata.grounding_chunks[0].web
    assert web.uri.startswith(REDIRECT_PREFIX) and len(web.uri) > len(REDIRECT_PREFIX) + 40
    assert web.title == "example.org"


async def test_parts_each_stream_as_a_chunk(fake_gemini: FakeGemini, client: genai.Client) -> None:
    image = png(8, 8, (10, 20, 30))
    fake_gemini.enqueue(
        Reply(
            [
                "Running code. ",
                types.Part(
                    executable_code=types.ExecutableCode(
                        language=types.Language.PYTHON, code="print(6 * 7)"
                    )
                ),
                types.Part(
                    code_execution_result=types.CodeExecutionResult(
                        outcome=types.Outcome.OUTCOME_OK, output="42\n"
                    )
                ),
                types.Part(inline_data=types.Blob(mime_type="image/png", data=image)),
                "Done.",
            ],
            usage_extra={"toolUsePromptTokenCount": 120, "cachedContentTokenCount": 40},
        )
    )
    chunks = await stream(client, "run it", config=types.GenerateContentConfig(tools=[CODE]))
    assert [len(r.candidates[0].content.parts) for r in chunks] == [1] * 5
    ps = parts(chunks)
    assert ps[1].executable_code.code == "print(6 * 7)"
    assert ps[1].executable_code.language == types.Language.PYTHON
    assert ps[2].code_execution_result.output == "42\n"
    assert ps[2].code_execution_result.outcome == types.Outcome.OUTCOME_OK
    assert ps[3].inline_data.mime_type == "image/png" and ps[3].inline_data.data == image
    assert text_of(chunks) == "Running code. Done."
    assert all(r.usage_metadata is None for r in chunks[:-1])
    usage = chunks[-1].usage_metadata
    assert usage.tool_use_prompt_token_count == 120
    assert usage.cached_content_token_count == 40
    assert usage.total_token_count == (
        usage.prompt_token_count + usage.candidates_token_count + 120
    )
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP


async def test_non_streaming_has_the_same_shapes(
    fake_gemini: FakeGemini, client: genai.Client
) -> None:
    image = png(4, 4, (0, 0, 255))
    fake_gemini.enqueue(
        Reply(
            [
                "Here ",
                "it is.",
                types.Part(inline_data=types.Blob(mime_type="image/png", data=image)),
            ],
            url_context=types.UrlContextMetadata(
                url_metadata=[
                    types.UrlMetadata(
                        retrieved_url="https://a.example/",
                        url_retrieval_status=types.UrlRetrievalStatus.URL_RETRIEVAL_STATUS_PAYWALL,
                    )
                ]
            ),
        )
    )
    r = await client.aio.models.generate_content(model=DEFAULT_MODEL, contents="hi")
    ps = r.candidates[0].content.parts
    assert [p.text for p in ps] == ["Here it is.", None]
    assert ps[1].inline_data.data == image
    meta = r.candidates[0].url_context_metadata.url_metadata[0]
    assert meta.url_retrieval_status == types.UrlRetrievalStatus.URL_RETRIEVAL_STATUS_PAYWALL
    assert r.usage_metadata.candidates_token_count > 1290  # an image's output tokens


# -- automatic answers to tools ----------------------------------------------------------------


async def test_recorded_tools_and_modalities(fake_gemini: FakeGemini, client: genai.Client) -> None:
    config = types.GenerateContentConfig(tools=[SEARCH, URLS, CODE])
    await stream(client, "hello", config=config)
    rec = fake_gemini.generate_requests()[-1]
    assert rec.tools() == ["googleSearch", "urlContext", "codeExecution"]
    assert rec.response_modalities() == []
    rec.body["tools"] = [{"google_search": {}}, {"url_context": {}, "code_execution": {}}]
    assert rec.tools() == ["googleSearch", "urlContext", "codeExecution"]


async def test_auto_url_context(fake_gemini: FakeGemini, client: genai.Client) -> None:
    good, bad, unsafe = "https://good.example/a", "http://down.example/b?x=1", "https://evil.test/"
    fake_gemini.unreadable_urls.add(bad)
    fake_gemini.unsafe_urls.add(unsafe)
    chunks = await stream(
        client,
        f"Compare {good}, {bad} and {unsafe}.",
        config=types.GenerateContentConfig(tools=[URLS]),
    )
    assert text_of(chunks).startswith("echo: Compare")
    meta = chunks[-1].candidates[0].url_context_metadata.url_metadata
    status = types.UrlRetrievalStatus
    assert [(m.retrieved_url, m.url_retrieval_status) for m in meta] == [
        (good, status.URL_RETRIEVAL_STATUS_SUCCESS),
        (bad, status.URL_RETRIEVAL_STATUS_ERROR),
        (unsafe, status.URL_RETRIEVAL_STATUS_UNSAFE),
    ]
    assert chunks[-1].usage_metadata.tool_use_prompt_token_count > 0
    # Without the tool, or without a URL, there is no URL context and no tool use.
    for text, config in (
        (f"see {good}", None),
        ("no link here", types.GenerateContentConfig(tools=[URLS])),
    ):
        chunks = await stream(client, text, config=config)
        assert chunks[-1].candidates[0].url_context_metadata is None
        assert chunks[-1].usage_metadata.tool_use_prompt_token_count is None


async def test_auto_search_is_grounded(fake_gemini: FakeGemini, client: genai.Client) -> None:
    config = types.GenerateContentConfig(tools=[SEARCH])
    chunks = await stream(client, "who won the tour", config=config)
    text = text_of(chunks)
    assert text.startswith("echo: who won the tour")
    g = chunks[-1].candidates[0].grounding_metadata
    assert g.web_search_queries == ["who won the tour"]
    titles = [c.web.title for c in g.grounding_chunks]
    assert len(set(titles)) == 2  # two sites; redirect links titled with the domain
    assert all(c.web.uri.startswith(REDIRECT_PREFIX) for c in g.grounding_chunks)
    data = text.encode()
    spans = [
        data[s.segment.start_index or 0 : s.segment.end_index].decode()
        for s in g.grounding_supports
    ]
    assert spans == [s.segment.text for s in g.grounding_supports]
    assert spans[0] == "echo: who won the tour" and len(spans) == 2
    assert chunks[-1].usage_metadata.tool_use_prompt_token_count > 0
    # Deterministic: the same request gets the same answer.
    again = await stream(client, "who won the tour", config=config)
    assert again[-1].candidates[0].grounding_metadata == g
    # Real links when asked.
    fake_gemini.search_redirect = False
    chunks = await stream(client, "who won the tour", config=config)
    domains = {
        c.web.uri.split("/")[2]
        for c in chunks[-1].candidates[0].grounding_metadata.grounding_chunks
    }
    assert domains == {"en.wikipedia.org", "www.britannica.com"}


async def test_auto_code_execution(fake_gemini: FakeGemini, client: genai.Client) -> None:
    config = types.GenerateContentConfig(tools=[CODE])
    chunks = await stream(client, "plot some numbers", config=config)
    ps = parts(chunks)
    kinds = [
        "text"
        if p.text
        else "code"
        if p.executable_code
        else "result"
        if p.code_execution_result
        else "image"
        if p.inline_data
        else "?"
        for p in ps
    ]
    assert kinds == ["text", "code", "result", "image", "text"]
    assert "matplotlib" in ps[1].executable_code.code
    assert ps[2].code_execution_result.outcome == types.Outcome.OUTCOME_OK
    assert ps[2].code_execution_result.output
    assert ps[3].inline_data.mime_type == "image/png"
    assert png_color(ps[3].inline_data.data) == (255, 255, 255)
    assert chunks[-1].usage_metadata.tool_use_prompt_token_count > 0
    # No plot, chart or run: no code.
    chunks = await stream(client, "hello there", config=config)
    assert all(p.executable_code is None for p in parts(chunks))
    assert text_of(chunks) == "echo: hello there"


@pytest.mark.parametrize(
    ("prompt", "colour"),
    [("a blue square", "blue"), ("paint it Green", "green"), ("a cat", "red")],
)
async def test_auto_image_output(
    fake_gemini: FakeGemini, client: genai.Client, prompt: str, colour: str
) -> None:
    config = types.GenerateContentConfig(response_modalities=["TEXT", "IMAGE"])
    chunks = await stream(client, prompt, model=IMAGE_MODEL, config=config)
    ps = parts(chunks)
    assert ps[0].text and colour in ps[0].text
    assert ps[-1].inline_data.mime_type == "image/png"
    assert png_color(ps[-1].inline_data.data) == COLOURS[colour]
    assert fake_gemini.generate_requests()[-1].response_modalities() == ["TEXT", "IMAGE"]


async def test_image_input_is_recorded(fake_gemini: FakeGemini, client: genai.Client) -> None:
    image = png(2, 2, (0, 255, 0))
    contents = [
        types.Content(
            role="user",
            parts=[
                types.Part(text="make it blue"),
                types.Part(inline_data=types.Blob(mime_type="image/png", data=image)),
            ],
        )
    ]
    config = types.GenerateContentConfig(response_modalities=["IMAGE"])
    it = await client.aio.models.generate_content_stream(
        model=IMAGE_MODEL, contents=contents, config=config
    )
    ps = [p async for r in it for p in r.candidates[0].content.parts]
    assert png_color(ps[-1].inline_data.data) == COLOURS["blue"]
    rec = fake_gemini.generate_requests()[-1]
    assert rec.inline_mimes() == ["image/png"]
    assert rec.last_user_text() == "make it blue"


# -- the request checks ------------------------------------------------------------------------


async def test_image_output_from_a_text_model_is_400(
    fake_gemini: FakeGemini, client: genai.Client
) -> None:
    fake_gemini.enqueue(Reply(["never sent"]))
    config = types.GenerateContentConfig(response_modalities=["TEXT", "IMAGE"])
    with pytest.raises(genai_errors.ClientError) as err:
        await stream(client, "a blue square", config=config)
    assert err.value.code == 400 and err.value.status == "INVALID_ARGUMENT"
    assert err.value.message == "Model does not support the requested response modalities: image"
    with pytest.raises(genai_errors.ClientError):
        await client.aio.models.generate_content(model=DEFAULT_MODEL, contents="x", config=config)
    assert len(fake_gemini.script) == 1  # a refused request does not consume the script
    fake_gemini.image_models.add(DEFAULT_MODEL)
    chunks = await stream(client, "a blue square", config=config)
    assert text_of(chunks) == "never sent"


async def test_unknown_tool_field_is_400(fake_gemini: FakeGemini, client: genai.Client) -> None:
    config = types.GenerateContentConfig(tools=[SEARCH])
    fake_gemini.enqueue(Reply(["unused"]))
    # The SDK only sends fields it knows; a raw request shows the real API's answer.
    api = client.aio._api_client
    body = {"contents": [{"role": "user", "parts": [{"text": "x"}]}], "tools": [{"foo": {}}]}
    with pytest.raises(genai_errors.ClientError) as err:
        await api.async_request("post", f"models/{DEFAULT_MODEL}:generateContent", body)
    assert err.value.code == 400 and err.value.status == "INVALID_ARGUMENT"
    assert err.value.message == (
        "Invalid JSON payload received. Unknown name \"foo\" at 'tools[0]': Cannot find field."
    )
    assert err.value.details["error"]["details"][0]["fieldViolations"][0]["field"] == "tools[0]"
    chunks = await stream(client, "x", config=config)
    assert text_of(chunks) == "unused"
