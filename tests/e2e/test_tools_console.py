"""Gemini's tools in `gemini-bot console` (a subprocess): plain URLs, code, saved images."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.e2e.test_console import Console
from tests.fakes.gemini import FakeGemini
from tests.fakes.gemini_tools import grounded, png_color

ANSWER = "Release 3.2 shipped on 5 May. It removed the legacy API."


async def test_grounded_answer_prints_markers_and_plain_source_urls(
    fake_gemini: FakeGemini, tmp_path: Path
) -> None:
    fake_gemini.enqueue(
        grounded(
            ANSWER,
            sources=[("Release notes", "https://example.com/r/3.2", "It removed the legacy API.")],
            queries=["release 3.2"],
        )
    )
    code, out, err = await Console(fake_gemini, tmp_path).run(
        "what changed in 3.2?", args=("--persona", "researcher")
    )
    assert code == 0, err
    assert out.startswith("Searching the web…\n")  # the status line, then the answer
    assert "It removed the legacy API.[1]" in out
    assert "\n[1] Release notes <https://example.com/r/3.2> (example.com)\n" in out
    assert "Searched: release 3.2 <https://www.google.com/search?q=release+3.2>" in out
    assert "](" not in out  # no Markdown links on a terminal


async def test_code_and_images_in_the_console(fake_gemini: FakeGemini, tmp_path: Path) -> None:
    console = Console(fake_gemini, tmp_path)
    code, out, err = await console.run("plot 3 5 2", args=("--persona", "analyst"))
    assert code == 0, err
    assert "```python" in out and "Output:" in out
    saved = [line for line in out.splitlines() if line.startswith("[file] chart-1.png")]
    assert saved, out
    code, out, err = await console.run("a blue square", args=("--persona", "illustrator"))
    assert code == 0, err
    (line,) = [ln for ln in out.splitlines() if ln.startswith("[file] image-1.png")]
    path = Path(line.rsplit(": ", 1)[1])
    assert path.is_relative_to(tmp_path / "files")
    assert png_color(await asyncio.to_thread(path.read_bytes)) == (0, 0, 255)
