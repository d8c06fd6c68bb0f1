"""A fake Gemini Developer API on 127.0.0.1 speaking the REST shapes google-genai uses.

streamGenerateContent?alt=sse, generateContent, countTokens, models.get and models.list
(pageSize/pageToken paging), the resumable Files API (PROCESSING then ACTIVE, 48 h expiry)
and injected faults. Every request is recorded.

Models: the fake knows a set of models (`FakeGemini(models=...)`, default `DEFAULT_MODELS`)
and answers any other one, on every model route, with Gemini's 404 NOT_FOUND. A test
retires a model mid-run with `retire(name)`.

Tools and image output (the shapes live in tests/fakes/gemini_tools.py): a `Reply` may hold
`types.Part` chunks (code, code results, inline images) and grounding / URL context metadata;
`grounded(...)` builds a Search-grounded reply. With nothing scripted the fake answers the
request's tools itself (see `FakeGemini.auto`). Requests are checked like Gemini does: an
unknown Tool field, or IMAGE output from a model not in `image_models`, is a 400.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from google.genai import types

from tests.fakes.gemini_tools import (
    COLOURS,
    Reply,
    candidate_metadata,
    chart_png,
    find_urls,
    grounded,
    grounding_metadata,
    merged_parts,
    part_json,
    png,
    png_color,
    reply_usage,
    tool_reply,
    unknown_tool,
    url_context_metadata,
)
from tests.fakes.gemini_tools import camel as _camel

__all__ = [
    "API_KEY",
    "COLOURS",
    "DEFAULT_MODEL",
    "DEFAULT_MODELS",
    "IMAGE_MODEL",
    "IMAGE_MODELS",
    "TEST_MODEL",
    "FakeGemini",
    "Fault",
    "Recorded",
    "Reply",
    "chart_png",
    "find_urls",
    "grounded",
    "grounding_metadata",
    "model_resource",
    "png",
    "png_color",
    "url_context_metadata",
]

API_KEY = "fake-gemini-key"

DEFAULT_MODEL = "gemini-3.8-flash"  # the bot's default GEMINI_MODEL
# The test harnesses' model name (tests/conftest.py, tests/adapters, bench): known by default.
TEST_MODEL = "gemini-test"
# The Gemini API's image-output model ("Nano Banana 2"); only IMAGE_MODELS may be asked for
# IMAGE output (FakeGemini.image_models, per instance).
IMAGE_MODEL = "gemini-3.1-flash-image"
IMAGE_MODELS = frozenset({IMAGE_MODEL})
GENERATE_METHODS = ("generateContent", "countTokens", "createCachedContent", "batchGenerateContent")


def model_resource(
    name: str,
    display_name: str,
    *,
    version: str = "001",
    description: str = "",
    methods: tuple[str, ...] = GENERATE_METHODS,
    input_tokens: int = 1_048_576,
    output_tokens: int = 65_536,
    thinking: bool = True,
) -> dict[str, Any]:
    """A Model resource shaped as GET /v1beta/models/{name} returns it."""
    body: dict[str, Any] = {
        "name": f"models/{name}",
        "version": version,
        "displayName": display_name,
        "description": description or f"{display_name}.",
        "inputTokenLimit": input_tokens,
        "outputTokenLimit": output_tokens,
        "supportedGenerationMethods": list(methods),
    }
    if "generateContent" in methods:
        body.update(temperature=1, topP=0.95, topK=64, maxTemperature=2, thinking=thinking)
    return body


# Models the Gemini API lists in late 2026 (ai.google.dev/gemini-api/docs/models), plus an
# embedding model (no generateContent) and the harnesses' test model.
DEFAULT_MODELS: dict[str, dict[str, Any]] = {
    m["name"].removeprefix("models/"): m
    for m in (
        model_resource(DEFAULT_MODEL, "Gemini 3.8 Flash"),
        model_resource("gemini-3.7-flash", "Gemini 3.7 Flash"),
        model_resource("gemini-3.6-flash", "Gemini 3.6 Flash"),
        model_resource("gemini-3.5-flash", "Gemini 3.5 Flash"),
        model_resource("gemini-3.5-flash-lite", "Gemini 3.5 Flash-Lite"),
        model_resource("gemini-3.1-flash-lite", "Gemini 3.1 Flash-Lite"),
        model_resource(
            "gemini-3-flash-preview", "Gemini 3 Flash Preview", version="3-flash-preview-12-2025"
        ),
        model_resource(
            "gemini-3.1-pro-preview", "Gemini 3.1 Pro Preview", version="3.1-pro-preview-02-2026"
        ),
        model_resource(
            IMAGE_MODEL,
            "Nano Banana 2",
            version="3.1-flash-image-05-2026",
            description="Gemini 3.1 Flash Image (GA since 2026-05-28): text and image output.",
            input_tokens=131_072,
            output_tokens=32_768,
        ),
        model_resource(
            "gemini-embedding-001",
            "Gemini Embedding 001",
            methods=("embedContent", "countTextTokens", "countTokens", "asyncBatchEmbedContent"),
            input_tokens=2048,
            output_tokens=1,
            thinking=False,
        ),
        model_resource(TEST_MODEL, "Gemini Test (fake)", description="The fake's test model."),
    )
}


@dataclass
class Fault:
    """An injected failure."""

    kind: str  # "http" | "mid_stream" | "block" | "finish_only"
    status: int = 500
    status_text: str = "INTERNAL"
    message: str = "Internal error"
    retry_delay: float | None = None
    after_chunks: list[str] = field(default_factory=list)
    block_reason: str = "SAFETY"

    @classmethod
    def rate_limited(cls, retry_delay: float | None = 1.0) -> Fault:
        return cls("http", 429, "RESOURCE_EXHAUSTED", "Resource has been exhausted", retry_delay)

    @classmethod
    def unavailable(cls) -> Fault:
        return cls("http", 503, "UNAVAILABLE", "The model is overloaded. Please try again later.")

    @classmethod
    def too_large(cls) -> Fault:
        return cls(
            "http",
            400,
            "INVALID_ARGUMENT",
            "The input token count (1200000) exceeds the maximum number of tokens "
            "allowed (1048576).",
        )

    @classmethod
    def mid_stream(cls, *chunks: str) -> Fault:
        return cls(
            "mid_stream",
            500,
            "INTERNAL",
            "An internal error has occurred.",
            after_chunks=list(chunks),
        )

    @classmethod
    def safety_block(cls) -> Fault:
        return cls("block", block_reason="SAFETY")


@dataclass
class Recorded:
    """One request as the fake saw it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    raw_size: int = 0

    # Request bodies mix camelCase and snake_case; these helpers read either.
    def contents(self) -> list[dict[str, Any]]:
        return list(self.body.get("contents", [])) if isinstance(self.body, dict) else []

    def system_instruction(self) -> str:
        si = self.body.get("systemInstruction") or self.body.get("system_instruction") or {}
        return "".join(p.get("text", "") for p in si.get("parts", []))

    def texts(self) -> list[str]:
        return [p["text"] for c in self.contents() for p in c.get("parts", []) if "text" in p]

    def file_uris(self) -> list[str]:
        out = []
        for c in self.contents():
            for p in c.get("parts", []):
                fd = p.get("fileData") or p.get("file_data")
                if fd:
                    out.append(fd.get("fileUri") or fd.get("file_uri"))
        return out

    def inline_mimes(self) -> list[str]:
        out = []
        for c in self.contents():
            for p in c.get("parts", []):
                d = p.get("inlineData") or p.get("inline_data")
                if d:
                    out.append(d.get("mimeType") or d.get("mime_type"))
        return out

    def generation_config(self) -> dict[str, Any]:
        if not isinstance(self.body, dict):
            return {}
        return dict(self.body.get("generationConfig") or self.body.get("generation_config") or {})

    def tools(self) -> list[str]:
        """The Tool fields of the request, camelCase: googleSearch, urlContext, codeExecution..."""
        tools = self.body.get("tools") if isinstance(self.body, dict) else None
        return [_camel(k) for t in tools or [] if isinstance(t, dict) for k in t]

    def response_modalities(self) -> list[str]:
        """generationConfig.responseModalities, upper-cased (Gemini takes any case)."""
        gc = self.generation_config()
        return [
            str(m).upper()
            for m in gc.get("responseModalities") or gc.get("response_modalities") or []
        ]

    def last_user_text(self) -> str:
        """The text parts of the last user content, joined by newlines."""
        for c in reversed(self.contents()):
            if c.get("role", "user") == "user":
                return "\n".join(p["text"] for p in c.get("parts", []) if "text" in p)
        return ""


