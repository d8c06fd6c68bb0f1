"""Which Gemini tools a turn may use: the persona asks, operators and channel admins allow.

A persona names the tools it wants (`tools = [...]` in personas.toml). GEMINI_TOOLS_ALLOWED
is the operator's list; a channel admin can switch a tool off for one channel. A turn sends
Gemini only the tools all three agree on.
"""

from __future__ import annotations

from dataclasses import replace

from bot.errors import AccessDenied, BotError
from bot.ports import SettingsStore
from bot.settings import TOOLS
from bot.types import Persona, ThreadKey

LABELS = {
    "google_search": "Google Search grounding",
    "url_context": "Gemini reads the links in messages",
    "code_execution": "code execution",
}


class ToolPolicy:
    """The operator's allowed tools plus each channel's switched-off ones."""

    def __init__(self, store: SettingsStore, *, allowed: frozenset[str] = frozenset(TOOLS)) -> None:
        self.store = store
        self.allowed = allowed

    async def apply(self, persona: Persona, key: ThreadKey) -> Persona:
        """`persona` with only the tools this channel may use."""
        if not persona.tools:
            return persona
        off = await self.store.get_channel_tools_off(key.platform, key.workspace_id, key.channel_id)
        tools = tuple(t for t in persona.tools if t in self.allowed and t not in off)
        return persona if tools == persona.tools else replace(persona, tools=tools)

    async def describe(self, platform: str, workspace_id: str, channel_id: str) -> str:
        """Each tool and whether it is on here."""
        off = await self.store.get_channel_tools_off(platform, workspace_id, channel_id)
        lines = ["Tools in this channel:"]
        for tool in TOOLS:
            if tool not in self.allowed:
                state = "off (not allowed by the operator)"
            else:
                state = "off (switched off by an admin)" if tool in off else "on"
            lines.append(f"• {tool} ({LABELS[tool]}): {state}")
        lines.append(
            "Personas use the tools they name; admins switch one with: off TOOL / on TOOL."
        )
        return "\n".join(lines)

    async def command(
        self, *, platform: str, workspace_id: str, channel_id: str, args: str, is_admin: bool
    ) -> str:
        """`[on|off TOOL]`: the channel's tools, or (admins) switch one."""
        words = args.lower().split()
        if not words:
            return await self.describe(platform, workspace_id, channel_id)
        if len(words) == 2 and words[0] in ("on", "off"):
            return await self.switch(
                platform=platform,
                workspace_id=workspace_id,
                channel_id=channel_id,
                tool=words[1],
                on=words[0] == "on",
                is_admin=is_admin,
            )
        return f"Usage: [on|off TOOL], tools: {', '.join(TOOLS)}."

    async def switch(
        self,
        *,
        platform: str,
        workspace_id: str,
        channel_id: str,
        tool: str,
        on: bool,
        is_admin: bool,
    ) -> str:
        """Switch a tool on or off for one channel (admins only)."""
        if not is_admin:
            raise AccessDenied(user_message="Only admins can switch tools on or off.")
        tool = tool.strip().lower()
        if tool not in TOOLS:
            raise BotError(
                f"unknown tool {tool!r}",
                user_message=f"Unknown tool {tool!r}; tools: {', '.join(TOOLS)}.",
            )
        off = set(await self.store.get_channel_tools_off(platform, workspace_id, channel_id))
        if on:
            off.discard(tool)
        else:
            off.add(tool)
        await self.store.set_channel_tools_off(platform, workspace_id, channel_id, frozenset(off))
        if on and tool not in self.allowed:
            return f"{tool} is on for this channel, but the operator does not allow it."
        return f"{tool} is now {'on' if on else 'off'} in this channel."
