"""Opt-in check against the real Gemini API: set GEMINI_LIVE_API_KEY to run it."""

from __future__ import annotations

import os

import pytest

from bot.gemini import GeminiChatModel
from bot.ports import Finished, ModelContent, TextDelta
from bot.types import Persona

KEY = os.environ.get("GEMINI_LIVE_API_KEY")
pytestmark = [pytest.mark.live, pytest.mark.skipif(not KEY, reason="GEMINI_LIVE_API_KEY not set")]


async def test_real_gemini_streams_and_accepts_an_upload() -> None:
    assert KEY
    model = GeminiChatModel(
        api_key=KEY, default_model=os.environ.get("GEMINI_MODEL", "gemini-3.8-flash")
    )
    try:
        text, finished = "", None
        persona = Persona("t", "t", "Answer in one word.")
        async for ev in model.stream(
            persona=persona, history=[], message=ModelContent("user", ("Capital of France?",))
        ):
            if isinstance(ev, TextDelta):
                text += ev.text
            elif isinstance(ev, Finished):
                finished = ev
        assert "paris" in text.lower()
        assert finished is not None and finished.usage.prompt_tokens > 0
        remote = await model.upload(
            data=b"hello from gemini-bot", mime_type="text/plain", display_name="t.txt"
        )
        assert remote.uri.startswith("https://")
    finally:
        await model.aclose()
