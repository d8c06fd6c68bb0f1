"""What a file really is, whether Gemini can read it, and how to send it."""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from pathlib import PurePath

# MIME types the Gemini API reads (images, documents, audio, video). Text and code files
# are sent as text/plain whatever their declared type.
SUPPORTED = frozenset(
    {
        "image/png",
        "image/jpeg",
        "image/webp",
        "image/heic",
        "image/heif",
        "application/pdf",
        "text/plain",
        "audio/wav",
        "audio/mp3",
        "audio/aiff",
        "audio/aac",
        "audio/ogg",
        "audio/flac",
        "video/mp4",
        "video/mpeg",
        "video/quicktime",
        "video/x-msvideo",
        "video/x-flv",
        "video/webm",
        "video/x-ms-wmv",
        "video/3gpp",
    }
)

_EXT = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".heic": "image/heic",
    ".heif": "image/heif",
    ".gif": "image/gif",
    ".pdf": "application/pdf",
    ".wav": "audio/wav",
    ".mp3": "audio/mp3",
    ".aiff": "audio/aiff",
    ".aac": "audio/aac",
    ".ogg": "audio/ogg",
    ".flac": "audio/flac",
    ".mp4": "video/mp4",
    ".mpeg": "video/mpeg",
    ".mpg": "video/mpeg",
    ".mov": "video/quicktime",
    ".avi": "video/x-msvideo",
    ".flv": "video/x-flv",
    ".webm": "video/webm",
    ".wmv": "video/x-ms-wmv",
    ".3gp": "video/3gpp",
    ".zip": "application/zip",
}


def _ftyp(data: bytes) -> str | None:
    brand = data[8:12]
    if brand in (b"heic", b"heix", b"hevc", b"heim", b"heis"):
        return "image/heic"
    if brand in (b"mif1", b"msf1"):
        return "image/heif"
    if brand == b"qt  ":
        return "video/quicktime"
    if brand.startswith(b"3g"):
        return "video/3gpp"
    if brand in (b"M4A ", b"M4B "):
        return "audio/aac"
    return "video/mp4"


def _magic(data: bytes) -> str | None:
    """MIME type from the first bytes, or None when no signature matches."""
    head = data[:64]
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "audio/wav"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "video/x-msvideo"
    if head.startswith(b"%PDF-"):
        return "application/pdf"
    if head[4:8] == b"ftyp":
        return _ftyp(head)
    if head.startswith(b"ID3") or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        # MPEG audio frame sync; AAC ADTS shares the sync word with layer bits 00.
        if head[:3] != b"ID3" and head[1] & 0x06 == 0:
            return "audio/aac"
        return "audio/mp3"
    if head.startswith(b"fLaC"):
        return "audio/flac"
    if head.startswith(b"OggS"):
        return "audio/ogg"
    if head.startswith(b"FORM") and head[8:12] in (b"AIFF", b"AIFC"):
        return "audio/aiff"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "video/webm"
    if head.startswith(b"FLV"):
        return "video/x-flv"
    if head.startswith(b"\x00\x00\x01\xba") or head.startswith(b"\x00\x00\x01\xb3"):
        return "video/mpeg"
    if head.startswith(b"\x30\x26\xb2\x75\x8e\x66\xcf\x11"):
        return "video/x-ms-wmv"
    if head.startswith(b"PK\x03\x04"):
        return "application/zip"
    return None


def looks_like_text(data: bytes) -> bool:
    """True for UTF-8 (or UTF-16 with BOM) text without binary control bytes."""
    sample = data[:8192]
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return True
    if b"\x00" in sample:
        return False
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut at the sample's end is still text.
        if exc.start < len(sample) - 4:
            return False
    control = sum(1 for b in sample if b < 9 or 13 < b < 32)
    return control <= len(sample) // 100


def looks_like_html(data: bytes) -> bool:
    """True for an HTML page (e.g. a login page served instead of a file)."""
    head = data[:512].lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html"))


@dataclass(frozen=True, slots=True)
class Sniffed:
    """The real type of a file and whether it can be sent."""

    mime_type: str
    supported: bool
    is_text: bool


def sniff(data: bytes, *, name: str = "", declared: str | None = None) -> Sniffed:
    """The real MIME type of `data`: signature first, then text, then the extension."""
    magic = _magic(data)
    if magic is not None:
        return Sniffed(magic, magic in SUPPORTED, False)
    if data and looks_like_text(data):
        return Sniffed("text/plain", True, True)
    by_ext = _EXT.get(PurePath(name).suffix.lower())
    guess = by_ext or declared or "application/octet-stream"
    # Without a signature we only trust types whose files often have none (MPEG-TS, AAC...).
    return Sniffed(guess, guess in ("audio/aac", "video/mpeg") and guess in SUPPORTED, False)


def human_size(n: int) -> str:
    """1536 -> '1.5 KB'."""
    size = float(n)
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{int(size)} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} bytes"


def estimate_tokens(*, text: str = "", mime_type: str | None = None, size: int = 0) -> int:
    """A cheap upper-ish estimate of the tokens a part costs (about 4 chars a token)."""
    if mime_type is None:
        return max(1, len(text) // 4) if text else 0
    if mime_type == "text/plain":
        return max(1, size // 4)
    if mime_type.startswith("image/"):
        return 258
    if mime_type == "application/pdf":
        # ~258 tokens a page; assume ~50 KB a page.
        return 258 * max(1, size // 50_000)
    if mime_type.startswith("audio/"):
        return 32 * max(1, size // 16_000)  # ~32 tokens/s at ~128 kbit/s
    if mime_type.startswith("video/"):
        return 300 * max(1, size // 250_000)  # ~300 tokens/s at ~2 Mbit/s
    return 258
