from __future__ import annotations

import pytest

from bot.attachments import estimate_tokens, human_size, looks_like_html, sniff

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 32
PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n"
MP4 = b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 16
WAV = b"RIFF\x00\x00\x00\x00WAVEfmt " + b"\x00" * 16
ZIP = b"PK\x03\x04" + b"\x00" * 32


@pytest.mark.parametrize(
    ("data", "name", "mime", "ok"),
    [
        (PNG, "a.jpg", "image/png", True),  # the bytes win over the name
        (JPEG, "photo", "image/jpeg", True),
        (PDF, "doc.pdf", "application/pdf", True),
        (MP4, "clip.mp4", "video/mp4", True),
        (WAV, "a.wav", "audio/wav", True),
        (b"def f():\n    return 1\n", "code.py", "text/plain", True),
        ("héllo wörld\n".encode(), "notes.md", "text/plain", True),
        (ZIP, "archive.zip", "application/zip", False),
        (b"GIF89a" + b"\x00" * 10, "x.gif", "image/gif", False),
        (bytes(range(256)) * 4, "blob.bin", "application/octet-stream", False),
    ],
)
def test_sniff(data: bytes, name: str, mime: str, ok: bool) -> None:
    s = sniff(data, name=name)
    assert (s.mime_type, s.supported) == (mime, ok)


def test_html_login_page_is_detected() -> None:
    assert looks_like_html(b"  <!DOCTYPE html><html><body>Sign in</body></html>")
    assert not looks_like_html(PDF)


def test_human_size() -> None:
    assert human_size(512) == "512 bytes"
    assert human_size(1536) == "1.5 KB"
    assert human_size(50 * 1024 * 1024) == "50.0 MB"


def test_token_estimates() -> None:
    assert estimate_tokens(text="x" * 400) == 100
    assert estimate_tokens(mime_type="image/png", size=10) == 258
