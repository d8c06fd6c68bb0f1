"""GeminiChatModel and the fake, through the real SDK: wire shapes, retries, Files API."""

from __future__ import annotations

import time

import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from bot.errors import (
    ModelAuthError,
    ModelFileUnavailable,
    ModelNotFound,
    ModelRateLimited,
    ModelTooLarge,
    ModelUnavailable,
)
from bot.gemini import GeminiChatModel
from bot.ports import FileData, Finished, InlineData, ModelContent, TextDelta
from bot.types import GenerationSettings, Persona
from tests.fakes.gemini import API_KEY, DEFAULT_MODEL, Fault, Reply

# A persona naming a model other than the default, as personas.toml may.
PERSONA = Persona(
    "p", "d", "Be brief.", model="gemini-3.7-flash", generation=GenerationSettings(0.5, 0.9, 20, 99)
)


async def collect(model: GeminiChatModel, *contents: ModelContent):
    events = []
    async for ev in model.stream(
        persona=PERSONA, history=list(contents[:-1]), message=contents[-1]
    ):
        events.append(ev)
    return events


async def test_request_shape(gemini, fake_gemini) -> None:
    # The file is unknown to the fake, which answers 403 as Gemini does for a vanished file.
    with pytest.raises(ModelFileUnavailable):
        await collect(
            gemini,
            ModelContent("user", ("hi", InlineData("image/png", b"\x89PNG..."))),
            ModelContent("model", ("hello",)),
            ModelContent(
                "user",
                ("more", FileData("application/pdf", f"{fake_gemini.base_url}/v1beta/files/x")),
            ),
        )
    req = fake_gemini.requests[0]
    assert req.path == "/v1beta/models/gemini-3.7-flash:streamGenerateContent"
    assert req.query["alt"] == "sse"
    assert req.headers["x-goog-api-key"] == API_KEY
    assert req.system_instruction() == "Be brief."
    assert req.generation_config() == {
        "temperature": 0.5,
        "topP": 0.9,
        "topK": 20,
        "maxOutputTokens": 99,
    }
    assert [c["role"] for c in req.contents()] == ["user", "model", "user"]
    assert req.inline_mimes() == ["image/png"]
    assert req.file_uris() == [f"{fake_gemini.base_url}/v1beta/files/x"]


async def test_stream_events_and_usage(gemini, fake_gemini) -> None:
    fake_gemini.enqueue(Reply(["a", "b", "c"]))
    events = await collect(gemini, ModelContent("user", ("x" * 400,)))
    assert events[:3] == [TextDelta("a"), TextDelta("b"), TextDelta("c")]
    assert isinstance(events[-1], Finished)
    assert events[-1].finish_reason == "stop"
    assert events[-1].usage.prompt_tokens == 100


async def test_retry_honours_server_delay(gemini, fake_gemini) -> None:
    fake_gemini.enqueue(Fault.rate_limited(0.3), Reply(["ok"]))
    t0 = time.monotonic()
    events = await collect(gemini, ModelContent("user", ("x",)))
    assert time.monotonic() - t0 >= 0.3
    assert events[0] == TextDelta("ok")


async def test_retries_give_up_with_mapped_errors(gemini, fake_gemini) -> None:
    fake_gemini.enqueue(*[Fault.rate_limited(0.01)] * 4)
    with pytest.raises(ModelRateLimited) as err:
        await collect(gemini, ModelContent("user", ("x",)))
    assert err.value.retry_after == 0.01
    fake_gemini.enqueue(*[Fault.unavailable()] * 4)
    with pytest.raises(ModelUnavailable):
        await collect(gemini, ModelContent("user", ("x",)))


async def test_unreachable_endpoint_is_unavailable() -> None:
    model = GeminiChatModel(
        api_key="k", default_model=DEFAULT_MODEL, base_url="http://127.0.0.1:9", max_retries=0
    )
    with pytest.raises(ModelUnavailable) as err:
        await collect(model, ModelContent("user", ("x",)))
    await model.aclose()
    # The network error stays attached as the cause: tracebacks show what really failed.
    assert err.value.__cause__ is not None
    assert not isinstance(err.value.__cause__, ModelUnavailable)
    assert err.value.__suppress_context__


async def test_bad_key(fake_gemini) -> None:
    model = GeminiChatModel(
        api_key="nope", default_model=DEFAULT_MODEL, base_url=fake_gemini.base_url
    )
    with pytest.raises(ModelAuthError):
        await collect(model, ModelContent("user", ("x",)))
    await model.aclose()


async def test_upload_waits_for_active(gemini, fake_gemini) -> None:
    fake_gemini.processing_polls = 3
    data = b"%PDF-1.4 " + b"z" * 10_000
    remote = await gemini.upload(data=data, mime_type="application/pdf", display_name="r.pdf")
    fid = remote.uri.rsplit("/", 1)[-1]
    assert fake_gemini.files[fid]["state"] == "ACTIVE"
    assert fake_gemini.file_bytes[fid] == data
    gets = [r for r in fake_gemini.requests if r.method == "GET" and r.path.endswith(fid)]
    assert len(gets) == 3
    start = fake_gemini.upload_starts()[0]
    assert start.headers["X-Goog-Upload-Protocol"] == "resumable"
    assert start.headers["X-Goog-Upload-Header-Content-Type"] == "application/pdf"


async def test_fake_generate_and_count_tokens_through_sdk(fake_gemini) -> None:
    client = genai.Client(
        api_key=API_KEY,
        http_options=types.HttpOptions(base_url=fake_gemini.base_url, api_version="v1beta"),
    )
    fake_gemini.enqueue(Reply(["whole ", "answer"]))
    r = await client.aio.models.generate_content(model=DEFAULT_MODEL, contents="hello")
    assert r.text == "whole answer"
    count = await client.aio.models.count_tokens(model=DEFAULT_MODEL, contents="x" * 40)
    assert count.total_tokens == 10
    await client.aio.aclose()


async def test_mapped_errors_keep_their_cause(gemini, fake_gemini) -> None:
    fake_gemini.enqueue(*[Fault.unavailable()] * 4)
    with pytest.raises(ModelUnavailable) as err:
        await collect(gemini, ModelContent("user", ("x",)))
    cause = err.value.__cause__
    assert isinstance(cause, genai_errors.ServerError) and cause.code == 503


async def test_retired_model_is_model_not_found_for_the_user(gemini, fake_gemini) -> None:
    fake_gemini.retire(PERSONA.model or "")
    with pytest.raises(ModelNotFound) as err:
        await collect(gemini, ModelContent("user", ("x",)))
    assert err.value.model == "gemini-3.7-flash"
    assert err.value.user_message == (
        "The model gemini-3.7-flash is no longer available from Google; an admin must change "
        "GEMINI_MODEL or the persona's model."
    )
    assert isinstance(err.value.__cause__, genai_errors.ClientError)
    assert err.value.__cause__.code == 404
    # Not retried: a 404 will not go away by itself.
    assert len(fake_gemini.generate_requests()) == 1


async def test_our_own_errors_pass_through_unwrapped(gemini) -> None:
    own = ModelTooLarge("from a step of ours")

    async def step() -> None:
        raise own

    # Before: wrapped as ModelUnavailable("ModelTooLarge: ...") from None, cause lost.
    with pytest.raises(ModelTooLarge) as err:
        await gemini._retrying("step", step)
    assert err.value is own
