"""GeminiChatModel: the only module that imports google.genai.

Builds `contents` from our own stored history each turn (the SDK's chat object keeps
history client-side and stores each streamed chunk as its own turn, which we do not want),
pins the API version, retries before the first token, and maps SDK errors to bot.errors.
"""

from __future__ import annotations

import io
import logging
import random
import re
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import aiohttp
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from bot.clock import Clock, SystemClock
from bot.errors import (
    ModelAuthError,
    ModelBadRequest,
    ModelBlocked,
    ModelError,
    ModelFileUnavailable,
    ModelNotFound,
    ModelRateLimited,
    ModelTooLarge,
    ModelUnavailable,
)
from bot.gemini_events import ChunkReader, enum_name, finish_reason
from bot.gemini_events import usage as usage_of
from bot.model_check import ModelInfo
from bot.model_events import Finished, FinishReason, ModelEvent, ToolActivity
from bot.ports import FileData, InlineData, ModelContent, ModelPart
from bot.types import Persona, RemoteFile, Usage

log = logging.getLogger(__name__)

# Our tool names -> the SDK's tool declarations.
TOOLS: dict[str, Callable[[], types.Tool]] = {
    "google_search": lambda: types.Tool(google_search=types.GoogleSearch()),
    "url_context": lambda: types.Tool(url_context=types.UrlContext()),
    "code_execution": lambda: types.Tool(code_execution=types.ToolCodeExecution()),
}
RETRYABLE_CODES = frozenset({408, 429, 500, 502, 503, 504})
FILE_LIFETIME = timedelta(hours=48)
# A start-up check must not hold start-up for GEMINI_TIMEOUT_SECONDS on a silent network.
CHECK_TIMEOUT_MS = 10_000
_MODEL_IN_MESSAGE = re.compile(r"models/([\w.\-]+)")


def retry_delay(details: Any) -> float | None:
    """The server's google.rpc.RetryInfo retryDelay in seconds, if it gave one."""
    try:
        items = details.get("error", details).get("details") or []
    except AttributeError:
        return None
    for item in items:
        if isinstance(item, dict) and str(item.get("@type", "")).endswith("RetryInfo"):
            m = re.fullmatch(r"\s*([0-9.]+)s\s*", str(item.get("retryDelay", "")))
            if m:
                return float(m.group(1))
    return None


def map_api_error(exc: genai_errors.APIError, *, model: str | None = None) -> ModelError:
    """An SDK APIError as one of our error types; `model` is the one the request named."""
    code = exc.code or 0
    status = (exc.status or "").upper()
    message = exc.message or ""
    detail = f"{code} {status}: {message}"[:500]
    low = message.lower()
    if code == 429 or status == "RESOURCE_EXHAUSTED":
        return ModelRateLimited(detail, retry_after=retry_delay(exc.details))
    if (
        code in (403, 404)
        and "file" in low
        and ("permission" in low or "not exist" in low or "not found" in low)
    ):
        return ModelFileUnavailable(detail)
    if code in (401, 403) or "api key" in low or "api_key" in low:
        return ModelAuthError(detail)
    if code == 413 or (
        code == 400
        and any(
            w in low for w in ("too large", "exceeds", "too long", "token count", "payload size")
        )
    ):
        return ModelTooLarge(detail)
    if code == 404 and status == "NOT_FOUND":
        # Gemini: "models/x is not found for API version v1beta, or is not supported for ...".
        named = _MODEL_IN_MESSAGE.search(message)
        name = model or (named.group(1) if named else "(unknown)")
        return ModelNotFound(detail, model=name.removeprefix("models/"))
    if code == 404:
        return ModelBadRequest(
            detail, user_message="The Gemini model configured for this bot was not found."
        )
    if code in RETRYABLE_CODES or code >= 500 or status in ("UNAVAILABLE", "DEADLINE_EXCEEDED"):
        return ModelUnavailable(detail)
    return ModelBadRequest(detail)


def _is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, genai_errors.APIError):
        return (exc.code or 0) in RETRYABLE_CODES or (exc.code or 0) >= 500
    return isinstance(exc, aiohttp.ClientError | TimeoutError | ConnectionError)


def _map(exc: BaseException, *, model: str | None = None) -> ModelError:
    if isinstance(exc, genai_errors.APIError):
        return map_api_error(exc, model=model)
    return ModelUnavailable(f"{type(exc).__name__}: {exc}"[:500])


def _part(p: ModelPart) -> types.Part:
    if isinstance(p, str):
        return types.Part(text=p)
    if isinstance(p, InlineData):
        return types.Part(
            inline_data=types.Blob(mime_type=p.mime_type, data=p.data),
            thought_signature=p.signature,
        )
    if isinstance(p, FileData):
        return types.Part(
            file_data=types.FileData(file_uri=p.uri, mime_type=p.mime_type),
            thought_signature=p.signature,
        )
    raise TypeError(f"unknown part {p!r}")


