"""Attachment bytes on disk, content-addressed by sha256."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

from bot.attachments import human_size
from bot.errors import AttachmentError


def check_size(data: bytes, max_bytes: int) -> None:
    """Raise AttachmentError when `data` is over the cap."""
    if len(data) > max_bytes:
        raise AttachmentError(
            f"{len(data)} > {max_bytes}",
            user_message=f"file is {human_size(len(data))}; the limit is {human_size(max_bytes)}",
        )


class BlobDir:
    """Files under `root/ab/abcdef...`; disk I/O runs off the event loop."""

    def __init__(self, root: Path, *, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes

    def path(self, sha256: str) -> Path:
        """Where the bytes of `sha256` live."""
        return self.root / sha256[:2] / sha256

    def _write(self, sha: str, data: bytes) -> None:
        path = self.path(sha)
        if path.exists():
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_bytes(data)
        os.replace(tmp, path)  # atomic: readers never see half a file

    async def put(self, data: bytes) -> str:
        """Write bytes (once) and return their sha256."""
        check_size(data, self.max_bytes)
        sha = hashlib.sha256(data).hexdigest()
        # Python has no async file API; a worker thread keeps the loop free, as aiosqlite does.
        await asyncio.to_thread(self._write, sha, data)
        return sha

    async def get(self, sha256: str) -> bytes:
        """Read bytes back; KeyError when missing."""
        try:
            return await asyncio.to_thread(self.path(sha256).read_bytes)
        except FileNotFoundError:
            raise KeyError(sha256) from None