class FakeGemini:
    """The fake server. `script` answers in order; with nothing scripted it echoes."""

    def __init__(
        self, *, api_key: str = API_KEY, models: dict[str, dict[str, Any]] | None = None
    ) -> None:
        self.api_key = api_key
        # name (no "models/") -> Model resource; anything else answers 404 NOT_FOUND.
        self.models: dict[str, dict[str, Any]] = dict(DEFAULT_MODELS if models is None else models)
        self.list_page_size = 50  # Gemini's default pageSize
        self.requests: list[Recorded] = []
        self.script: deque[Reply | Fault] = deque()
        self.files: dict[str, dict[str, Any]] = {}
        self.file_bytes: dict[str, bytes] = {}
        self.uploads: dict[str, dict[str, Any]] = {}
        self.processing_polls = 1
        self.file_lifetime = timedelta(hours=48)
        self.echo_delay = 0.0
        self.first_chunk_at: dict[str, float] = {}  # first text chunk -> when it was sent
        # first text chunk -> when each chunk of that reply was sent (time.monotonic())
        self.chunk_sent_at: dict[str, list[float]] = {}
        # With nothing scripted: answer from the request (default: echo the last text).
        # (`auto(rec)` is that default: a responder may call it and adjust the reply.)
        self.responder: Callable[[Recorded], Reply] | None = None
        # Tools, with nothing scripted: URLs urlContext cannot read / refuses as unsafe,
        # and whether search grounding links are redirect links (as the real API's are).
        self.unreadable_urls: set[str] = set()
        self.unsafe_urls: set[str] = set()
        self.search_redirect = True
        # Models that may be asked for IMAGE output; any other one answers 400.
        self.image_models: set[str] = set(IMAGE_MODELS)
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    # -- lifecycle ---------------------------------------------------------

    async def start(self, port: int = 0) -> str:
        app = web.Application(client_max_size=1024**3)
        app.router.add_post(r"/{ver}/models/{model}:streamGenerateContent", self._stream)
        app.router.add_post(r"/{ver}/models/{model}:generateContent", self._generate)
        app.router.add_post(r"/{ver}/models/{model}:countTokens", self._count)
        app.router.add_get(r"/{ver}/models", self._list_models)
        app.router.add_get(r"/{ver}/models/{model}", self._get_model)
        app.router.add_post("/upload/{ver}/files", self._upload)
        app.router.add_get("/{ver}/files/{id}", self._get_file)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        sock = site._server.sockets[0]  # type: ignore[union-attr]
        self.base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        return self.base_url

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # -- helpers for tests -------------------------------------------------

    def enqueue(self, *items: Reply | Fault) -> None:
        self.script.extend(items)

    def retire(self, *names: str) -> None:
        """Shut models down: from now on every route answers 404 NOT_FOUND for them."""
        for name in names:
            self.models.pop(name.removeprefix("models/"), None)

    def add_model(self, name: str, display_name: str = "", **fields: Any) -> None:
        """Make a model known (see `model_resource` for the fields)."""
        self.models[name] = model_resource(name, display_name or name, **fields)

    def model_requests(self) -> list[Recorded]:
        """models.get and models.list requests."""
        return [r for r in self.requests if r.method == "GET" and "/models" in r.path]

    def generate_requests(self) -> list[Recorded]:
        return [r for r in self.requests if "GenerateContent" in r.path]

    def upload_starts(self) -> list[Recorded]:
        return [
            r
            for r in self.requests
            if r.path.endswith("/files") and r.query.get("upload_id") is None and r.method == "POST"
        ]

    # -- handlers ----------------------------------------------------------

    async def _record(self, request: web.Request) -> Recorded:
        raw = await request.read()
        body: Any
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        rec = Recorded(
            request.method, request.path, dict(request.query), dict(request.headers), body, len(raw)
        )
        self.requests.append(rec)
        return rec

    def _auth_error(self, request: web.Request) -> web.Response | None:
        key = request.headers.get("x-goog-api-key") or request.query.get("key")
        if key == self.api_key:
            return None
        return self._error(
            400,
            "INVALID_ARGUMENT",
            "API key not valid. Please pass a valid API key.",
            details=[
                {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}
            ],
        )

    @staticmethod
    def _error(
        code: int, status: str, message: str, details: list[Any] | None = None
    ) -> web.Response:
        body = {"error": {"code": code, "message": message, "status": status}}
        if details:
            body["error"]["details"] = details
        return web.json_response(body, status=code)

    def _unknown_model(self, request: web.Request, method: str) -> web.Response | None:
        """Gemini's 404 for a model it does not know or that cannot do `method`."""
        model = request.match_info["model"]
        known = self.models.get(model)
        if known is not None and (method == "get" or method in known["supportedGenerationMethods"]):
            return None
        return self._error(
            404,
            "NOT_FOUND",
            f"models/{model} is not found for API version {request.match_info['ver']}, "
            f"or is not supported for {'generateContent' if method == 'get' else method}. "
            "Call ListModels to see the list of "
            "available models and their supported methods.",
        )

    def _fault_response(self, fault: Fault) -> web.Response:
        details = None
        if fault.retry_delay is not None:
            details = [
                {
                    "@type": "type.googleapis.com/google.rpc.RetryInfo",
                    "retryDelay": f"{fault.retry_delay}s",
                }
            ]
        return self._error(fault.status, fault.status_text, fault.message, details)

    def _check_files(self, rec: Recorded) -> web.Response | None:
        for uri in rec.file_uris():
            fid = uri.rsplit("/", 1)[-1]
            f = self.files.get(fid)
            expired = f is not None and datetime.fromisoformat(f["expirationTime"]) < datetime.now(
                UTC
            )
            if f is None or expired or f["state"] != "ACTIVE":
                return self._error(
                    403,
                    "PERMISSION_DENIED",
                    f"You do not have permission to access the File {fid} or it may not exist.",
                )
        return None

    def _usage(self, rec: Recorded, output: str) -> dict[str, int]:
        prompt = sum(len(t) for t in rec.texts()) // 4 + 258 * (
            len(rec.file_uris()) + len(rec.inline_mimes())
        )
        out = max(1, len(output) // 4)
        return {
            "promptTokenCount": prompt,
            "candidatesTokenCount": out,
            "totalTokenCount": prompt + out,
        }

    def _check_request(self, request: web.Request, rec: Recorded) -> web.Response | None:
        """Gemini's 400s for an unknown Tool field and for output modalities the model lacks."""
        body = rec.body if isinstance(rec.body, dict) else {}
        if (bad := unknown_tool(body.get("tools"))) is not None:
            where, msg = bad
            return self._error(
                400,
                "INVALID_ARGUMENT",
                msg,
                details=[
                    {
                        "@type": "type.googleapis.com/google.rpc.BadRequest",
                        "fieldViolations": [{"field": where, "description": msg}],
                    }
                ],
            )
        if request.match_info["model"] in self.image_models:
            # Gemini 3 image models: an image of their own sent back without its signature.
            for n, content in enumerate(rec.contents()):
                for part in content.get("parts", []) if content.get("role") == "model" else []:
                    if ("inlineData" in part or "inline_data" in part) and not (
                        part.get("thoughtSignature") or part.get("thought_signature")
                    ):
                        return self._error(
                            400,
                            "INVALID_ARGUMENT",
                            f"Image part is missing a thought_signature in content position {n}"
                            ", part position 1.",
                        )
        supported = (
            {"TEXT", "IMAGE"} if request.match_info["model"] in self.image_models else {"TEXT"}
        )
        unsupported = [m.lower() for m in rec.response_modalities() if m not in supported]
        if unsupported:
            return self._error(
                400,
                "INVALID_ARGUMENT",
                "Model does not support the requested response modalities: "
                + ", ".join(unsupported),
            )
        return None

    def auto(self, rec: Recorded) -> Reply:
        """The answer with nothing scripted: an echo of the last text, plus what the request's
        tools and output modalities call for (see gemini_tools.tool_reply)."""
        texts = rec.texts()
        last = texts[-1] if texts else ""
        return tool_reply(
            f"echo: {last}",
            user_text=rec.last_user_text(),
            tools=rec.tools(),
            modalities=rec.response_modalities(),
            unreadable=self.unreadable_urls,
            unsafe=self.unsafe_urls,
            redirect=self.search_redirect,
            delay=self.echo_delay,
        )

    def _next(self, rec: Recorded) -> Reply | Fault:
        if self.script:
            return self.script.popleft()
        if self.responder is not None:
            return self.responder(rec)
        return self.auto(rec)

    @staticmethod
    def _chunk(
        parts: str | types.Part | list[dict[str, Any]] | None,
        *,
        model: str,
        finish: str | None = None,
        usage: dict[str, int] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """One response: a text, a types.Part or a list of REST parts, and candidate metadata."""
        cand: dict[str, Any] = {"index": 0}
        if parts is not None:
            wire_parts = parts if isinstance(parts, list) else [part_json(parts)]
            cand["content"] = {"role": "model", "parts": wire_parts}
        if finish:
            cand["finishReason"] = finish
        if metadata:
            cand.update(metadata)
        chunk: dict[str, Any] = {"candidates": [cand], "modelVersion": model}
        if usage:
            chunk["usageMetadata"] = usage
        return chunk

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        rec = await self._record(request)
        if (err := self._auth_error(request)) is not None:
            return err
        if (err := self._unknown_model(request, "generateContent")) is not None:
            return err
        if (err := self._check_files(rec)) is not None:
            return err
        if (err := self._check_request(request, rec)) is not None:
            return err
        model = request.match_info["model"]
        item = self._next(rec)
        if isinstance(item, Fault) and item.kind == "http":
            return self._fault_response(item)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)

        async def send(obj: dict[str, Any]) -> None:
            await resp.write(f"data: {json.dumps(obj)}\r\n\r\n".encode())

        if isinstance(item, Fault) and item.kind == "block":
            await send(
                {
                    "promptFeedback": {"blockReason": item.block_reason},
                    "usageMetadata": self._usage(rec, ""),
                }
            )
        elif isinstance(item, Fault):  # mid_stream
            for c in item.after_chunks:
                await send(self._chunk(c, model=model))
            await send(
                {
                    "error": {
                        "code": item.status,
                        "message": item.message,
                        "status": item.status_text,
                    }
                }
            )
        else:
            if item.first_delay:
                await asyncio.sleep(item.first_delay)
            usage = reply_usage(self._usage(rec, item.text()), item)
            sent_at: list[float] = []  # in chunk_sent_at when the first chunk is text
            for i, c in enumerate(item.chunks):
                if item.hold is not None and i == item.hold_after:
                    await item.hold.wait()
                    if request.transport is None or request.transport.is_closing():
                        return resp
                if i and item.delay:
                    await asyncio.sleep(item.delay)
                now = time.monotonic()
                if i == 0 and isinstance(c, str):
                    self.first_chunk_at[c] = now
                    self.chunk_sent_at[c] = sent_at
                sent_at.append(now)
                last = i == len(item.chunks) - 1
                await send(
                    self._chunk(
                        c,
                        model=model,
                        finish=item.finish_reason if last else None,
                        usage=usage if last else None,
                        metadata=candidate_metadata(item) if last else None,
                    )
                )
        await resp.write_eof()
        return resp

    async def _generate(self, request: web.Request) -> web.Response:
        rec = await self._record(request)
        if (err := self._auth_error(request)) is not None:
            return err
        if (err := self._unknown_model(request, "generateContent")) is not None:
            return err
        if (err := self._check_request(request, rec)) is not None:
            return err
        item = self._next(rec)
        if isinstance(item, Fault):
            return self._fault_response(item)
        return web.json_response(
            self._chunk(
                merged_parts(item.chunks),
                model=request.match_info["model"],
                finish=item.finish_reason,
                usage=reply_usage(self._usage(rec, item.text()), item),
                metadata=candidate_metadata(item),
            )
        )

    async def _count(self, request: web.Request) -> web.Response:
        rec = await self._record(request)
        if (err := self._auth_error(request)) is not None:
            return err
        if (err := self._unknown_model(request, "countTokens")) is not None:
            return err
        return web.json_response({"totalTokens": self._usage(rec, "")["promptTokenCount"]})

    async def _get_model(self, request: web.Request) -> web.Response:
        await self._record(request)
        if (err := self._auth_error(request)) is not None:
            return err
        if (err := self._unknown_model(request, "get")) is not None:
            return err
        return web.json_response(self.models[request.match_info["model"]])

    async def _list_models(self, request: web.Request) -> web.Response:
        """models.list: pageSize (default 50, at most 1000) and an opaque pageToken."""
        await self._record(request)
        if (err := self._auth_error(request)) is not None:
            return err
        try:
            size = min(int(request.query.get("pageSize") or self.list_page_size), 1000)
            token = request.query.get("pageToken") or ""
            start = int(base64.urlsafe_b64decode(token.encode()).decode()) if token else 0
        except ValueError:
            return self._error(400, "INVALID_ARGUMENT", "Invalid page token or page size.")
        size = size if size > 0 else self.list_page_size
        models = list(self.models.values())
        body: dict[str, Any] = {"models": models[start : start + size]}
        if start + size < len(models):
            body["nextPageToken"] = base64.urlsafe_b64encode(str(start + size).encode()).decode()
        return web.json_response(body)

    async def _upload(self, request: web.Request) -> web.Response:
        upload_id = request.query.get("upload_id")
        if upload_id is None:
            rec = await self._record(request)
            if (err := self._auth_error(request)) is not None:
                return err
            if request.headers.get("X-Goog-Upload-Protocol") != "resumable":
                return self._error(400, "INVALID_ARGUMENT", "only resumable uploads are supported")
            meta = (rec.body or {}).get("file", {})
            upload_id = secrets.token_hex(8)
            self.uploads[upload_id] = {
                "size": int(request.headers.get("X-Goog-Upload-Header-Content-Length", "0")),
                "mime": request.headers.get("X-Goog-Upload-Header-Content-Type")
                or meta.get("mimeType")
                or meta.get("mime_type"),
                "display": meta.get("displayName") or meta.get("display_name") or "",
                "data": bytearray(),
            }
            ver = request.match_info["ver"]
            url = (
                f"{self.base_url}/upload/{ver}/files"
                f"?upload_id={upload_id}&upload_protocol=resumable"
            )
            return web.Response(
                headers={"X-Goog-Upload-URL": url, "X-Goog-Upload-Status": "active"}
            )
        state = self.uploads.get(upload_id)
        data = await request.read()
        self.requests.append(
            Recorded(
                request.method,
                request.path,
                dict(request.query),
                dict(request.headers),
                None,
                len(data),
            )
        )
        if state is None:
            return self._error(404, "NOT_FOUND", "unknown upload")
        offset = int(request.headers.get("X-Goog-Upload-Offset", "0"))
        if offset != len(state["data"]):
            return self._error(400, "INVALID_ARGUMENT", f"bad offset {offset}")
        state["data"].extend(data)
        command = request.headers.get("X-Goog-Upload-Command", "")
        if "finalize" not in command:
            return web.Response(headers={"X-Goog-Upload-Status": "active"})
        fid = secrets.token_hex(6)
        blob = bytes(state["data"])
        now = datetime.now(UTC)
        ver = request.match_info["ver"]
        self.files[fid] = {
            "name": f"files/{fid}",
            "displayName": state["display"],
            "mimeType": state["mime"],
            "sizeBytes": str(len(blob)),
            "createTime": now.isoformat().replace("+00:00", "Z"),
            "expirationTime": (now + self.file_lifetime).isoformat(),
            "sha256Hash": base64.b64encode(hashlib.sha256(blob).digest()).decode(),
            "uri": f"{self.base_url}/{ver}/files/{fid}",
            "state": "PROCESSING" if self.processing_polls > 0 else "ACTIVE",
            "_polls": self.processing_polls,
        }
        self.file_bytes[fid] = blob
        del self.uploads[upload_id]
        return web.json_response(
            {"file": self._public(self.files[fid])}, headers={"X-Goog-Upload-Status": "final"}
        )

    @staticmethod
    def _public(f: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in f.items() if not k.startswith("_")}

    async def _get_file(self, request: web.Request) -> web.Response:
        await self._record(request)
        if (err := self._auth_error(request)) is not None:
            return err
        f = self.files.get(request.match_info["id"])
        if f is None:
            return self._error(404, "NOT_FOUND", "File not found")
        if f["state"] == "PROCESSING":
            f["_polls"] -= 1
            if f["_polls"] <= 0:
                f["state"] = "ACTIVE"
        return web.json_response(self._public(f))