def to_contents(contents: Sequence[ModelContent]) -> list[types.Content]:
    """Our contents to SDK contents, merging neighbours of the same role."""
    out: list[types.Content] = []
    for c in contents:
        parts = [_part(p) for p in c.parts]
        if not parts:
            continue
        if out and out[-1].role == c.role and out[-1].parts is not None:
            out[-1].parts.extend(parts)
        else:
            out.append(types.Content(role=c.role, parts=parts))
    return out


class GeminiChatModel:
    """ChatModel on the Gemini Developer API through google-genai's async client."""

    def __init__(
        self,
        *,
        api_key: str,
        default_model: str,
        base_url: str | None = None,
        api_version: str = "v1beta",
        max_retries: int = 3,
        timeout_seconds: float = 120,
        max_retry_wait: float = 30.0,
        backoff_base: float = 0.5,
        upload_poll_seconds: float = 0.25,
        upload_timeout_seconds: float = 300.0,
        clock: Clock | None = None,
    ) -> None:
        self.default_model = default_model
        self.max_retries = max_retries
        self.max_retry_wait = max_retry_wait
        self.backoff_base = backoff_base
        self.upload_poll_seconds = upload_poll_seconds
        self.upload_timeout_seconds = upload_timeout_seconds
        self.clock: Clock = clock or SystemClock()
        # Models already reported missing: a retired model fails every turn, logged once.
        self._missing_reported: set[str] = set()
        options = types.HttpOptions(
            api_version=api_version,
            timeout=int(timeout_seconds * 1000),
            # Our own retry loop (below) knows about first tokens; the SDK's must not retry.
            retry_options=types.HttpRetryOptions(attempts=1),
        )
        if base_url:
            options.base_url = base_url
        self._client = genai.Client(api_key=api_key, http_options=options)

    async def aclose(self) -> None:
        """Close the SDK's HTTP sessions."""
        await self._client.aio.aclose()

    def _config(self, persona: Persona) -> types.GenerateContentConfig:
        g = persona.generation
        tools = [TOOLS[name]() for name in persona.tools if name in TOOLS]
        return types.GenerateContentConfig(
            system_instruction=persona.system_instruction,
            temperature=g.temperature,
            top_p=g.top_p,
            top_k=g.top_k,
            max_output_tokens=g.max_output_tokens,
            tools=list(tools) or None,
            response_modalities=["TEXT", "IMAGE"] if "image" in persona.output else None,
        )

    def _backoff(self, attempt: int, exc: BaseException) -> float:
        server = retry_delay(exc.details) if isinstance(exc, genai_errors.APIError) else None
        if server is not None:
            return server
        return float(self.backoff_base * (2**attempt) * (0.5 + random.random() / 2))

    async def stream(
        self,
        *,
        persona: Persona,
        history: Sequence[ModelContent],
        message: ModelContent,
    ) -> AsyncIterator[ModelEvent]:
        """Stream a reply; retries 408/429/5xx and network errors until the first output."""
        model = persona.model or self.default_model
        contents = to_contents([*history, message])
        config = self._config(persona)
        for activity in expected_activity(persona, message):
            yield activity
        attempt = 0
        while True:
            reader = ChunkReader()
            finish: FinishReason = "stop"
            usage = Usage()
            try:
                response = await self._client.aio.models.generate_content_stream(
                    model=model,
                    contents=contents,
                    config=config,
                )
                async for chunk in response:
                    feedback = chunk.prompt_feedback
                    if feedback is not None and feedback.block_reason is not None:
                        reason = enum_name(feedback.block_reason)
                        raise ModelBlocked(f"prompt blocked: {reason}", reason=reason)
                    if chunk.usage_metadata is not None:
                        usage = usage_of(chunk.usage_metadata)
                    for cand in chunk.candidates or []:
                        if cand.finish_reason is not None:
                            finish = finish_reason(cand.finish_reason)
                        for event in reader.parts(cand):
                            yield event
                        break  # one candidate is all we ask for
            except ModelError:
                raise
            except Exception as exc:
                delay = None if reader.started else self._retry_delay(attempt, exc)
                if delay is None:
                    raise self._failure(exc, model) from exc
                attempt += 1
                log.info("gemini %s; retry %d in %.2fs", _brief(exc), attempt, delay)
                await self.clock.sleep(delay)
                continue
            # It answers (again): should it be retired later, that is worth a new ERROR.
            self._missing_reported.discard(model.removeprefix("models/"))
            for event in reader.closing():
                yield event
            yield Finished(finish, usage)
            return

    def _retry_delay(self, attempt: int, exc: BaseException) -> float | None:
        """Seconds to wait before retrying `exc`, or None when it is not to be retried."""
        if attempt >= self.max_retries or not _is_retryable(exc):
            return None
        delay = self._backoff(attempt, exc)
        return None if delay > self.max_retry_wait else delay

    def _failure(self, exc: BaseException, model: str) -> ModelError:
        """`exc` as our error; a missing model is logged at ERROR once, not once per turn."""
        err = _map(exc, model=model)
        if isinstance(err, ModelNotFound) and err.model not in self._missing_reported:
            self._missing_reported.add(err.model)
            log.error(
                "Gemini does not know the model %s (retired or renamed?); every reply using it "
                "fails until an admin changes GEMINI_MODEL or the persona's model (%s)",
                err.model,
                err,
            )
        return err

    async def check_model(self, name: str) -> None:
        """Ask Gemini for `name` once (models.get); ModelNotFound when it does not know it.

        Any other failure (network, 5xx, key) raises its ModelError; the caller decides
        what that means at start-up. No retries: a check must not hold start-up for long.
        """
        config = types.GetModelConfig(http_options=types.HttpOptions(timeout=CHECK_TIMEOUT_MS))
        try:
            await self._client.aio.models.get(model=name, config=config)
        except ModelError:
            raise
        except Exception as exc:
            raise _map(exc, model=name) from exc

    async def list_models(self) -> list[ModelInfo]:
        """Every base model Gemini offers this key (models.list, all pages)."""
        config = types.ListModelsConfig(
            http_options=types.HttpOptions(timeout=CHECK_TIMEOUT_MS), query_base=True
        )
        out: list[ModelInfo] = []
        try:
            async for m in await self._client.aio.models.list(config=config):
                name = (m.name or "").removeprefix("models/")
                if name:
                    out.append(ModelInfo(name, tuple(m.supported_actions or ())))
        except ModelError:
            raise
        except Exception as exc:
            raise _map(exc) from exc
        return out

    async def _retrying(self, what: str, fn: Any) -> Any:
        attempt = 0
        while True:
            try:
                return await fn()
            except ModelError:
                raise
            except Exception as exc:
                delay = self._retry_delay(attempt, exc)
                if delay is None:
                    raise _map(exc) from exc
                attempt += 1
                log.info("gemini %s %s; retry %d in %.2fs", what, _brief(exc), attempt, delay)
                await self.clock.sleep(delay)

    async def upload(self, *, data: bytes, mime_type: str, display_name: str) -> RemoteFile:
        """Resumable upload through the Files API, then wait until the file is ACTIVE."""
        files = self._client.aio.files
        config = types.UploadFileConfig(mime_type=mime_type, display_name=display_name[:128])
        f = await self._retrying(
            "upload", lambda: files.upload(file=io.BytesIO(data), config=config)
        )
        waited = 0.0
        poll = self.upload_poll_seconds
        while f.state == types.FileState.PROCESSING:
            if waited >= self.upload_timeout_seconds:
                raise ModelUnavailable(
                    f"file {f.name} still processing",
                    user_message=f"Gemini is still processing {display_name}; try again soon.",
                )
            await self.clock.sleep(poll)
            waited += poll
            poll = min(poll * 2, 5.0)
            f = await self._retrying("files.get", partial(files.get, name=f.name or ""))
        if f.state == types.FileState.FAILED or not f.uri:
            raise ModelBadRequest(
                f"file {f.name} failed: {f.error}",
                user_message=f"Gemini could not process the file {display_name}.",
            )
        expires = f.expiration_time or (datetime.now(UTC) + FILE_LIFETIME)
        return RemoteFile(
            uri=f.uri, mime_type=f.mime_type or mime_type, expires_at=expires, name=f.name or ""
        )


_URL = re.compile(r"https?://[^\s<>()\[\]]+")


def expected_activity(persona: Persona, message: ModelContent) -> list[ToolActivity]:
    """What the reply will likely be busy with before its first text, for a status line."""
    if "image" in persona.output:
        return [ToolActivity("drawing")]
    if "url_context" in persona.tools:
        text = " ".join(p for p in message.parts if isinstance(p, str))
        if links := len(set(_URL.findall(text))):
            return [ToolActivity("reading_links", links)]
    if "google_search" in persona.tools:
        return [ToolActivity("searching")]
    return []


def _brief(exc: BaseException) -> str:
    if isinstance(exc, genai_errors.APIError):
        return f"{exc.code} {exc.status}"
    return type(exc).__name__
