"""Models that exist: the fake's models.get/list, the start-up check, retirement mid-run.

The fake Gemini is driven through the real google-genai SDK; `gemini-bot run` and
`gemini-bot console` run as subprocesses against it, as deployed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
from pathlib import Path

import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from bot.errors import ModelNotFound, ModelUnavailable
from bot.gemini import GeminiChatModel
from bot.model_check import ModelInfo, family, missing_models
from bot.settings import Settings
from bot.types import Persona
from tests.fakes.gemini import API_KEY, DEFAULT_MODEL, FakeGemini, Reply

ADMIN_NOTE = (
    "The model {} is no longer available from Google; an admin must change GEMINI_MODEL "
    "or the persona's model."
)


def sdk_client(fake: FakeGemini) -> genai.Client:
    return genai.Client(
        api_key=API_KEY,
        http_options=types.HttpOptions(
            base_url=fake.base_url,
            api_version="v1beta",
            retry_options=types.HttpRetryOptions(attempts=1),
        ),
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def run_cli(command: str, data: Path, *lines: str, **env: str) -> tuple[int | None, str, str]:
    """`python -m bot COMMAND` with a clean environment plus `env`, fed `lines` on stdin."""
    full = {k: v for k, v in os.environ.items() if k not in Settings.model_fields}
    full.update(GEMINI_API_KEY=API_KEY, DATA_DIR=str(data), HTTP_PORT="0", USER="tester", **env)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        command,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=full,
        cwd=data,
    )
    out, err = await asyncio.wait_for(
        proc.communicate("".join(line + "\n" for line in lines).encode()), 60
    )
    return proc.returncode, out.decode(), err.decode()


def problem_lines(stderr: str) -> list[str]:
    """The start-up problem lines (platform libraries may log their own warnings too)."""
    assert "Traceback" not in stderr, stderr
    return [line for line in stderr.splitlines() if line.startswith("gemini-bot:")]


def run_env(fake: FakeGemini, model: str) -> dict[str, str]:
    """Enough settings for `run` to pass its platform check (Discord is never reached)."""
    closed = f"127.0.0.1:{free_port()}"
    return {
        "GEMINI_BASE_URL": fake.base_url,
        "GEMINI_MODEL": model,
        "DISCORD_TOKEN": "unused.discord.token",
        "DISCORD_API_URL": f"http://{closed}/api/v10",
        "DISCORD_GATEWAY_URL": f"ws://{closed}/",
    }


# -- the fake, through the real SDK ---------------------------------------------------


async def test_fake_models_get_has_the_real_shape(fake_gemini: FakeGemini) -> None:
    client = sdk_client(fake_gemini)
    try:
        m = await client.aio.models.get(model=DEFAULT_MODEL)
    finally:
        await client.aio.aclose()
    assert m.name == f"models/{DEFAULT_MODEL}"
    assert m.display_name == "Gemini 3.8 Flash"
    assert m.version == "001"
    assert m.input_token_limit == 1_048_576 and m.output_token_limit == 65_536
    assert m.supported_actions is not None and "generateContent" in m.supported_actions
    assert fake_gemini.model_requests()[0].path == f"/v1beta/models/{DEFAULT_MODEL}"


async def test_fake_models_list_pages_like_gemini(fake_gemini: FakeGemini) -> None:
    client = sdk_client(fake_gemini)
    try:
        pager = await client.aio.models.list(config={"page_size": 3})
        assert len(pager.page) == 3
        names = [m.name async for m in pager]
    finally:
        await client.aio.aclose()
    assert names == [f"models/{n}" for n in fake_gemini.models]
    lists = fake_gemini.model_requests()
    assert [r.query.get("pageSize") for r in lists] == ["3"] * len(lists)
    assert len(lists) == -(-len(fake_gemini.models) // 3)
    assert "pageToken" not in lists[0].query and all("pageToken" in r.query for r in lists[1:])


async def test_fake_404s_unknown_and_retired_models(fake_gemini: FakeGemini) -> None:
    client = sdk_client(fake_gemini)
    try:
        with pytest.raises(genai_errors.ClientError) as err:
            await client.aio.models.get(model="gemini-2.5-flash")
        assert err.value.code == 404 and err.value.status == "NOT_FOUND"
        assert err.value.message == (
            "models/gemini-2.5-flash is not found for API version v1beta, or is not "
            "supported for generateContent. Call ListModels to see the list of available "
            "models and their supported methods."
        )
        fake_gemini.enqueue(Reply(["fine"]))
        r = await client.aio.models.generate_content(model=DEFAULT_MODEL, contents="hi")
        assert r.text == "fine"
        fake_gemini.retire(DEFAULT_MODEL)
        for call in (
            client.aio.models.generate_content(model=DEFAULT_MODEL, contents="hi"),
            client.aio.models.get(model=DEFAULT_MODEL),
            # An embedding model exists but cannot generate content.
            client.aio.models.generate_content(model="gemini-embedding-001", contents="hi"),
        ):
            with pytest.raises(genai_errors.ClientError) as err:
                await call
            assert err.value.code == 404 and err.value.status == "NOT_FOUND"
        with pytest.raises(genai_errors.ClientError) as err:
            stream = await client.aio.models.generate_content_stream(
                model=DEFAULT_MODEL, contents="hi"
            )
            async for _ in stream:
                pass
        assert err.value.code == 404
        assert DEFAULT_MODEL not in [m.name async for m in await client.aio.models.list()]
    finally:
        await client.aio.aclose()


# -- GeminiChatModel and the check, in process ----------------------------------------


async def test_client_checks_and_lists_models(
    gemini: GeminiChatModel, fake_gemini: FakeGemini
) -> None:
    fake_gemini.list_page_size = 4  # several pages: list_models must follow the tokens
    await gemini.check_model(DEFAULT_MODEL)
    with pytest.raises(ModelNotFound) as err:
        await gemini.check_model("gemini-2.5-flash")
    assert err.value.model == "gemini-2.5-flash"
    models = await gemini.list_models()
    assert [m.name for m in models] == list(fake_gemini.models)
    assert ModelInfo("gemini-embedding-001", ()).generates is False
    assert {m.name for m in models if not m.generates} == {"gemini-embedding-001"}


def test_family_rule() -> None:
    for name in ("gemini-2.5-flash", "gemini-3.8-flash", "gemini-3-flash-preview"):
        assert family(name) == "gemini-*-flash"
    assert family("models/gemini-2.0-flash-001") == "gemini-*-flash"
    assert family("gemini-flash-latest") == "gemini-*-flash"
    assert family("gemini-3.5-flash-lite") == "gemini-*-flash-lite"
    assert family("gemini-2.5-pro-preview-06-05") == "gemini-*-pro"


async def test_check_names_persona_and_same_family(
    gemini: GeminiChatModel, fake_gemini: FakeGemini
) -> None:
    personas = [
        Persona("coder", "d", "s", model="gemini-2.5-pro"),
        Persona("fast", "d", "s", model="gemini-3.5-flash-lite"),
        Persona("plain", "d", "s"),
    ]
    lines = await missing_models(
        gemini, default_model=DEFAULT_MODEL, personas=personas, source="p.toml"
    )
    assert lines == [
        "model gemini-2.5-pro, named by persona 'coder' in p.toml, is not available from "
        "Gemini (retired or misspelt); available gemini-*-pro models: gemini-3.1-pro-preview"
    ]


class FlakyCatalog:
    """A catalog whose Gemini answers 503: the check must warn, not stop."""

    def __init__(self) -> None:
        self.checked: list[str] = []

    async def check_model(self, name: str) -> None:
        self.checked.append(name)
        raise ModelUnavailable("503 UNAVAILABLE: The model is overloaded.")

    async def list_models(self) -> list[ModelInfo]:
        raise AssertionError("nothing is missing, so nothing is listed")


async def test_server_error_during_check_is_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    catalog = FlakyCatalog()
    personas = [Persona("a", "d", "s", model="gemini-3.7-flash")]
    with caplog.at_level(logging.WARNING, logger="bot.model_check"):
        lines = await missing_models(catalog, default_model=DEFAULT_MODEL, personas=personas)
    assert lines == []
    assert catalog.checked == [DEFAULT_MODEL]  # the first failure ends the check
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "starting anyway" in warnings[0].getMessage()


# -- start-up, as deployed -------------------------------------------------------------


async def test_run_stops_on_a_retired_default_model(
    fake_gemini: FakeGemini, tmp_path: Path
) -> None:
    code, _out, err = await run_cli("run", tmp_path, **run_env(fake_gemini, "gemini-2.5-flash"))
    assert code == 2
    assert problem_lines(err) == [
        "gemini-bot: model gemini-2.5-flash, named by GEMINI_MODEL, is not available from "
        "Gemini (retired or misspelt); available gemini-*-flash models: gemini-3.8-flash, "
        "gemini-3.7-flash, gemini-3.6-flash, gemini-3.5-flash, gemini-3-flash-preview"
    ]
    paths = [r.path for r in fake_gemini.model_requests()]
    assert paths[0] == "/v1beta/models/gemini-2.5-flash" and paths[-1] == "/v1beta/models"
    assert not fake_gemini.generate_requests()


async def test_run_stops_on_a_persona_naming_a_retired_model(
    fake_gemini: FakeGemini, tmp_path: Path
) -> None:
    personas = tmp_path / "personas.toml"
    personas.write_text(
        '[personas.assistant]\ndescription = "d"\nsystem_instruction = "s"\n\n'
        '[personas.coder]\ndescription = "d"\nsystem_instruction = "s"\n'
        'model = "gemini-2.5-pro"\n'
    )
    code, _out, err = await run_cli(
        "run",
        tmp_path,
        PERSONAS_FILE=str(personas),
        **run_env(fake_gemini, DEFAULT_MODEL),
    )
    assert code == 2
    assert problem_lines(err) == [
        f"gemini-bot: model gemini-2.5-pro, named by persona 'coder' in {personas}, is not "
        "available from Gemini (retired or misspelt); available gemini-*-pro models: "
        "gemini-3.1-pro-preview"
    ]


async def test_console_starts_with_a_warning_when_gemini_is_unreachable(tmp_path: Path) -> None:
    code, out, err = await run_cli(
        "console",
        tmp_path,
        "hello",
        GEMINI_BASE_URL=f"http://127.0.0.1:{free_port()}",
        GEMINI_MAX_RETRIES="0",
    )
    assert code == 0, err
    warnings = [line for line in err.splitlines() if " WARNING " in line]
    assert len(warnings) == 1 and "could not check the Gemini models" in warnings[0]
    assert "thread: " in err  # start-up went on to the console
    assert out.startswith("[!] Gemini is unavailable")


async def test_model_retired_mid_run_tells_users_and_logs_once(
    fake_gemini: FakeGemini, tmp_path: Path
) -> None:
    def answer_then_retire(_rec: object) -> Reply:
        fake_gemini.retire(DEFAULT_MODEL)  # Google shuts it down right after this answer
        return Reply(["Still here."])

    fake_gemini.responder = answer_then_retire
    code, out, err = await run_cli(
        "console",
        tmp_path,
        "one",
        "two",
        "three",
        "four",
        GEMINI_BASE_URL=fake_gemini.base_url,
        GEMINI_MODEL=DEFAULT_MODEL,
    )
    assert code == 0, err
    note = ADMIN_NOTE.format(DEFAULT_MODEL)
    assert out.splitlines() == ["Still here.", *[f"[!] {note}"] * 3]
    errors = [line for line in err.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and DEFAULT_MODEL in errors[0], err
    assert len(fake_gemini.generate_requests()) == 4  # a 404 is not retried
