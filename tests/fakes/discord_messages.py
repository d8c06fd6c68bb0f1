"""Messages of the fake Discord: building them, uploads, the bot's writes and edits.

A message is a plain dict in `messages[channel_id][message_id]` (its `allowed_mentions` are
kept for the tests and left out of what the API returns). The bot's files come as
multipart `files[n]` parts (see discord_wire.py for the size limits) and become attachments
on the fake CDN with their bytes, filename and media type. Flags: a create keeps
SUPPRESS_EMBEDS, SUPPRESS_NOTIFICATIONS, IS_VOICE_MESSAGE and IS_COMPONENTS_V2; an edit may
only toggle SUPPRESS_EMBEDS; a message with SUPPRESS_EMBEDS has no embeds. Creating needs
SEND_MESSAGES (SEND_MESSAGES_IN_THREADS in threads; 403 50013), a reply READ_MESSAGE_HISTORY
(403 160002), a DM a recipient who accepts DMs (403 50007); an empty message is 400 50006.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from tests.fakes.discord_gateway import BOT_ID
from tests.fakes.discord_history import iso, now_iso, snowflake_ms
from tests.fakes.discord_perms import (
    READ_MESSAGE_HISTORY,
    SEND_MESSAGES,
    SEND_MESSAGES_IN_THREADS,
    THREAD_TYPES,
)
from tests.fakes.discord_wire import (
    CREATE_FLAGS,
    SUPPRESS_EMBEDS,
    Upload,
    attachment_meta,
    content_error,
    content_type_of,
    error,
    image_size,
    json_response,
    missing_permissions,
)


class MessagesMixin:
    """Messages and files; FakeDiscord provides users, channels and the gateway."""

    users: dict[str, dict[str, Any]]
    channels: dict[str, dict[str, Any]]
    messages: dict[str, dict[str, dict[str, Any]]]
    files: dict[str, bytes]
    attachments: dict[str, dict[str, Any]]
    closed_dms: set[str]

    if TYPE_CHECKING:  # provided by FakeDiscord and its other mixins

        @property
        def cdn(self) -> str: ...

        def dispatch(self, event: str, data: Any) -> Awaitable[None]: ...

        def snowflake(self) -> str: ...

        def can(self, uid: str, channel_id: str, bits: int) -> bool: ...

        def _member(self, uid: str) -> dict[str, Any]: ...

    def _message(
        self,
        channel_id: str,
        author_id: str,
        content: str,
        *,
        attachments: list[dict[str, Any]] | None = None,
        reference: str | None = None,
        allowed_mentions: dict[str, Any] | None = None,
        embeds: list[dict[str, Any]] | None = None,
        flags: int = 0,
        mid: str | None = None,
        ms: int | None = None,
        store: bool = True,
    ) -> dict[str, Any]:
        """A message dict; stored in `messages` unless `store` is False (ephemeral ones)."""
        ch = self.channels.get(channel_id, {})
        mid = mid or self.snowflake()
        mentions = [
            self.users[uid]
            for uid in self.users
            if f"<@{uid}>" in content or f"<@!{uid}>" in content
        ]
        msg: dict[str, Any] = {
            "id": mid,
            "channel_id": channel_id,
            "author": self.users[author_id],
            "content": content,
            "timestamp": iso(ms if ms is not None else snowflake_ms(mid)),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": mentions,
            "mention_roles": [],
            "attachments": attachments or [],
            "embeds": [] if flags & SUPPRESS_EMBEDS else list(embeds or []),
            "pinned": False,
            "type": 19 if reference else 0,
            "flags": flags,
            "components": [],
            "allowed_mentions": allowed_mentions,
        }
        if ch.get("guild_id"):
            msg["guild_id"] = ch["guild_id"]
            msg["member"] = self._member(author_id)
        if reference:
            msg["message_reference"] = {"message_id": reference, "channel_id": channel_id}
            ref = self.messages.get(channel_id, {}).get(reference)
            if ref is not None:
                msg["referenced_message"] = self.public(ref)
        if store:
            self.messages.setdefault(channel_id, {})[mid] = msg
            if ch and ms is None:
                ch["last_message_id"] = mid
        return msg

    def attachment(self, name: str, data: bytes, content_type: str | None = None) -> dict[str, Any]:
        """An uploaded file, downloadable from the fake CDN."""
        fid = self.snowflake()
        self.files[fid] = data
        url = f"{self.cdn}/{fid}/{name}"
        out: dict[str, Any] = {
            "id": fid,
            "filename": name,
            "size": len(data),
            "url": url,
            "proxy_url": url,
        }
        if content_type:
            out["content_type"] = content_type
        self.attachments[fid] = out
        return out

    def open_dm(self, uid: str) -> str:
        """The DM channel between a user and the bot."""
        for cid, ch in self.channels.items():
            if ch["type"] == 1 and ch["recipients"][0]["id"] == uid:
                return cid
        cid = self.snowflake()
        self.channels[cid] = {
            "id": cid,
            "type": 1,
            "recipients": [self.users[uid]],
            "last_message_id": None,
            "flags": 0,
        }
        self.messages[cid] = {}
        return cid

    async def say(
        self,
        channel_id: str,
        author_id: str,
        content: str,
        *,
        attachments: list[dict[str, Any]] | None = None,
        reference: str | None = None,
    ) -> dict[str, Any]:
        """A user posts a message: stored and dispatched as MESSAGE_CREATE."""
        msg = self._message(
            channel_id, author_id, content, attachments=attachments, reference=reference
        )
        if channel_id in self.thread_members:  # posting in a thread joins it
            self.thread_members[channel_id].add(author_id)
        await self.dispatch("MESSAGE_CREATE", self.public(msg))
        return msg

    @staticmethod
    def public(msg: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in msg.items() if k != "allowed_mentions"}

    def bot_messages(self, channel_id: str) -> list[dict[str, Any]]:
        """The bot's messages in a channel, oldest first."""
        stored = self.messages.get(channel_id, {})
        return [stored[k] for k in sorted(stored, key=int) if stored[k]["author"]["id"] == BOT_ID]

    # -- REST --------------------------------------------------------------------

    async def _post_message(
        self, cid: str, body: Any, files: list[Upload], headers: dict[str, str]
    ) -> web.Response:
        ch = self.channels[cid]
        payload = body or {}
        if ch.get("guild_id"):
            need = SEND_MESSAGES_IN_THREADS if ch["type"] in THREAD_TYPES else SEND_MESSAGES
            if not self.can(BOT_ID, cid, need):
                return missing_permissions()
        elif ch["type"] == 1 and ch["recipients"][0]["id"] in self.closed_dms:
            return error(403, 50007, "Cannot send messages to this user")
        text = str(payload.get("content") or "")
        bad = content_error(text, headers)
        if bad is not None:
            return bad
        if not text and not files and not payload.get("embeds"):
            return error(400, 50006, "Cannot send an empty message", headers)
        ref = (payload.get("message_reference") or {}).get("message_id")
        ref = str(ref) if ref is not None else None
        if ref and ch.get("guild_id") and not self.can(BOT_ID, cid, READ_MESSAGE_HISTORY):
            return error(403, 160002, "Cannot reply without permission to read message history")
        msg = self._message(
            cid,
            BOT_ID,
            text,
            reference=ref,
            allowed_mentions=payload.get("allowed_mentions"),
            attachments=self._uploaded(files, payload) or None,
            embeds=payload.get("embeds"),
            flags=int(payload.get("flags") or 0) & CREATE_FLAGS,
        )
        if ch["type"] in THREAD_TYPES:
            ch["message_count"] = ch.get("message_count", 0) + 1
        await self.dispatch("MESSAGE_CREATE", self.public(msg))
        return json_response(self.public(msg), 200, headers)

    def _uploaded(self, files: list[Upload], payload: Any) -> list[dict[str, Any]]:
        """Attachments for the `files[n]` of a request (stored, on the fake CDN)."""
        out = []
        for f in files:
            meta = attachment_meta(payload, f.index)
            att = self.attachment(str(meta.get("filename") or f.filename), f.data, None)
            ctype = content_type_of(f)
            if ctype:
                att["content_type"] = ctype
            size = image_size(f.data)
            if size:
                att["width"], att["height"] = size
            if meta.get("description"):
                att["description"] = meta["description"]
            out.append(att)
        return out

    def _edit(
        self,
        msg: dict[str, Any],
        body: Any,
        files: list[Upload],
        *,
        headers: dict[str, str] | None = None,
    ) -> web.Response | None:
        """Apply a message edit (content, embeds, flags, attachments); a 400 if invalid."""
        payload = body or {}
        if "content" in payload:
            text = str(payload.get("content") or "")
            bad = content_error(text, headers)
            if bad is not None:
                return bad
            msg["content"] = text
        if "embeds" in payload:
            msg["embeds"] = list(payload.get("embeds") or [])
        if "flags" in payload and payload["flags"] is not None:
            # Only SUPPRESS_EMBEDS can be toggled by an edit.
            keep = int(msg.get("flags") or 0) & ~SUPPRESS_EMBEDS
            msg["flags"] = keep | (int(payload["flags"]) & SUPPRESS_EMBEDS)
        if int(msg.get("flags") or 0) & SUPPRESS_EMBEDS:
            msg["embeds"] = []
        if "attachments" in payload:
            kept = {str(a.get("id")) for a in payload.get("attachments") or []}
            msg["attachments"] = [a for a in msg["attachments"] if a["id"] in kept]
        msg["attachments"] = [*msg["attachments"], *self._uploaded(files, payload)]
        if "allowed_mentions" in payload:
            msg["allowed_mentions"] = payload["allowed_mentions"]
        msg["edited_timestamp"] = now_iso()
        return None

    async def _download(self, request: web.Request) -> web.Response:
        fid = request.match_info["fid"]
        data = self.files.get(fid)
        if data is None:
            return web.Response(status=404)
        ctype = self.attachments.get(fid, {}).get("content_type") or "application/octet-stream"
        return web.Response(body=data, headers={"Content-Type": ctype})
