"""The layering rules of the guide, read from the sources' imports: `bot/` imports no
platform SDK; only `bot/gemini.py` imports google.genai; only `storage/` imports a database
driver; adapters reach the core through `bot.facade` and `bot.ports`, never the engine's
parts (by import, or by attribute through another object)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PLATFORM_SDKS = ("slack_bolt", "slack_sdk", "discord")
DRIVERS = ("aiosqlite", "asyncpg", "sqlite3", "psycopg")
ENGINE_PARTS = ("bot.engine", "bot.streaming", "bot.gate", "bot.shared_limits", "storage")


def imports(path: Path) -> set[str]:
    """Every module a file imports, at any depth (lazy imports in functions too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def under(modules: set[str], roots: tuple[str, ...]) -> list[str]:
    """The imported modules that are `roots` or inside them."""
    return sorted(m for m in modules if any(m == r or m.startswith(r + ".") for r in roots))


def sources(folder: str) -> list[Path]:
    """The folder's Python files (never none: a wrong ROOT would pass every check)."""
    found = sorted((ROOT / folder).rglob("*.py"))
    assert found, f"no sources under {folder}/"
    return found


def test_bot_imports_no_platform_sdk() -> None:
    bad = {
        str(p.relative_to(ROOT)): found
        for p in sources("bot")
        if (found := under(imports(p), PLATFORM_SDKS))
    }
    assert bad == {}


def test_only_the_gemini_modules_import_google_genai() -> None:
    users = sorted(
        str(p.relative_to(ROOT))
        for folder in ("bot", "adapters", "storage")
        for p in sources(folder)
        if under(imports(p), ("google.genai", "google.generativeai"))
    )
    assert users == ["bot/gemini.py"]


def test_only_storage_imports_a_database_driver() -> None:
    users = sorted(
        str(p.relative_to(ROOT))
        for folder in ("bot", "adapters")
        for p in sources(folder)
        if under(imports(p), DRIVERS)
    )
    assert users == []


def test_adapters_reach_the_core_through_the_facade() -> None:
    bad = {
        str(p.relative_to(ROOT)): found
        for p in sources("adapters")
        if (found := under(imports(p), ENGINE_PARTS))
    }
    assert bad == {}


def test_adapters_reach_no_engine_part_by_attribute() -> None:
    inside = {"engine", "_engine", "locks", "personas", "promised"}
    bad = sorted(
        f"{p.relative_to(ROOT)}:{node.lineno} .{node.attr}"
        for p in sources("adapters")
        for node in ast.walk(ast.parse(p.read_text(), filename=str(p)))
        if isinstance(node, ast.Attribute) and node.attr in inside
    )
    assert bad == []
