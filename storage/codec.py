"""JSON encoding of turn parts, shared by the stores."""

from __future__ import annotations

import json
from typing import Any

from bot.types import FilePart, Part, TextPart


def dump_parts(parts: tuple[Part, ...]) -> str:
    """Parts to a compact JSON list."""
    out: list[dict[str, Any]] = []
    for p in parts:
        if isinstance(p, TextPart):
            out.append({"t": "text", "text": p.text})
        else:
            out.append(
                {
                    "t": "file",
                    "sha256": p.sha256,
                    "mime": p.mime_type,
                    "name": p.name,
                    "size": p.size,
                }
            )
    return json.dumps(out, ensure_ascii=False, separators=(",", ":"))


def load_parts(raw: str) -> tuple[Part, ...]:
    """JSON list to parts."""
    out: list[Part] = []
    for d in json.loads(raw):
        if d["t"] == "text":
            out.append(TextPart(d["text"]))
        else:
            out.append(FilePart(d["sha256"], d["mime"], d["name"], d["size"]))
    return tuple(out)
