"""Interactions for the fake Discord: INTERACTION_CREATE, callbacks and their webhooks.

`interact()` sends slash commands (with options; attachment and user options are resolved
from the fake's own files and users), message context menus (`data.type` 3 with
`target_id` and `resolved.messages`) and autocompletes. The answers follow Discord's
"Receiving and Responding": one callback per interaction (a second: 400 40060); type 4 posts
the original response, type 5 a loading one (flags LOADING, plus EPHEMERAL when deferred
ephemerally) that `PATCH /webhooks/{app}/{token}/messages/@original` fills in; the first
follow-up after a deferral edits that loading message instead of posting a new one (its
ephemeral flag ignored), later ones (`POST /webhooks/{app}/{token}`, JSON or multipart with
files) are new messages; `wait=false` gets 204. Ephemeral messages (flags 64) are kept with
their interaction and in `ephemeral`, never in the channel's history. Content over 2,000
characters: 400 50035.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from tests.fakes.discord_gateway import APP_ID, BOT_ID
from tests.fakes.discord_perms import ADMIN_ROLE, ALL_PERMISSIONS
from tests.fakes.discord_wire import (
    CHANNEL,
    CREATE_FLAGS,
    EPHEMERAL,
    LOADING,
    SUPPRESS_EMBEDS,
    Upload,
    content_error,
    error,
    json_response,
)

if TYPE_CHECKING:
    from tests.fakes.discord import Call


@dataclass
class Interaction:
    """An interaction the fake sent and the answers the bot gave to it."""

    id: str
    token: str
    channel_id: str
    user: str = ""
    kind: int = 2  # 2 application command, 4 autocomplete
    callbacks: list[dict[str, Any]] = field(default_factory=list)
    original: dict[str, Any] | None = None
    followups: list[dict[str, Any]] = field(default_factory=list)

    def messages(self) -> list[dict[str, Any]]:
        """The original response and the follow-ups, each once, oldest first."""
        out = [self.original] if self.original is not None else []
        out += [m for m in self.followups if all(m is not o for o in out)]
        return out


def is_ephemeral(msg: dict[str, Any]) -> bool:
    """Only the user who ran the interaction sees this message."""
    return bool(int(msg.get("flags") or 0) & EPHEMERAL)


class InteractionsMixin:
    """Interactions and their webhooks; FakeDiscord calls `_init_interactions()`."""

    channels: dict[str, dict[str, Any]]
    messages: dict[str, dict[str, dict[str, Any]]]
    users: dict[str, dict[str, Any]]
    member_roles: dict[str, list[str]]

    if TYPE_CHECKING:  # provided by FakeDiscord and its other mixins

        def dispatch(self, event: str, data: Any) -> Awaitable[None]: ...

        def snowflake(self) -> str: ...

        def permissions(self, uid: str, channel_id: str) -> int: ...

        def public(self, msg: dict[str, Any]) -> dict[str, Any]: ...

        def upload_limit(self, channel_id: str) -> int: ...

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
        ) -> dict[str, Any]: ...

        def _uploaded(self, files: list[Upload], payload: Any) -> list[dict[str, Any]]: ...

        def _edit(
            self, msg: dict[str, Any], body: Any, files: list[Upload], *, headers: Any = None
        ) -> web.Response | None: ...

    def _init_interactions(self) -> None:
        self.interactions: dict[str, Interaction] = {}
        self.attachments: dict[str, dict[str, Any]] = {}
        self.ephemeral: dict[str, dict[str, Any]] = {}  # message id -> ephemeral message

    # -- what users do -----------------------------------------------------------

    async def interact(
        self,
        name: str,
        *,
        user: str,
        channel_id: str = CHANNEL,
        options: list[dict[str, Any]] | None = None,
        kind: int = 2,
        command_type: int | None = None,
        target: dict[str, Any] | None = None,
        resolved: dict[str, Any] | None = None,
    ) -> Interaction:
        """A user runs a command (kind 2) or types into an autocompleted option (kind 4).

        `command_type` is 1 (slash) unless a `target` message makes it 3 (message menu).
        """
        iid = self.snowflake()
        token = f"itoken-{iid}"
        ch = self.channels[channel_id]
        ctype = command_type if command_type is not None else (3 if target is not None else 1)
        data: dict[str, Any] = {"id": self.snowflake(), "name": name, "type": ctype}
        if options is not None:
            data["options"] = options
        found = self._resolve(options or [], channel_id)
        if target is not None:
            data["target_id"] = target["id"]
            found.setdefault("messages", {})[target["id"]] = self.public(target)
        for key, values in (resolved or {}).items():
            found.setdefault(key, {}).update(values)
        if found:
            data["resolved"] = found
        if ch.get("guild_id"):
            data["guild_id"] = ch["guild_id"]
        payload: dict[str, Any] = {
            "id": iid,
            "application_id": APP_ID,
            "type": kind,
            "data": data,
            "channel_id": channel_id,
            "channel": {k: v for k, v in ch.items() if k != "recipients"},
            "token": token,
            "version": 1,
            "locale": "en-US",
            "app_permissions": str(self.permissions(BOT_ID, channel_id)),
            "entitlements": [],
            "authorizing_integration_owners": {},
            "attachment_size_limit": self.upload_limit(channel_id),
            "context": 0 if ch.get("guild_id") else 1,
        }
        if ch.get("guild_id"):
            payload["guild_id"] = ch["guild_id"]
            payload["guild_locale"] = "en-US"
            admin = ADMIN_ROLE in self.member_roles.get(user, [])
            perms = ALL_PERMISSIONS if admin else str(self.permissions(user, channel_id))
            payload["member"] = {
                **self._member(user),
                "user": self.users[user],
                "permissions": perms,
            }
        else:
            payload["user"] = self.users[user]
        inter = Interaction(iid, token, channel_id, user, kind)
        self.interactions[token] = inter
        await self.dispatch("INTERACTION_CREATE", payload)
        return inter

    def _resolve(self, options: list[dict[str, Any]], channel_id: str) -> dict[str, Any]:
        """`resolved` for attachment (11) and user (6) options the fake knows, nested too."""
        found: dict[str, Any] = {}
        for opt in options:
            value = str(opt.get("value", ""))
            if opt.get("type") == 11 and value in self.attachments:
                found.setdefault("attachments", {})[value] = self.attachments[value]
            elif opt.get("type") == 6 and value in self.users:
                found.setdefault("users", {})[value] = self.users[value]
                if self.channels[channel_id].get("guild_id"):
                    found.setdefault("members", {})[value] = self._member(value)
            for key, values in self._resolve(opt.get("options") or [], channel_id).items():
                found.setdefault(key, {}).update(values)
        return found

    # -- REST --------------------------------------------------------------------

    def _respond(
        self, inter: Interaction, text: str, flags: int, body: Any, files: list[Upload]
    ) -> dict[str, Any]:
        """A message answering an interaction (kept out of the channel if ephemeral)."""
        ephemeral = bool(flags & EPHEMERAL)
        msg: dict[str, Any] = self._message(
            inter.channel_id,
            BOT_ID,
            text,
            attachments=self._uploaded(files, body) or None,
            allowed_mentions=(body or {}).get("allowed_mentions"),
            embeds=(body or {}).get("embeds"),
            flags=flags,
            store=not ephemeral,
        )
        if ephemeral:
            self.ephemeral[msg["id"]] = msg
        return msg

    async def _interaction_callback(
        self, parts: list[str], body: Any, files: list[Upload], call: Call
    ) -> web.Response:
        call.route = "interaction"
        inter = self.interactions.get(parts[2]) if len(parts) > 2 else None
        if inter is None or inter.id != parts[1]:
            return error(404, 10062, "Unknown interaction")
        if inter.callbacks:
            return error(400, 40060, "Interaction has already been acknowledged.")
        kind = (body or {}).get("type")
        data = (body or {}).get("data") or {}
        flags = int(data.get("flags") or 0)
        if kind == 4:
            text = str(data.get("content") or "")
            bad = content_error(text)
            if bad is not None:
                return bad
            inter.original = self._respond(
                inter, text, flags & (CREATE_FLAGS | EPHEMERAL), data, files
            )
        elif kind == 5:
            inter.original = self._respond(inter, "", LOADING | (flags & EPHEMERAL), data, [])
        inter.callbacks.append(body)
        # discord.py asks `with_response`: Discord then answers with the callback's result.
        resource: dict[str, Any] = {"type": kind}
        if inter.original is not None:
            resource["message"] = self.public(inter.original)
        result = {
            "interaction": {
                "id": inter.id,
                "type": inter.kind,
                "response_message_id": inter.original["id"] if inter.original else None,
                "response_message_loading": kind == 5,
                "response_message_ephemeral": bool(flags & EPHEMERAL),
            },
            "resource": resource,
        }
        return json_response(result)

    def _followup_message(self, inter: Interaction, mid: str) -> dict[str, Any] | None:
        if mid == "@original":
            return inter.original
        return next((m for m in inter.messages() if m["id"] == mid), None)

    async def _webhook(
        self, method: str, parts: list[str], body: Any, files: list[Upload], call: Call
    ) -> web.Response:
        call.route = "webhook"
        inter = self.interactions.get(parts[2]) if len(parts) > 2 else None
        if inter is None or parts[1] != APP_ID:
            return error(404, 10015, "Unknown Webhook")
        if len(parts) == 5 and parts[3] == "messages":
            msg = self._followup_message(inter, parts[4])
            if msg is None:  # e.g. @original before any callback
                return error(404, 10008, "Unknown Message")
            if method == "GET":
                return json_response(self.public(msg))
            if method == "DELETE":
                self.ephemeral.pop(msg["id"], None)
                self.messages.get(inter.channel_id, {}).pop(msg["id"], None)
                if msg is inter.original:
                    inter.original = None
                inter.followups = [m for m in inter.followups if m is not msg]
                return web.Response(status=204)
            if method == "PATCH":
                bad = self._edit(msg, body, files)
                if bad is not None:
                    return bad
                msg["flags"] = int(msg.get("flags") or 0) & ~LOADING
                return json_response(self.public(msg))
            return error(405, 0, "405: Method Not Allowed")
        if method != "POST" or len(parts) != 3:
            return error(405, 0, "405: Method Not Allowed")
        if not inter.callbacks:
            return error(404, 10015, "Unknown Webhook")
        text = str((body or {}).get("content") or "")
        bad = content_error(text)
        if bad is not None:
            return bad
        flags = int((body or {}).get("flags") or 0)
        loading = inter.original
        if loading is not None and int(loading.get("flags") or 0) & LOADING:
            # The first follow-up after a deferral edits the loading message.
            edit = {**(body or {}), "flags": flags & SUPPRESS_EMBEDS}
            self._edit(loading, edit, files)
            loading["flags"] = int(loading["flags"]) & ~LOADING
            msg = loading
        else:
            msg = self._respond(inter, text, flags & (CREATE_FLAGS | EPHEMERAL), body, files)
        inter.followups.append(msg)
        if call.query.get("wait", "true").lower() in ("0", "false"):
            return web.Response(status=204)
        return json_response(self.public(msg))
