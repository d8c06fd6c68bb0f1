"""Gemini's tools end to end: `gemini-bot run` as its own process, Slack in HTTP mode, the
real google-genai SDK against the fake Gemini's grounding, URL-context, code and image
shapes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from google.genai import types

from tests.adapters.slack_process import SlackServiceProcess
from tests.fakes.gemini import FakeGemini, Reply
from tests.fakes.gemini_tools import grounded, png, png_color
from tests.fakes.slack import BOT_USER, FakeSlack, SlackDriver
from tests.helpers import until

MENTION = f"<@{BOT_USER}>"
RELEASES = "https://example.com/releases/3.2"
ANSWER = "Release 3.2 shipped on 5 May. It removed the legacy API. Upgrades are automatic."


def visible(slack: FakeSlack, ev: dict[str, Any]) -> str:
    """All of the bot's reply in the thread, as shown now."""
    return "\n".join(m.visible() for m in slack.bot_messages(ev["channel"], ev["ts"]))


def uploaded(slack: FakeSlack, ev: dict[str, Any]) -> list[tuple[dict[str, Any], bytes]]:
    """(file, bytes) of every file the bot uploaded into the thread."""
    return [
        slack.files[f["id"]] for m in slack.bot_messages(ev["channel"], ev["ts"]) for f in m.files
    ]


async def mention(driver: SlackDriver, channel: str, text: str) -> dict[str, Any]:
    ev = driver.as_mention(driver.message(channel, "U1ADA", f"{MENTION} {text}"))
    assert (await driver.event(ev))[0] == 200
    return ev


@pytest.mark.parametrize("mode", ["edit", "native"])
async def test_grounded_answer_streams_then_ends_with_numbered_sources_and_searches(
    fake_gemini: FakeGemini, fake_slack: FakeSlack, tmp_path: Path, mode: str
) -> None:
    fake_gemini.enqueue(
        grounded(
            ANSWER,
            sources=[
                ("Release notes 3.2", RELEASES, "Release 3.2 shipped on 5 May."),
                ("Changelog", "https://changes.test/log", "It removed the legacy API."),
            ],
            queries=["release 3.2 date", "release 3.2 changes"],
            chunk_size=8,
            delay=0.05,
        )
    )  # fmt: skip
    async with SlackServiceProcess(
        fake_gemini, fake_slack, tmp_path, SLACK_STREAM_MODE=mode
    ) as service:
        driver = SlackDriver(fake_slack, service.events_url)
        try:
            ev = await mention(driver, "C1", "+researcher what changed in release 3.2?")
            await until(lambda: "Searched:" in visible(fake_slack, ev), limit=30)
        finally:
            await driver.close()
    shown = visible(fake_slack, ev)
    assert "Release 3.2 shipped on 5 May.[1] It removed the legacy API.[2]" in shown
    assert "[1] [Release notes 3.2](https://example.com/releases/3.2) (example.com)" in shown
    assert "[2] [Changelog](https://changes.test/log) (changes.test)" in shown
    assert "[release 3.2 date](https://www.google.com/search?q=release+3.2+date)" in shown
    # The text streamed before the sources came: earlier edits show text without them.
    texts = [t for t in fake_slack.sent_texts() if t.startswith("Rel")]
    assert any("Sources:" not in t for t in texts), fake_slack.sent_texts()
    # While it searched: Slack's status line under a native stream (which only appends),
    # an italic line in the message in edit mode.
    if mode == "native":
        assert ("C1", ev["ts"], "Searching the web…") in fake_slack.statuses
        assert not [t for t in fake_slack.sent_texts() if "Searching" in t]
    else:
        assert "_Searching the web…_" in fake_slack.sent_texts()
    (request,) = fake_gemini.generate_requests()
    assert set(request.tools()) == {"googleSearch", "urlContext"}
    assert service.stderr().count("Traceback") == 0


async def test_pasted_links_go_with_url_context_and_an_unreadable_one_is_named(
    fake_gemini: FakeGemini, fake_slack: FakeSlack, tmp_path: Path
) -> None:
    fake_gemini.unreadable_urls = {"https://down.test/page"}
    async with SlackServiceProcess(fake_gemini, fake_slack, tmp_path) as service:
        driver = SlackDriver(fake_slack, service.events_url)
        try:
            ev = await mention(
                driver,
                "C2",
                "compare <https://docs.test/a|the docs> and <https://down.test/page>",
            )
            await until(lambda: "could not be used" in visible(fake_slack, ev), limit=30)
        finally:
            await driver.close()
    (request,) = fake_gemini.generate_requests()
    assert request.tools() == ["urlContext"]  # the default persona reads links
    prompt = request.texts()[-1]
    assert "the docs (https://docs.test/a)" in prompt and "https://down.test/page" in prompt
    shown = visible(fake_slack, ev)
    assert "https://down.test/page (could not be read)" in shown
    assert "docs.test" not in shown.split("could not be used")[1]


