"""Slack display names by user id: users.info once per user, shared by concurrent callers;
a failed lookup shows the id and is tried again NAME_RETRY_S later, not cached forever."""

from __future__ import annotations

import asyncio
import logging

from slack_sdk.web.async_client import AsyncWebClient

log = logging.getLogger(__name__)

NAME_RETRY_S = 300.0


class Names:
    """Display names, cached (user ids are unique across workspaces)."""

    def __init__(self) -> None:
        self._names: dict[str, str] = {}
        self._failed: dict[str, float] = {}  # uid -> when users.info last failed
        self.retry_s = NAME_RETRY_S
        self._lookups: dict[str, asyncio.Future[str | None]] = {}

    async def of(self, ids: list[str], client: AsyncWebClient) -> dict[str, str]:
        """Display names (the id where unknown); concurrent lookups of one user share one
        users.info call."""
        now = asyncio.get_running_loop().time()
        tasks: dict[str, asyncio.Future[str | None]] = {}
        for uid in {i for i in ids if i and i not in self._names}:
            failed_at = self._failed.get(uid)
            if failed_at is not None and now - failed_at < self.retry_s:
                continue  # failed moments ago: do not ask Slack again for every message
            task = self._lookups.get(uid)
            if task is None:
                task = self._lookups[uid] = asyncio.ensure_future(lookup(uid, client))
            tasks[uid] = task  # held here: another caller may drop it from the map first
        for uid, task in tasks.items():
            name = await asyncio.shield(task)
            self._lookups.pop(uid, None)
            if name is None:
                self._failed[uid] = now
            else:
                self._names[uid] = name
                self._failed.pop(uid, None)
        return {i: self._names.get(i, i) for i in ids}


async def lookup(uid: str, client: AsyncWebClient) -> str | None:
    """A user's display name from users.info (None when the call fails)."""
    try:
        info = (await client.users_info(user=uid))["user"]
    except Exception as exc:
        log.warning("slack: users.info for %s failed, showing the id for now: %r", uid, exc)
        return None
    if not isinstance(info, dict):
        log.warning("slack: users.info for %s gave no user object", uid)
        return None
    profile = info.get("profile")
    profile = profile if isinstance(profile, dict) else {}
    for name in (
        profile.get("display_name"),
        profile.get("real_name"),
        info.get("real_name"),
        info.get("name"),
    ):
        if isinstance(name, str) and name.strip():
            return name.strip()[:80]
    return uid
