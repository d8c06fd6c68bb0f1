"""Roles, permission overwrites and Discord's permission arithmetic for the fake Discord.

The guild has `@everyone` (id = the guild's), the `gemini-admins` role and the bot's managed
role; members carry role ids. Channels carry `permission_overwrites` (`type` 0 = role,
1 = member) that GUILD_CREATE sends, so discord.py computes `channel.permissions_for(member)`
itself; `permissions()` here computes the same thing for the REST side, following Discord's
"Permission Overwrites" algorithm: base = @everyone | the member's roles (everything with
ADMINISTRATOR or for the owner), then the @everyone overwrite, the member's role overwrites
(denies, then allows) and the member's own overwrite; no VIEW_CHANNEL means no permission at
all. Threads take their parent's overwrites. Changes after connect are dispatched
(CHANNEL_UPDATE, GUILD_ROLE_CREATE/UPDATE, GUILD_MEMBER_UPDATE) so the bot's cache follows.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from tests.fakes.discord_gateway import BOT_ID, GUILD

ADMIN_ROLE = "600000000000000001"
BOT_ROLE = "600000000000000002"

ADMINISTRATOR = 1 << 3
MANAGE_CHANNELS = 1 << 4
VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
ATTACH_FILES = 1 << 15
READ_MESSAGE_HISTORY = 1 << 16
CREATE_PUBLIC_THREADS = 1 << 35
SEND_MESSAGES_IN_THREADS = 1 << 38
ALL = (1 << 41) - 1
EVERYONE = VIEW_CHANNEL | SEND_MESSAGES | READ_MESSAGE_HISTORY | CREATE_PUBLIC_THREADS
EVERYONE |= SEND_MESSAGES_IN_THREADS
BOT = ALL & ~ADMINISTRATOR  # a bot invited with every permission but Administrator
EVERYONE_PERMISSIONS = str(EVERYONE)
ALL_PERMISSIONS = str(ALL)

ROLE_OVERWRITE, MEMBER_OVERWRITE = 0, 1
THREAD_TYPES = (10, 11, 12)


def _role(rid: str, name: str, permissions: int, position: int, **extra: Any) -> dict[str, Any]:
    return {
        "id": rid,
        "name": name,
        "permissions": str(permissions),
        "position": position,
        "color": 0,
        "hoist": False,
        "managed": False,
        "mentionable": False,
        "flags": 0,
        **extra,
    }


def _apply(perms: int, overwrite: dict[str, Any] | None) -> int:
    if overwrite is None:
        return perms
    return (perms & ~int(overwrite["deny"])) | int(overwrite["allow"])


def resolve(
    *,
    roles: dict[str, dict[str, Any]],
    member_id: str,
    member_roles: list[str],
    overwrites: list[dict[str, Any]],
    owner: bool = False,
) -> int:
    """A member's permissions in a guild channel (Discord's documented algorithm)."""
    base = int(roles[GUILD]["permissions"])
    for rid in member_roles:
        if rid in roles:
            base |= int(roles[rid]["permissions"])
    if owner or base & ADMINISTRATOR:
        return ALL
    by_id = {(o["id"], int(o["type"])): o for o in overwrites}
    perms = _apply(base, by_id.get((GUILD, ROLE_OVERWRITE)))
    allow = deny = 0
    for rid in member_roles:
        o = by_id.get((rid, ROLE_OVERWRITE))
        if o is not None:
            allow |= int(o["allow"])
            deny |= int(o["deny"])
    perms = (perms & ~deny) | allow
    perms = _apply(perms, by_id.get((member_id, MEMBER_OVERWRITE)))
    return perms if perms & VIEW_CHANNEL else 0


class PermissionsMixin:
    """Roles and overwrites; FakeDiscord calls `_init_permissions()` in its __init__."""

    channels: dict[str, dict[str, Any]]
    member_roles: dict[str, list[str]]
    owner_id: str
    users: dict[str, dict[str, Any]]

    if TYPE_CHECKING:  # provided by FakeDiscord and the gateway

        def dispatch(self, event: str, data: Any) -> Awaitable[None]: ...

        def _member(self, uid: str) -> dict[str, Any]: ...

    def _init_permissions(self) -> None:
        self.roles: dict[str, dict[str, Any]] = {
            GUILD: _role(GUILD, "@everyone", EVERYONE, 0),
            ADMIN_ROLE: _role(ADMIN_ROLE, "gemini-admins", EVERYONE, 1, mentionable=True),
            BOT_ROLE: _role(BOT_ROLE, "gemini", BOT, 2, managed=True, tags={"bot_id": BOT_ID}),
        }
        self.member_roles[BOT_ID] = [BOT_ROLE]

    # -- what tests read ---------------------------------------------------------

    def permissions(self, uid: str, channel_id: str) -> int:
        """What `uid` may do in the channel (DMs: everything)."""
        ch = self.channels[channel_id]
        if not ch.get("guild_id"):
            return ALL
        if ch["type"] in THREAD_TYPES and ch.get("parent_id") in self.channels:
            ch = self.channels[ch["parent_id"]]
        return resolve(
            roles=self.roles,
            member_id=uid,
            member_roles=self.member_roles.get(uid, []),
            overwrites=ch.get("permission_overwrites") or [],
            owner=uid == self.owner_id,
        )

    def can(self, uid: str, channel_id: str, bits: int) -> bool:
        """True when `uid` has every permission in `bits` in the channel."""
        return self.permissions(uid, channel_id) & bits == bits

    # -- what tests change -------------------------------------------------------

    async def set_overwrite(
        self,
        channel_id: str,
        target: str,
        *,
        kind: int = MEMBER_OVERWRITE,
        allow: int = 0,
        deny: int = 0,
    ) -> dict[str, Any]:
        """Set (replace) the overwrite for a member (kind 1) or role (kind 0); CHANNEL_UPDATE."""
        ch = self.channels[channel_id]
        ows = [
            o
            for o in ch.setdefault("permission_overwrites", [])
            if (o["id"], int(o["type"])) != (target, kind)
        ]
        if allow or deny:
            ows.append({"id": target, "type": kind, "allow": str(allow), "deny": str(deny)})
        ch["permission_overwrites"] = ows
        await self.dispatch("CHANNEL_UPDATE", ch)
        return ch

    def _overwrite(self, channel_id: str, target: str, kind: int) -> tuple[int, int]:
        for o in self.channels[channel_id].get("permission_overwrites") or []:
            if (o["id"], int(o["type"])) == (target, kind):
                return int(o["allow"]), int(o["deny"])
        return 0, 0

    async def deny(
        self, channel_id: str, target: str, bits: int, *, kind: int = MEMBER_OVERWRITE
    ) -> dict[str, Any]:
        """Add `bits` to the target's deny (and take them from its allow)."""
        allow, deny = self._overwrite(channel_id, target, kind)
        return await self.set_overwrite(
            channel_id, target, kind=kind, allow=allow & ~bits, deny=deny | bits
        )

    async def allow(
        self, channel_id: str, target: str, bits: int, *, kind: int = MEMBER_OVERWRITE
    ) -> dict[str, Any]:
        """Add `bits` to the target's allow (and take them from its deny)."""
        allow, deny = self._overwrite(channel_id, target, kind)
        return await self.set_overwrite(
            channel_id, target, kind=kind, allow=allow | bits, deny=deny & ~bits
        )

    async def hide_channel(self, channel_id: str, from_user: str) -> dict[str, Any]:
        """An overwrite denying VIEW_CHANNEL to that member."""
        return await self.deny(channel_id, from_user, VIEW_CHANNEL)

    async def hide_from_bot(self, channel_id: str) -> dict[str, Any]:
        """The bot can no longer see the channel (REST answers 403 50001 there)."""
        return await self.hide_channel(channel_id, BOT_ID)

    async def add_role(
        self, rid: str, name: str, permissions: int, *, members: list[str] | None = None
    ) -> dict[str, Any]:
        """A new (or changed) guild role, optionally given to some members."""
        event = "GUILD_ROLE_UPDATE" if rid in self.roles else "GUILD_ROLE_CREATE"
        role = _role(rid, name, permissions, len(self.roles))
        self.roles[rid] = role
        await self.dispatch(event, {"guild_id": GUILD, "role": role})
        for uid in members or []:
            await self.set_roles(uid, [*self.member_roles.get(uid, []), rid])
        return role

    async def set_roles(self, uid: str, roles: list[str]) -> None:
        """Replace a member's roles; GUILD_MEMBER_UPDATE."""
        self.member_roles[uid] = list(dict.fromkeys(roles))
        await self.dispatch(
            "GUILD_MEMBER_UPDATE", {**self._member(uid), "guild_id": GUILD, "user": self.users[uid]}
        )

    def _guild_roles(self) -> list[dict[str, Any]]:
        return list(self.roles.values())