async def test_operator_allowlist_keeps_tools_from_gemini(
    fake_gemini: FakeGemini, fake_slack: FakeSlack, tmp_path: Path
) -> None:
    async with SlackServiceProcess(
        fake_gemini, fake_slack, tmp_path, GEMINI_TOOLS_ALLOWED="code_execution"
    ) as service:
        driver = SlackDriver(fake_slack, service.events_url)
        try:
            ev = await mention(driver, "C3", "+researcher any news?")
            await until(lambda: "echo:" in visible(fake_slack, ev), limit=30)
            ev2 = await mention(driver, "C3", "+analyst run 6*7")
            await until(lambda: "Output:" in visible(fake_slack, ev2), limit=30)
        finally:
            await driver.close()
    first, second = fake_gemini.generate_requests()
    assert first.tools() == []  # search and URL context: not allowed by the operator
    assert second.tools() == ["codeExecution"]


async def test_image_persona_uploads_a_png_and_a_follow_up_sends_it_back(
    fake_gemini: FakeGemini, fake_slack: FakeSlack, tmp_path: Path
) -> None:
    async with SlackServiceProcess(fake_gemini, fake_slack, tmp_path) as service:
        driver = SlackDriver(fake_slack, service.events_url)
        try:
            ev = await mention(driver, "C4", "+illustrator draw a lighthouse")

            def images() -> list[bytes]:
                return [
                    data for _meta, data in uploaded(fake_slack, ev) if data.startswith(b"\x89PNG")
                ]

            await until(lambda: len(images()) == 1, limit=30)
            assert png_color(images()[0]) == (255, 0, 0)
            follow = driver.message("C4", "U1ADA", "make it blue", thread_ts=ev["ts"])
            assert (await driver.event(follow))[0] == 200
            await until(lambda: len(images()) == 2, limit=30)
        finally:
            await driver.close()
    assert png_color(images()[1]) == (0, 0, 255)
    first, second = fake_gemini.generate_requests()
    assert first.response_modalities() == ["TEXT", "IMAGE"]
    # The follow-up carries the first image back as the model's own earlier output.
    model_turns = [c for c in second.contents() if c.get("role") == "model"]
    assert any("inlineData" in p or "inline_data" in p for c in model_turns for p in c["parts"])
    assert service.stderr().count("Traceback") == 0


async def test_code_execution_shows_code_and_output_and_uploads_the_chart(
    fake_gemini: FakeGemini, fake_slack: FakeSlack, tmp_path: Path
) -> None:
    chart = png(32, 32, (10, 200, 10))
    fake_gemini.enqueue(
        Reply(
            [
                "Here is the plot.",
                types.Part(
                    executable_code=types.ExecutableCode(
                        code="import matplotlib\nprint(sum([1, 2, 3]))", language="PYTHON"
                    )
                ),
                types.Part(
                    code_execution_result=types.CodeExecutionResult(
                        outcome="OUTCOME_OK", output="6\n"
                    )
                ),
                types.Part(inline_data=types.Blob(mime_type="image/png", data=chart)),
                "The total is 6.",
            ],
            delay=0.02,
        )
    )
    async with SlackServiceProcess(fake_gemini, fake_slack, tmp_path) as service:
        driver = SlackDriver(fake_slack, service.events_url)
        try:
            ev = await mention(driver, "C5", "+analyst plot 1 2 3")
            await until(lambda: uploaded(fake_slack, ev), limit=30)
            await until(lambda: "The total is 6." in visible(fake_slack, ev), limit=30)
        finally:
            await driver.close()
    shown = visible(fake_slack, ev)
    assert "```python\nimport matplotlib\nprint(sum([1, 2, 3]))\n```" in shown
    assert "Output:\n```\n6\n```" in shown
    ((meta, data),) = uploaded(fake_slack, ev)
    assert data == chart and meta["name"] == "chart-1.png"
    assert service.stderr().count("Traceback") == 0


async def test_long_code_is_attached_as_a_snippet(
    fake_gemini: FakeGemini, fake_slack: FakeSlack, tmp_path: Path
) -> None:
    code = "\n".join(f"value_{i} = {i} * 5" for i in range(80))
    ran = types.ExecutableCode(code=code, language="PYTHON")
    result = types.CodeExecutionResult(outcome="OUTCOME_OK", output="ok")
    fake_gemini.enqueue(
        Reply(
            [
                "Computed.",
                types.Part(executable_code=ran),
                types.Part(code_execution_result=result),
            ]
        )
    )
    async with SlackServiceProcess(fake_gemini, fake_slack, tmp_path) as service:
        driver = SlackDriver(fake_slack, service.events_url)
        try:
            ev = await mention(driver, "C6", "+analyst run the big one")
            await until(lambda: uploaded(fake_slack, ev), limit=30)
            await until(lambda: "Output:" in visible(fake_slack, ev), limit=30)
        finally:
            await driver.close()
    shown = visible(fake_slack, ev)
    assert "_Ran code (80 lines): code-1.py_" in shown and "value_40" not in shown
    ((meta, data),) = uploaded(fake_slack, ev)
    assert data == code.encode() and meta["name"] == "code-1.py"


