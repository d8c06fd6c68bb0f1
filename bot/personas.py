"""Load and validate personas.toml; resolve a thread's persona."""

from __future__ import annotations

import re
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from bot.errors import UnknownPersona
from bot.types import GenerationSettings, Persona

Output = Literal["text", "image"]
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")


class PersonaFileError(ValueError):
    """personas.toml is malformed; the message names the persona and field."""


class _Generation(BaseModel):
    model_config = ConfigDict(extra="forbid")
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    top_k: int | None = Field(default=None, ge=1)
    max_output_tokens: int | None = Field(default=None, ge=1)


class _PersonaSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    description: str = Field(min_length=1, max_length=200)
    system_instruction: str = Field(min_length=1)
    model: str | None = Field(default=None, min_length=1)
    generation: _Generation = Field(default_factory=_Generation)
    tools: list[Literal["google_search", "url_context", "code_execution"]] = Field(
        default_factory=list
    )
    output: list[Output] = Field(default_factory=lambda: list[Output](["text"]))

    @model_validator(mode="after")
    def _coherent(self) -> _PersonaSpec:
        if "text" not in self.output:
            raise ValueError('output must include "text" (e.g. ["text", "image"])')
        return self


class PersonaRegistry:
    """The personas an operator defined, and the resolution rule."""

    def __init__(self, personas: dict[str, Persona], *, default: str, source: str) -> None:
        if not personas:
            raise PersonaFileError(f"{source}: defines no personas")
        if default not in personas:
            raise PersonaFileError(
                f"DEFAULT_PERSONA: '{default}' is not defined in {source} "
                f"(defined: {', '.join(sorted(personas))})"
            )
        self._personas = personas
        self.default = default
        self.source = source

    @property
    def names(self) -> list[str]:
        """Persona names, sorted."""
        return sorted(self._personas)

    def all(self) -> list[Persona]:
        """Every persona, sorted by name."""
        return [self._personas[n] for n in self.names]

    def get(self, name: str) -> Persona:
        """The persona `name`, or UnknownPersona."""
        try:
            return self._personas[name.lower()]
        except KeyError:
            raise UnknownPersona(name, self.names) from None

    def has(self, name: str) -> bool:
        """True if `name` is defined."""
        return name.lower() in self._personas

    def resolve(self, *, thread: str | None, channel: str | None) -> Persona:
        """Thread choice, else channel default, else DEFAULT_PERSONA (unknown names skipped)."""
        for name in (thread, channel):
            if name and self.has(name):
                return self.get(name)
        return self._personas[self.default]


def parse_personas(text: str, *, source: str) -> dict[str, Persona]:
    """Parse personas TOML text; raise PersonaFileError naming persona and field."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PersonaFileError(f"{source}: not valid TOML: {exc}") from None
    unknown = set(data) - {"personas"}
    if unknown:
        raise PersonaFileError(
            f"{source}: unknown top-level key(s) {', '.join(sorted(unknown))}; "
            "put personas under [personas.NAME]"
        )
    table: Any = data.get("personas", {})
    if not isinstance(table, dict):
        raise PersonaFileError(f"{source}: 'personas' must be a table of [personas.NAME]")
    out: dict[str, Persona] = {}
    for name, raw in table.items():
        if not NAME_RE.match(name):
            raise PersonaFileError(
                f"{source}: persona '{name}': name must be 1-32 lowercase letters, digits, - or _"
            )
        if not isinstance(raw, dict):
            raise PersonaFileError(f"{source}: persona '{name}': must be a table")
        try:
            spec = _PersonaSpec.model_validate(raw)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
            )
            raise PersonaFileError(f"{source}: persona '{name}': {problems}") from None
        g = spec.generation
        out[name] = Persona(
            name=name,
            description=spec.description.strip(),
            system_instruction=spec.system_instruction.strip(),
            model=spec.model,
            generation=GenerationSettings(
                temperature=g.temperature,
                top_p=g.top_p,
                top_k=g.top_k,
                max_output_tokens=g.max_output_tokens,
            ),
            tools=tuple(dict.fromkeys(spec.tools)),
            output=tuple(dict.fromkeys(spec.output)),
        )
    return out


def load_personas(path: Path | None, *, default: str) -> PersonaRegistry:
    """Load PERSONAS_FILE, else ./personas.toml, else the shipped personas."""
    if path is None and Path("personas.toml").is_file():
        path = Path("personas.toml")
    if path is None:
        text = resources.files("bot").joinpath("personas.toml").read_text(encoding="utf-8")
        source = "built-in personas.toml"
    else:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise PersonaFileError(f"PERSONAS_FILE: cannot read {path}: {exc.strerror}") from None
        source = str(path)
    return PersonaRegistry(parse_personas(text, source=source), default=default, source=source)


_PICK = re.compile(r"^\s*\+([a-z0-9][a-z0-9_-]{0,31})\b\s*", re.I)


def take_persona(text: str) -> tuple[str | None, str]:
    """'+coder fix this' -> ('coder', 'fix this'): a message may pick its thread's persona."""
    m = _PICK.match(text)
    if not m:
        return None, text
    return m.group(1).lower(), text[m.end() :]
