"""JSON encoding of turn parts, shared by the stores.

Every part carries its kind (`t`). Reading a kind this code does not know raises
`UnknownPartKind` instead of guessing: a newer release's rows must not be misread as files
(and silently re-sent to the model) by an older one.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from bot.types import (
    CodeOutputPart,
    CodePart,
    FilePart,
    Grounding,
    GroundingPart,
    LinkRead,
    LinksPart,
    Part,
    Source,
    Support,
    TextPart,
)


class UnknownPartKind(ValueError):
    """A stored part whose kind this release does not know."""


def _dump(p: Part) -> dict[str, Any]:
    if isinstance(p, TextPart):
        return {"t": "text", "text": p.text}
    if isinstance(p, FilePart):
        out = {"t": "file", "sha256": p.sha256, "mime": p.mime_type, "name": p.name, "size": p.size}
        if p.signature:
            out["sig"] = base64.b64encode(p.signature).decode()
        return out
    if isinstance(p, CodePart):
        return {"t": "code", "code": p.code, "lang": p.language}
    if isinstance(p, CodeOutputPart):
        return {"t": "code_output", "output": p.output, "outcome": p.outcome}
    if isinstance(p, GroundingPart):
        g = p.grounding
        return {
            "t": "grounding",
            "sources": [[s.title, s.uri, s.domain] for s in g.sources],
            "supports": [[s.start, s.end, list(s.sources), s.text] for s in g.supports],
            "queries": list(g.queries),
        }
    if isinstance(p, LinksPart):
        return {"t": "links", "links": [[link.url, link.status] for link in p.links]}
    raise UnknownPartKind(f"cannot store part {p!r}")


def dump_parts(parts: tuple[Part, ...]) -> str:
    """Parts to a compact JSON list."""
    return json.dumps([_dump(p) for p in parts], ensure_ascii=False, separators=(",", ":"))


def _load(d: dict[str, Any]) -> Part:
    kind = d.get("t")
    if kind == "text":
        return TextPart(d["text"])
    if kind == "file":
        sig = base64.b64decode(d["sig"]) if d.get("sig") else None
        return FilePart(d["sha256"], d["mime"], d["name"], d["size"], sig)
    if kind == "code":
        return CodePart(d["code"], d.get("lang", "python"))
    if kind == "code_output":
        return CodeOutputPart(d["output"], d.get("outcome", "ok"))
    if kind == "grounding":
        return GroundingPart(
            Grounding(
                sources=tuple(Source(t, u, dom) for t, u, dom in d["sources"]),
                supports=tuple(Support(a, b, tuple(ix), txt) for a, b, ix, txt in d["supports"]),
                queries=tuple(d["queries"]),
            )
        )
    if kind == "links":
        return LinksPart(tuple(LinkRead(u, st) for u, st in d["links"]))
    raise UnknownPartKind(f"stored part of unknown kind {kind!r}")


def load_parts(raw: str) -> tuple[Part, ...]:
    """JSON list to parts; UnknownPartKind on a kind this release does not know."""
    return tuple(_load(d) for d in json.loads(raw))