async def test_a_channel_admin_switches_a_tool_off_for_that_channel_only(
    fake_gemini: FakeGemini, fake_slack: FakeSlack, tmp_path: Path
) -> None:
    async with SlackServiceProcess(
        fake_gemini, fake_slack, tmp_path, ADMIN_USERS="slack:U1ADA"
    ) as service:
        driver = SlackDriver(fake_slack, service.events_url)
        try:
            said = len(fake_slack.responses)
            assert (await driver.command("/gemini-tools", "off google_search", user="U2BOB"))[
                0
            ] == 200
            await until(lambda: len(fake_slack.responses) > said, limit=30)
            assert "Only admins" in fake_slack.responses[-1]["text"]
            await driver.command("/gemini-tools", "off google_search", channel="C7")
            await until(lambda: len(fake_slack.responses) > said + 1, limit=30)
            assert fake_slack.responses[-1]["text"] == "google_search is now off in this channel."
            ev = await mention(driver, "C7", "+researcher any news?")
            await until(lambda: "echo:" in visible(fake_slack, ev), limit=30)
            ev2 = await mention(driver, "C8", "+researcher any news?")
            await until(lambda: "Sources:" in visible(fake_slack, ev2), limit=30)
            await driver.command("/gemini-tools", "", channel="C7")
            await until(lambda: len(fake_slack.responses) > said + 2, limit=30)
        finally:
            await driver.close()
    in_c7, in_c8 = fake_gemini.generate_requests()
    assert in_c7.tools() == ["urlContext"]  # search switched off in C7 only
    assert in_c8.tools() == ["googleSearch", "urlContext"]
    assert (
        "google_search (Google Search grounding): off (switched off by an admin)"
        in fake_slack.responses[-1]["text"]
    )


async def test_without_files_write_the_image_is_reported_not_lost(
    fake_gemini: FakeGemini, fake_slack: FakeSlack, tmp_path: Path
) -> None:
    fake_slack.scopes.discard("files:write")  # installed from an older manifest
    async with SlackServiceProcess(fake_gemini, fake_slack, tmp_path) as service:
        driver = SlackDriver(fake_slack, service.events_url)
        try:
            ev = await mention(driver, "C9", "+illustrator a red kite")
            await until(lambda: "missing_scope" in visible(fake_slack, ev), limit=30)
        finally:
            await driver.close()
    shown = visible(fake_slack, ev)
    assert "Here is a red image." in shown
    assert "Slack refused the file(s) image-1.png (missing_scope)" in shown
    assert uploaded(fake_slack, ev) == []


@pytest.mark.parametrize("mode", ["edit", "native"])
async def test_markers_in_a_reply_split_over_messages_lose_and_repeat_nothing(
    fake_gemini: FakeGemini, fake_slack: FakeSlack, tmp_path: Path, mode: str
) -> None:
    paragraphs = [f"Point {i} holds. " + f"Detail {i} " * 95 for i in range(13)]  # ~13,000
    text = "\n\n".join(paragraphs)
    sources = [(f"Source {i}", f"https://s{i}.test/p", f"Point {i} holds.") for i in range(11)]
    fake_gemini.enqueue(grounded(text, sources=sources, queries=["points"], chunk_size=400))
    async with SlackServiceProcess(
        fake_gemini, fake_slack, tmp_path, SLACK_STREAM_MODE=mode
    ) as service:
        driver = SlackDriver(fake_slack, service.events_url)
        try:
            ev = await mention(driver, "C10", "+researcher all the points")
            await until(lambda: "Searched:" in visible(fake_slack, ev), limit=60)
            await until(lambda: "Point 10 holds.[11]" in visible(fake_slack, ev), limit=30)
        finally:
            await driver.close()
    messages = [m.visible() for m in fake_slack.bot_messages(ev["channel"], ev["ts"])]
    assert len(messages) >= 2
    shown = "\n".join(messages)
    for i in range(13):
        assert shown.count(f"Point {i} holds.") == 1, i
        if i < 11:
            assert f"Point {i} holds.[{i + 1}]" in shown
    assert "Sources:" in messages[-1] and all("Sources:" not in m for m in messages[:-1])
