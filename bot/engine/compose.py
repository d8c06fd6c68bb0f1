"""One reply as it is built from the model's events: what the user sees and what is stored.

Text streams as it comes. Code the model ran and its output are shown as code blocks in
the flow of the text (long ones are attached as files instead); images and charts are
attached after the text. Sources and unreadable links arrive after the text: the final
text then gets source markers where the model's grounding places them, and a footer with
the numbered sources and the searches run.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace

from bot.markup import (
    Markup,
    footnotes,
    insert_markers,
    links_note,
    markers,
    numbering,
    too_long,
)
from bot.model_events import CodeOutput, CodeRun, GeneratedFile
from bot.ports import OutFile
from bot.types import (
    FilePart,
    Grounding,
    GroundingPart,
    LinkRead,
    LinksPart,
    Part,
    TextPart,
)

EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif"}
CODE_EXTENSIONS = {"python": "py", "javascript": "js", "typescript": "ts"}


@dataclass(slots=True)
class _Piece:
    shown: str
    model_text: bool  # part of the model's own text (grounding offsets count these)


@dataclass(slots=True)
class ReplyDraft:
    """The reply being built: pieces to show, parts to store, files to post."""

    markup: Markup
    prefix: str = ""
    text: str = ""  # the model's own text, as grounding offsets count it
    grounding: Grounding | None = None
    links: tuple[LinkRead, ...] = ()
    files: list[OutFile] = field(default_factory=list)
    _pieces: list[_Piece] = field(default_factory=list)
    _parts: list[Part] = field(default_factory=list)
    _names: Counter[str] = field(default_factory=Counter)

    def add_text(self, delta: str) -> str:
        """Model text; returns what to append to the shown reply."""
        self.text += delta
        self._pieces.append(_Piece(delta, True))
        if self._parts and isinstance(self._parts[-1], TextPart):
            self._parts[-1] = TextPart(self._parts[-1].text + delta)
        else:
            self._parts.append(TextPart(delta))
        return delta

    def add_code(self, run: CodeRun) -> str:
        """Code the model ran: a code block, or a note and an attached file when long."""
        self._parts.append(run)
        lang = run.language.lower()
        if too_long(run.code):
            name = self._name("code", CODE_EXTENSIONS.get(lang, "txt"))
            self.files.append(OutFile(name, "text/plain", run.code.encode()))
            shown = self.markup.italic(f"Ran code ({run.code.count(chr(10)) + 1} lines): {name}")
        else:
            shown = self.markup.code(run.code, lang)
        return self._block(shown)

    def add_output(self, out: CodeOutput) -> str:
        """What the code printed: a block, or an attached file when long."""
        self._parts.append(out)
        how = {"ok": "Output", "failed": "The code failed", "timeout": "The code timed out"}
        label = how[out.outcome]
        if not out.output.strip():
            return self._block(self.markup.italic(f"{label}: (nothing printed)"))
        if too_long(out.output):
            name = self._name("output", "txt")
            self.files.append(OutFile(name, "text/plain", out.output.encode()))
            return self._block(self.markup.italic(f"{label}: {name}"))
        return self._block(f"{label}:\n{self.markup.code(out.output)}")

    def add_file(self, made: GeneratedFile, stored: FilePart | None) -> OutFile:
        """An image or chart: posted after the text; stored so later turns can see it."""
        ext = EXTENSIONS.get(made.mime_type, "bin")
        name = self._name("chart" if made.origin == "code" else "image", ext)
        out = OutFile(name, made.mime_type, made.data)
        self.files.append(out)
        if stored is not None:
            self._parts.append(replace(stored, name=name))
        return out

    def add_note(self, text: str) -> str:
        """A line of ours (not the model's) in the reply."""
        self._pieces.append(_Piece(text, False))
        return text

    def _name(self, stem: str, ext: str) -> str:
        self._names[stem] += 1
        return f"{stem}-{self._names[stem]}.{ext}"

    def _block(self, shown: str) -> str:
        """A block on its own lines, after whatever came before."""
        before = self._pieces[-1].shown if self._pieces else self.prefix
        lead = (
            ""
            if not before or before.endswith("\n\n")
            else ("\n" if before.endswith("\n") else "\n\n")
        )
        piece = f"{lead}{shown}\n\n"
        self._pieces.append(_Piece(piece, False))
        return piece

    @property
    def own(self) -> str:
        """What the model's events added (no prefix notes)."""
        return "".join(p.shown for p in self._pieces)

    @property
    def shown(self) -> str:
        """The reply as streamed so far (prefix and pieces, no markers)."""
        return self.prefix + "".join(p.shown for p in self._pieces)

    def final(self, limit: int = 0) -> tuple[str, str]:
        """(body with source markers, footer with sources and notes) for the last edit; the
        footer fits `limit` characters (one message) when given."""
        g = self.grounding
        order = numbering(g) if g is not None else []
        at = markers(g, order) if g is not None else {}
        out: list[str] = [self.prefix]
        offset = 0
        for p in self._pieces:
            if not p.model_text:
                out.append(p.shown)
                continue
            end = offset + len(p.shown)
            # A marker at a piece's end goes with it (not after a following code block).
            local = {pos - offset: m for pos, m in at.items() if offset < pos <= end}
            if offset == 0 and 0 in at:
                local[0] = at[0]
            out.append(insert_markers(p.shown, local))
            offset = end
        body = "".join(out).rstrip()
        footer = [links_note(self.links, self.markup)]
        if g is not None:
            room = max(1, limit - len(footer[0]) - 2) if limit else 0
            footer.append(footnotes(g, order, self.markup, room))
        return body, "\n\n".join(f for f in footer if f)

    def parts(self) -> tuple[Part, ...]:
        """What the model turn stores, in the order it happened."""
        out = list(self._parts)
        if self.grounding is not None:
            out.append(GroundingPart(self.grounding))
        if self.links:
            out.append(LinksPart(self.links))
        return tuple(out)
