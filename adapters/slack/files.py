"""Download Slack files with the bot token; refuse login pages."""

from __future__ import annotations

from typing import Any

import aiohttp
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.events import SlackFile, parse
from bot.attachments import human_size, looks_like_html
from bot.errors import AttachmentError
from bot.types import Attachment

LOGIN_PAGE = (
    "Slack sent a sign-in page instead of the file. The app needs the files:read scope: "
    "reinstall it from slack-manifest.yml"
)

UNREADABLE = "Slack described this file in a way I cannot read"


def _name_of(raw: Any) -> str:
    name = raw.get("name") if isinstance(raw, dict) else None
    return name[:100] if isinstance(name, str) and name else "a file"


async def _unreadable() -> bytes:
    raise AttachmentError("odd file object", user_message=UNREADABLE)


class SlackFiles:
    """Turns Slack file objects into lazy Attachments."""

    def __init__(
        self,
        *,
        client: AsyncWebClient,
        token: str,
        max_bytes: int,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.client = client
        self.token = token
        self.max_bytes = max_bytes
        # A session shared by every workspace's downloader (Workspaces owns it), or ours.
        self._session = session
        self._owns_session = session is None

    async def aclose(self) -> None:
        """Close the download session if it is ours."""
        if self._session is not None and self._owns_session:
            await self._session.close()

    def attachment(self, raw: Any) -> Attachment:
        """A lazy download of one file object from an event (or a note if it is odd)."""
        file = parse(SlackFile, raw, label="a file object")
        if file is None:
            # The rest of the message is still answered; the user is told about this file.
            return Attachment(name=_name_of(raw), fetch=_unreadable)
        name = file.name or file.title or file.id or "file"

        async def fetch() -> bytes:
            return await self.download(file)

        return Attachment(name=name, fetch=fetch, declared_mime=file.mimetype, size=file.size)

    async def download(self, file: SlackFile) -> bytes:
        """Bytes of a file (Slack Connect files are looked up with files.info first)."""
        if file.file_access == "check_file_info" or not (
            file.url_private_download or file.url_private
        ):
            if file.id is None:
                raise AttachmentError("no id", user_message="Slack gave no id for it")
            info = await self.client.files_info(file=file.id)
            looked_up = parse(SlackFile, info.get("file"), label=f"files.info of {file.id}")
            if looked_up is None:
                raise AttachmentError("odd files.info", user_message=UNREADABLE)
            file = looked_up
        url = file.url_private_download or file.url_private
        if not url:
            raise AttachmentError("no url", user_message="Slack gave no download link for it")
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120))
        try:
            data, served_html = await self._get(url)
        except (aiohttp.ClientError, ValueError, TimeoutError) as exc:
            # A link that is not a URL, or a download that broke off: a note, not a crash.
            raise AttachmentError(
                repr(exc), user_message="the download from Slack failed"
            ) from None
        name = (file.name or "").lower()
        is_html_file = name.endswith((".html", ".htm")) or file.mimetype == "text/html"
        if not is_html_file and (served_html or looks_like_html(data)):
            raise AttachmentError("login page", user_message=LOGIN_PAGE)
        return data

    async def _get(self, url: str) -> tuple[bytes, bool]:
        """The body (at most max_bytes) and whether Slack served HTML."""
        assert self._session is not None
        headers = {"Authorization": f"Bearer {self.token}"}
        async with self._session.get(url, headers=headers) as resp:
            if resp.status != 200:
                raise AttachmentError(
                    f"HTTP {resp.status}", user_message=f"Slack answered {resp.status}"
                )
            data = await resp.content.read(self.max_bytes + 1)
            if len(data) > self.max_bytes:
                raise AttachmentError(
                    "too large", user_message=f"it is over the {human_size(self.max_bytes)} limit"
                )
            return data, resp.content_type == "text/html"
