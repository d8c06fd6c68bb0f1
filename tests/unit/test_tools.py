"""Which tools a turn sends: persona ∩ GEMINI_TOOLS_ALLOWED − the channel's switched-off ones."""

from __future__ import annotations

import pytest

from bot.errors import AccessDenied, BotError
from bot.settings import SettingsError, load_settings
from bot.tools import ToolPolicy
from bot.types import Persona, ThreadKey
from storage.memory import MemoryStore

KEY = ThreadKey("slack", "T1", "C1", "1.0")
RESEARCHER = Persona("r", "d", "s", tools=("google_search", "url_context", "code_execution"))


async def test_operator_and_channel_narrow_a_personas_tools() -> None:
    store = MemoryStore()
    policy = ToolPolicy(store, allowed=frozenset({"google_search", "url_context"}))
    assert (await policy.apply(RESEARCHER, KEY)).tools == ("google_search", "url_context")
    said = await policy.switch(
        platform="slack", workspace_id="T1", channel_id="C1", tool="google_search", on=False,
        is_admin=True,
    )  # fmt: skip
    assert said == "google_search is now off in this channel."
    assert (await policy.apply(RESEARCHER, KEY)).tools == ("url_context",)
    other = ThreadKey("slack", "T1", "C2", "1.0")
    assert (await policy.apply(RESEARCHER, other)).tools == ("google_search", "url_context")
    text = await policy.describe("slack", "T1", "C1")
    assert "google_search (Google Search grounding): off (switched off by an admin)" in text
    assert "code_execution (code execution): off (not allowed by the operator)" in text
    await policy.switch(
        platform="slack", workspace_id="T1", channel_id="C1", tool="google_search", on=True,
        is_admin=True,
    )  # fmt: skip
    assert (await policy.apply(RESEARCHER, KEY)).tools == ("google_search", "url_context")


async def test_only_admins_switch_and_only_known_tools() -> None:
    policy = ToolPolicy(MemoryStore())
    with pytest.raises(AccessDenied):
        await policy.switch(
            platform="slack", workspace_id="T1", channel_id="C1", tool="url_context", on=False,
            is_admin=False,
        )  # fmt: skip
    with pytest.raises(BotError) as err:
        await policy.switch(
            platform="slack", workspace_id="T1", channel_id="C1", tool="teleport", on=False,
            is_admin=True,
        )  # fmt: skip
    assert "Unknown tool 'teleport'" in err.value.user_message


def test_tools_allowed_setting() -> None:
    assert load_settings(_env_file=None).tools_allowed == {
        "google_search",
        "url_context",
        "code_execution",
    }
    s = load_settings(_env_file=None, GEMINI_TOOLS_ALLOWED="url_context, ")
    assert s.tools_allowed == {"url_context"}
    assert load_settings(_env_file=None, GEMINI_TOOLS_ALLOWED="").tools_allowed == frozenset()
    with pytest.raises(SettingsError) as err:
        load_settings(_env_file=None, GEMINI_TOOLS_ALLOWED="google_search,teleport")
    assert "unknown tool(s) teleport" in str(err.value)
