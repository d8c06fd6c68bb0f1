"""Start-up check: every Gemini model the settings and personas name must exist.

Google retires models on a schedule (ai.google.dev/gemini-api/docs/deprecations), and a
retired model answers every request with 404 NOT_FOUND. Finding that out at start-up, with
the setting or persona to change and the models to change it to, beats finding it out from
the first user who gets an error.

- A model Gemini does not know is a problem line: the model, what names it (GEMINI_MODEL,
  persona 'x' in FILE) and the available models of the same family (from models.list).
- Any other failure of the check (network, 5xx, a refused key) is one WARNING and start-up
  goes on: Gemini being down for a minute must not stop the service from starting.

A model's *family* is its name without the version number and release qualifiers:
`gemini-2.5-flash`, `gemini-3.8-flash`, `gemini-3-flash-preview` and
`gemini-2.0-flash-001` are all `gemini-*-flash`; `gemini-3.5-flash-lite` is
`gemini-*-flash-lite`. So a retired model is matched with its successors of any version.
Only models that support generateContent are offered as alternatives.

The Gemini calls themselves live in bot/gemini.py (the only module importing google.genai);
this module talks to them through the small `ModelCatalog` port.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from bot.errors import ModelError, ModelNotFound
from bot.types import Persona

log = logging.getLogger(__name__)

MAX_LISTED = 8  # alternatives named in the one line; more would not fit a terminal line
_VERSION = re.compile(r"^\d+(\.\d+)*$")
# Release qualifiers: previews, aliases, experiments, dated or numbered snapshots.
_QUALIFIER = re.compile(r"^(preview|latest|exp|experimental|\d+)$")


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """A model Gemini offers: its name without "models/" and its generation methods."""

    name: str
    methods: tuple[str, ...] = ()

    @property
    def generates(self) -> bool:
        """True if it answers generateContent (chat models do; embedding models do not)."""
        return "generateContent" in self.methods


class ModelCatalog(Protocol):
    """What the check needs from the model client (GeminiChatModel implements it)."""

    async def check_model(self, name: str) -> None:
        """Return if the model exists; raise ModelNotFound if not, ModelError otherwise."""
        ...

    async def list_models(self) -> list[ModelInfo]:
        """Every model offered; ModelError on failure."""
        ...


def family(name: str) -> str:
    """The family label of a model name, e.g. `gemini-*-flash` for `gemini-3.8-flash`."""
    tokens = name.removeprefix("models/").split("-")
    version = next((i for i, t in enumerate(tokens) if _VERSION.match(t)), None)
    if version is None:  # e.g. gemini-flash-latest: the first word is the prefix
        prefix, rest = tokens[:1], tokens[1:]
    else:
        prefix, rest = tokens[:version], tokens[version + 1 :]
    tier: list[str] = []
    for t in rest:
        if _QUALIFIER.match(t):
            break
        tier.append(t)
    return "-".join([*prefix, "*", *tier])


def _sort_key(name: str) -> tuple[bool, tuple[int, ...], str]:
    """Stable before preview/experimental (what an admin should switch to), newest first."""
    tokens = name.split("-")
    version = next((t for t in tokens if _VERSION.match(t)), "0")
    # Padded so that 3 sorts as 3.0.0, after 3.8.
    numbers = tuple(-int(n) for n in [*version.split("."), "0", "0", "0"][:4])
    qualified = any(t in ("preview", "exp", "experimental", "latest") for t in tokens)
    return qualified, numbers, name


def model_uses(
    *, default_model: str, personas: Iterable[Persona], source: str = ""
) -> dict[str, list[str]]:
    """Every model the bot may call, mapped to what names it, in the order first named."""
    uses: dict[str, list[str]] = {default_model.removeprefix("models/"): ["GEMINI_MODEL"]}
    where = f" in {source}" if source else ""
    for p in personas:
        if p.model:
            uses.setdefault(p.model.removeprefix("models/"), []).append(
                f"persona '{p.name}'{where}"
            )
    return uses


def alternatives(missing: str, available: Iterable[ModelInfo]) -> str:
    """The end of the problem line: same-family models, else any that generate content."""
    fam = family(missing)
    chat = sorted({m.name for m in available if m.generates} - {missing}, key=_sort_key)
    same = [n for n in chat if family(n) == fam]
    names, label = (same, f"available {fam} models") if same else (chat, "no " + fam + " model")
    if not names:
        return "Gemini lists no model that generates content"
    shown = ", ".join(names[:MAX_LISTED])
    more = f" (+{len(names) - MAX_LISTED} more)" if len(names) > MAX_LISTED else ""
    if same:
        return f"{label}: {shown}{more}"
    return f"{label} is available; models that generate content: {shown}{more}"


async def missing_models(
    catalog: ModelCatalog,
    *,
    default_model: str,
    personas: Iterable[Persona],
    source: str = "",
) -> list[str]:
    """One problem line per configured model Gemini does not know; [] when all exist.

    Failures other than "not found" log one WARNING and end the check: start-up goes on.
    """
    uses = model_uses(default_model=default_model, personas=personas, source=source)
    missing: list[str] = []
    for model in uses:
        try:
            await catalog.check_model(model)
        except ModelNotFound:
            missing.append(model)
        except ModelError as exc:
            log.warning(
                "could not check the Gemini models at start-up (%s: %s); starting anyway",
                type(exc).__name__,
                exc,
            )
            break
    if not missing:
        return []
    try:
        available: list[ModelInfo] | None = await catalog.list_models()
    except ModelError as exc:
        log.warning("could not list the Gemini models (%s: %s)", type(exc).__name__, exc)
        available = None
    lines = []
    for model in missing:
        named_by = " and ".join(uses[model])
        tail = (
            alternatives(model, available)
            if available is not None
            else "could not list the available models"
        )
        lines.append(
            f"model {model}, named by {named_by}, is not available from Gemini "
            f"(retired or misspelt); {tail}"
        )
    return lines
