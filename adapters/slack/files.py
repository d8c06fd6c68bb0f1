"""Download Slack files with the bot token; refuse login pages."""

from __future__ import annotations

from typing import Any

import aiohttp
from slack_sdk.web.async_client import AsyncWebClient

from bot.attachments import human_size, looks_like_html
from bot.errors import AttachmentError
from bot.types import Attachment

LOGIN_PAGE = (
    "Slack sent a sign-in page instead of the file. The app needs the files:read scope: "
    "reinstall it from slack-manifest.yml"
)


class SlackFiles:
    """Turns Slack file objects into lazy Attachments."""

    def __init__(self, *, client: AsyncWebClient, token: str, max_bytes: int) -> None:
        self.client = client
        self.token = token
        self.max_bytes = max_bytes
        self._session: aiohttp.ClientSession | None = None

    async def aclose(self) -> None:
        """Close the download session."""
        if self._session is not None:
            await self._session.close()

    def attachment(self, file: dict[str, Any]) -> Attachment:
        """A lazy download of one file object from an event."""
        name = str(file.get("name") or file.get("title") or file.get("id") or "file")

        async def fetch() -> bytes:
            return await self.download(file)

        return Attachment(
            name=name,
            fetch=fetch,
            declared_mime=file.get("mimetype"),
            size=int(file["size"]) if file.get("size") is not None else None,
        )

    async def download(self, file: dict[str, Any]) -> bytes:
        """Bytes of a file (Slack Connect files are looked up with files.info first)."""
        if file.get("file_access") == "check_file_info" or not (
            file.get("url_private_download") or file.get("url_private")
        ):
            info = await self.client.files_info(file=file["id"])
            file = dict(info["file"])
        url = file.get("url_private_download") or file.get("url_private")
        if not url:
            raise AttachmentError("no url", user_message="Slack gave no download link for it")
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120))
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
            served_html = resp.content_type == "text/html"
        name = str(file.get("name", "")).lower()
        is_html_file = name.endswith((".html", ".htm")) or file.get("mimetype") == "text/html"
        if not is_html_file and (served_html or looks_like_html(data)):
            raise AttachmentError("login page", user_message=LOGIN_PAGE)
        return data
