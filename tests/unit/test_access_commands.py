from __future__ import annotations

import pytest

from bot.access import AccessPolicy
from bot.commands import Commands, summarize_prompt
from bot.errors import AccessDenied, UnknownPersona
from bot.personas import load_personas
from bot.types import ThreadKey, Usage
from storage.memory import MemoryStore
from tests.conftest import ROOT

KEY = ThreadKey("slack", "T", "C", "1.0")


def test_empty_lists_allow_everyone() -> None:
    p = AccessPolicy()
    assert p.allows("slack", "U1", "C1")
    assert not p.is_admin("slack", "U1")


def test_allow_lists_users_roles_channels_and_admins() -> None:
    p = AccessPolicy(
        admins=frozenset({"slack:UADMIN", "discord:role:99"}),
        allowed_users=frozenset({"slack:U1", "discord:role:7"}),
        allowed_channels=frozenset({"slack:C1", "discord:555"}),
    )
    assert p.allows("slack", "U1", "C1")
    assert not p.allows("slack", "U2", "C1")
    assert not p.allows("slack", "U1", "C2")
    assert p.allows("slack", "UADMIN", "C1")  # admins are always allowed users
    assert p.allows("discord", "123", "555", roles=["7"])
    assert p.is_admin("discord", "123", roles=["99"])
    assert not p.user_allowed("discord", "U1")  # ids are platform-qualified


@pytest.fixture
def commands() -> Commands:
    return Commands(
        store=MemoryStore(), personas=load_personas(ROOT / "personas.toml", default="assistant")
    )


async def test_persona_commands(commands: Commands) -> None:
    text = await commands.list_personas(KEY)
    assert "• assistant (this thread, default)" in text
    assert (
        await commands.set_thread_persona(KEY, "Coder") == "This thread now uses the coder persona."
    )
    assert "• coder (this thread)" in await commands.list_personas(KEY)
    with pytest.raises(UnknownPersona):
        await commands.set_thread_persona(KEY, "nope")


async def test_channel_default_needs_admin(commands: Commands) -> None:
    with pytest.raises(AccessDenied):
        await commands.set_channel_persona(
            platform="slack", workspace_id="T", channel_id="C", name="editor", is_admin=False
        )
    await commands.set_channel_persona(
        platform="slack", workspace_id="T", channel_id="C", name="editor", is_admin=True
    )
    assert "editor (this thread, channel default)" in await commands.list_personas(KEY)
    msg = await commands.set_channel_persona(
        platform="slack", workspace_id="T", channel_id="C", name="default", is_admin=True
    )
    assert "default persona (assistant)" in msg


async def test_forget_usage_help(commands: Commands) -> None:
    assert await commands.forget(KEY) == "There was nothing stored for this thread."
    await commands.store.get_or_create_conversation(KEY)
    assert (await commands.forget(KEY)).startswith("Forgotten.")
    from datetime import UTC, datetime

    await commands.store.add_usage(
        "slack", "U1", day=datetime.now(UTC).date().isoformat(), usage=Usage(1200, 34)
    )
    assert "1 reply, 1,200 input tokens, 34 output tokens" in await commands.usage("slack", "U1")
    await commands.store.add_usage(
        "slack", "U1", day=datetime.now(UTC).date().isoformat(), usage=Usage(800, 6, 300, 500)
    )
    assert (await commands.usage("slack", "U1")).endswith(
        "2 replies, 2,000 input tokens, 40 output tokens, 300 tokens of tool results "
        "(search, links, code); 500 of the input tokens came from Gemini's cache."
    )
    help_text = commands.help(commands=[("/forget", "forget this thread")])
    assert "/forget: forget this thread" in help_text and "summarizer" in help_text
    assert commands.summarize_persona() == "summarizer"
    assert summarize_prompt("risks") == "Summarise the attached file(s). Focus on: risks"
