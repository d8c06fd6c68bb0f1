"""SlackReplyTarget: a reply as a placeholder edited with chat.update, or Slack's native
chat.startStream / appendStream / stopStream."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.text import neutralise, settled
from adapters.slack.webapi import (
    append_budget,
    blocks,
    call,
    files_budget,
    post_budget,
    stream_budget,
    update_budget,
)
from bot.errors import BotError
from bot.markup import MARKDOWN
from bot.ports import OutFile, Pacer

log = logging.getLogger(__name__)

MAX_CHARS = 11_000  # leave room for a fence closed by a split
FALLBACK_CHARS = 3_000  # notification text shown where blocks are not
PLACEHOLDER = "_Thinking…_"
MAX_FILE_BYTES = 1024**3  # Slack's upload limit: 1 GB
SNIPPETS = {".py": "python", ".js": "javascript", ".ts": "typescript", ".txt": "text"}


class SlackReplyTarget:
    """One reply in a Slack thread."""

    max_chars = MAX_CHARS
    markup = MARKDOWN  # the markdown block renders standard Markdown links

    def __init__(
        self,
        *,
        client: AsyncWebClient,
        scheduler: Pacer,
        team: str,
        channel: str,
        thread_ts: str,
        native: bool = False,
        recipient_user: str | None = None,
        on_start: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.client = client
        self.scheduler = scheduler
        self.team = team
        self.channel = channel
        self.thread_ts = thread_ts
        self.native = native
        self.recipient_user = recipient_user
        self.budget = append_budget(team) if native else update_budget(team)
        self._post = post_budget(team, channel)
        self._ts: list[str] = []
        self._sent: dict[int, str] = {}  # per message: what Slack shows (native: neutralised)
        self._raw: dict[int, str] = {}  # per message: the latest text asked for
        self._offered: dict[int, str] = {}  # per message: the reply's newest text (offer())
        self._ahead: set[int] = set()  # messages a post showed newer text than it was given
        self._safe: dict[int, str] = {}  # edit mode, per message: the neutralised text shown
        self._on_start = on_start
        self._placeholder = False
        self._starting: asyncio.Future[None] | None = None
        self._stopped: set[int] = set()  # native messages whose stream was closed
        self._placeholder_pending = False  # a placeholder is being posted
        self._promised = False  # a first-text edit announced to the scheduler (spare())

    def adopt(self, message_ids: Sequence[str]) -> None:
        """Continue a reply whose messages exist already (recovery after a restart):
        they are edited with chat.update, and a failure note replaces the first."""
        self._ts = list(message_ids)
        self._placeholder = bool(message_ids)

    @property
    def message_ids(self) -> Sequence[str]:
        """The ts of every message of this reply."""
        return list(self._ts)

    def begin(self) -> None:
        """Start showing a sign now, without waiting (start() then waits for it)."""
        if self._starting is None:
            self._starting = asyncio.ensure_future(self._start())

    async def start(self) -> None:
        """A visible sign at once: the assistant status, or a placeholder message."""
        self.begin()
        assert self._starting is not None
        await asyncio.shield(self._starting)

    async def _start(self) -> None:
        if self._on_start is not None:
            await self._on_start()
            return
        if self.native:
            # The stream opens at once (Slack shows it as in progress); text is appended.
            await self._new_message("")
            self._sent[0] = ""
            return
        if self.scheduler.spare(self.budget) < 1:
            # A crowd on the workspace's chat.update budget: a placeholder would cost an
            # edit there for its first text, which the other replies' finals need. The
            # first text is posted as the message instead, from the channel's budget.
            return
        self.scheduler.promise(self.budget)
        self._promised = self._placeholder_pending = True
        try:
            await self._new_message(PLACEHOLDER, early=True)
        finally:
            self._placeholder_pending = False
            if not self._placeholder:  # not posted, or posted with the first text
                self._keep_promise()

    def __del__(self) -> None:
        # A reply given up on (errors) still stops counting against the budget's spare.
        if getattr(self, "_promised", False):
            self._keep_promise()

    def _keep_promise(self) -> None:
        """The placeholder's first-text edit is made (or no longer needed)."""
        if self._promised:
            self._promised = False
            self.scheduler.keep(self.budget)

    def edits(self, part: int, text: str) -> bool:
        """False when showing `text` as message `part` needs no chat.update: the message
        shows it already (a post carried it, or newer text), or it only posts the message
        (chat.postMessage, the channel's budget): no placeholder to edit, and the message
        before it shows its final text already."""
        if self.native:
            return True
        if part < len(self._ts):
            shown = self._safe.get(part)
            now = settled(text, final=False)
            if shown is not None and shown in (settled(text, final=True), now):
                return False
            return not (part in self._ahead and (shown or "").startswith(now))
        if part == 0:  # no message yet: an edit only if a placeholder is on its way
            return self._placeholder_pending
        before = settled(self._raw.get(part - 1, ""), final=True)
        return before != self._safe.get(part - 1)

    async def _started(self) -> None:
        """Wait for the sign to be out (the first text edits the placeholder, or went out
        in its place); a sign that failed is no reason not to show the answer."""
        if self._starting is not None and not self._starting.done():
            with contextlib.suppress(Exception):
                await asyncio.shield(self._starting)

    async def _new_message(self, text: str, *, part: int = 0, early: bool = False) -> str:
        """Post message `part` (the placeholder when `early`); returns the text shown."""
        shown = text

        async def post() -> None:
            nonlocal shown
            # The post waited for the channel's budget: text that came meanwhile goes out
            # with it (a placeholder becomes the first text: one call instead of two).
            newest = settled(self._offered.get(part, ""), final=False)
            if newest and (early or (newest.startswith(text) and not self.native)):
                shown = newest
            if self.native:
                kwargs: dict[str, Any] = {}
                if self.recipient_user and not self.channel.startswith("D"):
                    kwargs = {
                        "recipient_user_id": self.recipient_user,
                        "recipient_team_id": self.team,
                    }
                if text:
                    kwargs["markdown_text"] = neutralise(text)
                resp = await self._start_stream(kwargs)
            else:
                safe = neutralise(shown)
                resp = await call(
                    self.client.chat_postMessage,
                    channel=self.channel,
                    thread_ts=self.thread_ts,
                    text=safe[:FALLBACK_CHARS],
                    blocks=blocks(safe),
                    unfurl_links=False,
                    unfurl_media=False,
                )
            self._ts.append(str(resp["ts"]))
            if early and shown != text:
                self._safe[0], self._sent[0] = shown, self._offered.get(0, "")
                self._ahead.add(0)
            elif early:
                self._placeholder = True

        await self.scheduler.call(self._post, post)
        return shown

    async def show(self, text: str, *, part: int) -> bool:
        """Post or edit message `part`; False when no call on the reply's budget was made
        (nothing new to show, or only a chat.postMessage, paid from the channel's budget)."""
        self._raw[part] = text
        await self._started()
        self._keep_promise()  # the promised edit is being made (or given up on)
        if not self.native:
            return await self._edit(text, part=part, final=False)
        if part >= len(self._ts):
            if part > 0:  # the previous message is complete: flush and close it
                await self._close(part - 1)
            await self._new_message("")
            self._sent[part] = ""
        if part in self._stopped:  # an earlier message rewritten (source markers added)
            await self._rewrite(part, settled(text, final=True))
            return True
        return await self._append(text, part=part, final=False)

    def showing(self, part: int) -> bool:
        """True when message `part` shows reply text already (its first text went out
        with the message, in place of the placeholder)."""
        return bool(self._sent.get(part)) and not (part == 0 and self._placeholder)

    async def _close(self, part: int) -> None:
        """Native mode: end message `part`'s stream showing its latest text. A stream only
        appends, so text that rewrote what streamed (markers) is put in by an edit."""
        safe = settled(self._raw.get(part, ""), final=True)
        if part not in self._stopped:
            if safe.startswith(self._sent.get(part, "")):
                await self._append(self._raw.get(part, ""), part=part, final=True)
            await self._stop(part)
        await self._rewrite(part, safe)

    async def _rewrite(self, part: int, safe: str) -> None:
        """Edit a closed native message into `safe` (when it shows something else)."""
        if not safe or safe == self._sent.get(part):
            return
        await self._update(part, safe)
        self._sent[part] = safe

    async def _update(self, part: int, safe: str) -> None:
        """chat.update of message `part` to `safe` (neutralised) text."""
        await call(
            self.client.chat_update,
            channel=self.channel,
            ts=self._ts[part],
            text=safe[:FALLBACK_CHARS],
            blocks=blocks(safe),
        )

    async def _edit(self, text: str, *, part: int, final: bool) -> bool:
        """Edit mode: post or update message `part` with what is safe to show now. Like
        native mode, an unfinished `<@…` / `<!…` at the end waits for the next text, so
        no edit ever carries live mention markup. True when a chat.update was made."""
        safe = settled(text, final=final)
        updated = False
        if part >= len(self._ts):
            if part > 0:  # the message before is complete: show all of it
                prev = self._raw.get(part - 1, "")
                updated = await self._edit(prev, part=part - 1, final=True)
            if not safe:
                return updated  # nothing but an unfinished mention yet: post with the next text
            shown = await self._new_message(safe, part=part)
            if shown != safe:
                self._ahead.add(part)
            safe = shown
        elif not safe or safe == self._safe.get(part):
            return False
        elif part in self._ahead and self._safe.get(part, "").startswith(safe):
            # The post carried newer model text than this call was given: showing it
            # would take text back off the screen.
            return False
        else:
            await self._update(part, safe)
            updated = True
            self._ahead.discard(part)
        self._safe[part] = safe
        self._sent[part] = text
        self._placeholder = False
        self._keep_promise()
        return updated

    async def _append(self, text: str, *, part: int, final: bool) -> bool:
        # _sent holds what the stream shows (already neutralised); append only the new tail.
        safe = settled(text, final=final)
        sent = self._sent.get(part, "")
        self._placeholder = False
        if safe.startswith(sent) and len(safe) > len(sent):
            await call(
                self.client.chat_appendStream,
                channel=self.channel,
                ts=self._ts[part],
                markdown_text=safe[len(sent) :],
            )
            self._sent[part] = safe
            return True
        return False

    async def _start_stream(self, kwargs: dict[str, Any]) -> Any:
        """chat.startStream, within the workspace's Tier 2 budget for it (and, around this,
        the channel's post budget: it posts a message)."""
        resp: Any = None

        async def start() -> None:
            nonlocal resp
            resp = await call(
                self.client.chat_startStream,
                channel=self.channel,
                thread_ts=self.thread_ts,
                **kwargs,
            )

        await self.scheduler.call(stream_budget(self.team, "chat.startStream"), start)
        return resp

    async def _stop(self, part: int) -> None:
        async def stop() -> None:
            await call(self.client.chat_stopStream, channel=self.channel, ts=self._ts[part])

        await self.scheduler.call(stream_budget(self.team, "chat.stopStream"), stop)
        self._stopped.add(part)

    async def finish(self, text: str, *, part: int) -> bool:
        """Show the final text (and close a native stream); False as for show()."""
        self._raw[part] = text
        await self._started()
        if self.native:
            if part >= len(self._ts):
                await self.show(text, part=part)  # opens it (closing the one before)
            await self._close(part)
            return True
        try:
            return await self._edit(text, part=part, final=True)
        finally:
            self._keep_promise()

    async def fail(self, user_message: str) -> None:
        """Replace the placeholder with the note, or add the note under the reply."""
        note = f":warning: {user_message}"
        await self._started()
        self._keep_promise()
        if self.native and self._ts and not self._sent.get(len(self._ts) - 1):
            # A stream opened by start() that never got text: say why inside it.
            await call(
                self.client.chat_appendStream,
                channel=self.channel,
                ts=self._ts[-1],
                markdown_text=note,
            )
            await self._stop(len(self._ts) - 1)
            return
        if self._placeholder and self._ts and not self.native:
            await self._update(0, note)
            self._placeholder = False
            return

        async def post() -> None:
            await call(
                self.client.chat_postMessage,
                channel=self.channel,
                thread_ts=self.thread_ts,
                text=note,
            )

        await self.scheduler.call(self._post, post)

    def offer(self, part: int, text: str) -> None:
        """The newest text of message `part`, for a post still waiting for its budget."""
        self._offered[part] = text

    def text_ready(self) -> None:
        """Nothing to stop: the sign is one call, made once."""

    async def status(self, line: str) -> bool:
        """Slack's own status line (assistant.threads.setStatus) in the assistant view and
        under a native stream, which only appends; in edit mode the reply shows it."""
        if not self.native and self._on_start is None:
            return False
        await self._started()  # after the sign ("is thinking…"), never overwritten by it
        if self._ts and self._sent.get(len(self._ts) - 1):
            return True  # text is showing; a status now would sit under it (Slack clears it)
        try:
            await call(
                self.client.assistant_threads_setStatus,
                channel_id=self.channel,
                thread_ts=self.thread_ts,
                status=line,
            )
        except Exception as exc:  # outside an assistant thread Slack refuses it: no matter
            log.info("slack: status %r not shown: %r", line, exc)
        return True

    async def attach(self, files: Sequence[OutFile]) -> None:
        """Upload files into the thread (files.getUploadURLExternal + completeUploadExternal);
        code and output go as snippets."""
        too_big = [f.name for f in files if len(f.data) > MAX_FILE_BYTES]
        if too_big:
            raise BotError(
                "file too large", user_message=f"{', '.join(too_big)} is over Slack's 1 GB limit."
            )
        uploads: list[dict[str, Any]] = []
        for f in files:
            item: dict[str, Any] = {"content": f.data, "filename": f.name, "title": f.name}
            if f.mime_type.startswith("text/"):
                item["snippet_type"] = SNIPPETS.get(f.name[f.name.rfind(".") :], "text")
            uploads.append(item)

        async def upload() -> None:
            try:
                await call(
                    self.client.files_upload_v2,
                    file_uploads=uploads,
                    channel=self.channel,
                    thread_ts=self.thread_ts,
                    request_file_info=False,
                )
            except SlackApiError as exc:
                error = exc.response.get("error") if exc.response is not None else None
                raise BotError(
                    f"upload failed: {error}",
                    user_message=f"Slack refused the file(s) {', '.join(f.name for f in files)}"
                    f" ({error or 'error'}).",
                ) from None

        await self.scheduler.call(files_budget(self.team), upload)
