"""SqliteStore's channel settings: a channel's default persona and its switched-off tools."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from storage.cache import LRU


class ChannelSettings:
    """Channel settings on SqliteStore's connection (a mixin: SqliteStore provides the
    statement helpers and the persona cache)."""

    if TYPE_CHECKING:
        _channels: LRU[tuple[str, str, str], str | None]
        _tools_off: LRU[tuple[str, str, str], frozenset[str]]

        async def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]: ...

        async def _write(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]: ...

    async def get_channel_persona(
        self, platform: str, workspace_id: str, channel_id: str
    ) -> str | None:
        """The channel's default persona."""
        ckey = (platform, workspace_id, channel_id)
        if ckey in self._channels:
            return self._channels.get(ckey)
        rows = await self._rows(
            "SELECT default_persona FROM channel_settings "
            "WHERE platform=? AND workspace_id=? AND channel_id=?",
            (platform, workspace_id, channel_id),
        )
        row = rows[0] if rows else None
        persona = row[0] if row else None
        self._channels.put(ckey, persona)
        return persona

    async def set_channel_persona(
        self, platform: str, workspace_id: str, channel_id: str, persona: str | None
    ) -> None:
        """Set or clear the channel's default persona."""
        await self._write(
            "INSERT INTO channel_settings (platform, workspace_id, channel_id, default_persona) "
            "VALUES (?, ?, ?, ?) "
            "ON CONFLICT DO UPDATE SET default_persona=excluded.default_persona",
            (platform, workspace_id, channel_id, persona),
        )
        self._channels.put((platform, workspace_id, channel_id), persona)

    async def get_channel_tools_off(
        self, platform: str, workspace_id: str, channel_id: str
    ) -> frozenset[str]:
        """Tools a channel admin switched off in this channel (read once per turn with tools:
        cached, as the persona is; this store is the database's only writer)."""
        ckey = (platform, workspace_id, channel_id)
        if ckey in self._tools_off:
            return self._tools_off.get(ckey) or frozenset()
        rows = await self._rows(
            "SELECT tools_off FROM channel_settings "
            "WHERE platform=? AND workspace_id=? AND channel_id=?",
            (platform, workspace_id, channel_id),
        )
        raw = str(rows[0][0]) if rows else ""
        off = frozenset(t for t in raw.split(",") if t)
        self._tools_off.put(ckey, off)
        return off

    async def set_channel_tools_off(
        self, platform: str, workspace_id: str, channel_id: str, tools: frozenset[str]
    ) -> None:
        """Replace the set of tools switched off in a channel."""
        await self._write(
            "INSERT INTO channel_settings (platform, workspace_id, channel_id, tools_off) "
            "VALUES (?, ?, ?, ?) ON CONFLICT DO UPDATE SET tools_off=excluded.tools_off",
            (platform, workspace_id, channel_id, ",".join(sorted(tools))),
        )
        self._tools_off.put((platform, workspace_id, channel_id), frozenset(tools))
