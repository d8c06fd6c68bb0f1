"""The lock files and pyproject.toml agree: checked offline, from the installed metadata.

`make lock` writes the locks from pyproject.toml; this fails when one was edited without the
other: a dependency in pyproject.toml that no lock pins (or pins at a version outside its
range), or a pinned package nothing requires any more.
"""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)(\[[^\]]*\])?==([^\s\\;]+)", re.MULTILINE)


def pins(lock: str) -> dict[str, str]:
    """Package name -> pinned version of a hashed lock file."""
    text = (ROOT / lock).read_text()
    return {canonicalize_name(m[1]): m[3] for m in PIN.finditer(text)}


def direct(extras: tuple[str, ...]) -> list[Requirement]:
    """pyproject.toml's requirements, with the given optional groups."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = list(project["dependencies"])
    for extra in extras:
        names += project["optional-dependencies"][extra]
    return [Requirement(n) for n in names]


def closure(roots: list[Requirement]) -> set[str]:
    """Every distribution the roots need here, walked through installed metadata."""
    seen: set[str] = set()
    todo = [(r, frozenset(r.extras)) for r in roots]
    visited: set[tuple[str, frozenset[str]]] = set()
    while todo:
        req, extras = todo.pop()
        name = canonicalize_name(req.name)
        if (name, extras) in visited:
            continue
        visited.add((name, extras))
        seen.add(name)
        for spec in metadata.requires(name) or []:
            sub = Requirement(spec)
            envs = [{"extra": e} for e in extras] or [{"extra": ""}]
            if sub.marker is None or any(sub.marker.evaluate(env) for env in envs):
                todo.append((sub, frozenset(sub.extras)))
    return seen


@pytest.mark.parametrize(
    ("lock", "extras"), [("requirements.lock", ()), ("requirements-dev.lock", ("dev",))]
)
def test_lock_matches_pyproject(lock: str, extras: tuple[str, ...]) -> None:
    pinned = pins(lock)
    roots = direct(extras)
    for req in roots:
        name = canonicalize_name(req.name)
        assert name in pinned, f"{req.name} is in pyproject.toml but not in {lock}: make lock"
        assert req.specifier.contains(pinned[name], prereleases=True), (
            f"{lock} pins {name}=={pinned[name]}, outside pyproject.toml's {req}: make lock"
        )
    needed = closure(roots)
    assert needed - set(pinned) == set(), f"needed but not pinned in {lock}: make lock"
    assert set(pinned) - needed == set(), f"pinned in {lock} but nothing needs it: make lock"


def test_installed_is_the_lock() -> None:
    for name, version in pins("requirements-dev.lock").items():
        assert metadata.version(name) == version, f"{name}: run make install"


def test_installer_is_pinned_by_hash() -> None:
    text = (ROOT / "requirements-uv.lock").read_text()
    assert re.search(r"^uv==[\d.]+ \\$", text, re.MULTILINE)
    assert text.count("--hash=sha256:") >= 3  # a wheel per platform
