"""Who may use the bot where, and who is an admin.

Ids are platform-qualified: `slack:U123`, `discord:1234`, `discord:role:5678`,
`slack:C042` / `discord:987` for channels. An empty allow list allows everyone.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from bot.settings import Settings, id_set


@dataclass(frozen=True, slots=True)
class AccessPolicy:
    """Allow lists and admins."""

    admins: frozenset[str] = frozenset()
    allowed_users: frozenset[str] = frozenset()
    allowed_channels: frozenset[str] = frozenset()

    @classmethod
    def from_settings(cls, settings: Settings) -> AccessPolicy:
        """Build from ADMIN_USERS, ALLOWED_USERS and ALLOWED_CHANNELS."""
        return cls(
            id_set(settings.ADMIN_USERS),
            id_set(settings.ALLOWED_USERS),
            id_set(settings.ALLOWED_CHANNELS),
        )

    @staticmethod
    def _ids(platform: str, user_id: str, roles: Iterable[str]) -> set[str]:
        return {f"{platform}:{user_id}", *(f"{platform}:role:{r}" for r in roles)}

    def is_admin(self, platform: str, user_id: str, roles: Iterable[str] = ()) -> bool:
        """True when the user (or one of their roles) is listed in ADMIN_USERS."""
        return bool(self._ids(platform, user_id, roles) & self.admins)

    def user_allowed(self, platform: str, user_id: str, roles: Iterable[str] = ()) -> bool:
        """True when ALLOWED_USERS is empty or lists the user, a role of theirs, or an admin."""
        if not self.allowed_users or self.is_admin(platform, user_id, roles):
            return True
        return bool(self._ids(platform, user_id, roles) & self.allowed_users)

    def channel_allowed(self, platform: str, channel_id: str) -> bool:
        """True when ALLOWED_CHANNELS is empty or lists the channel."""
        return not self.allowed_channels or f"{platform}:{channel_id}" in self.allowed_channels

    def allows(
        self, platform: str, user_id: str, channel_id: str, roles: Iterable[str] = ()
    ) -> bool:
        """User and channel both allowed (DM channels count as channels too)."""
        return self.user_allowed(platform, user_id, roles) and self.channel_allowed(
            platform, channel_id
        )
