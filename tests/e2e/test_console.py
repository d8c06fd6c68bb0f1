"""`gemini-bot console` as a subprocess against the fake Gemini through the real SDK."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from bot.settings import Settings
from storage.sqlite import SqliteStore
from tests.fakes.gemini import API_KEY, FakeGemini, Fault, Reply


class Console:
    def __init__(self, fake: FakeGemini, data: Path, **env: str) -> None:
        self.fake = fake
        self.data = data
        self.env = {k: v for k, v in os.environ.items() if k not in Settings.model_fields}
        self.env.update(
            GEMINI_API_KEY=API_KEY,
            GEMINI_BASE_URL=fake.base_url,
            GEMINI_MODEL="gemini-test",
            DATA_DIR=str(data),
            USER="tester",
            LOGNAME="tester",
            **env,
        )

    async def run(self, *lines: str, args: tuple[str, ...] = ()) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            "console",
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self.env,
            cwd=self.data,
        )
        out, err = await asyncio.wait_for(
            proc.communicate("".join(line + "\n" for line in lines).encode()), 60
        )
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode()

    async def history(self, thread: str):
        store = SqliteStore(
            self.data / "gemini-bot.db", blob_dir=self.data / "blobs", max_blob_bytes=10**9
        )
        await store.open()
        try:
            from bot.types import ThreadKey

            conv = await store.get_conversation(ThreadKey("console", "local", "console", thread))
            assert conv is not None
            return (await store.load_history(conv.id, token_budget=10**9)).turns
        finally:
            await store.close()


@pytest.fixture
def console(fake_gemini: FakeGemini, tmp_path: Path) -> Console:
    return Console(fake_gemini, tmp_path, INLINE_MAX_BYTES="1000", GEMINI_MAX_RETRIES="1")


async def test_two_turns_carry_history_and_persona(console: Console) -> None:
    console.fake.enqueue(Reply(["Blue ", "whales."]), Reply(["Yes."]))
    code, out, err = await console.run(
        "What is the largest animal?",
        "Are you sure?",
        args=("--thread", "t1", "--persona", "coder"),
    )
    assert code == 0, err
    assert out == "Blue whales.\nYes.\n"
    req = console.fake.generate_requests()[-1]
    assert req.texts() == [
        "[tester] What is the largest animal?",
        "Blue whales.",
        "[tester] Are you sure?",
    ]
    assert "senior software engineer" in req.system_instruction()
    assert "thread: t1" in err


async def test_restart_resumes_the_thread(console: Console) -> None:
    await console.run("My name is Ada.", args=("--thread", "keep"))
    code, _out, _ = await console.run("What is my name?", args=("--thread", "keep"))
    assert code == 0
    req = console.fake.generate_requests()[-1]
    assert req.texts() == [
        "[tester] My name is Ada.",
        "echo: [tester] My name is Ada.",
        "[tester] What is my name?",
    ]
    # A different thread starts fresh.
    await console.run("hello", args=("--thread", "other"))
    assert console.fake.generate_requests()[-1].texts() == ["[tester] hello"]


async def test_attached_file_is_uploaded_once_and_referenced_later(
    console: Console, tmp_path: Path
) -> None:
    doc = tmp_path / "report.pdf"
    doc.write_bytes(b"%PDF-1.4\n" + b"q" * 20_000)
    code, _out, err = await console.run(
        f"/attach {doc}", "Summarise this", "What was the title?", args=("--thread", "f")
    )
    assert code == 0, err
    assert "Attached report.pdf (20,009 bytes)" in err
    reqs = console.fake.generate_requests()
    assert len(console.fake.upload_starts()) == 1
    uri = reqs[0].file_uris()
    assert len(uri) == 1 and reqs[1].file_uris() == uri
    fid = uri[0].rsplit("/", 1)[-1]
    assert console.fake.file_bytes[fid] == doc.read_bytes()
    # After a restart the stored URI is still used; nothing is uploaded again.
    await console.run("One more question", args=("--thread", "f"))
    assert console.fake.generate_requests()[-1].file_uris() == uri
    assert len(console.fake.upload_starts()) == 1


async def test_commands_forget_new_and_unknown(console: Console) -> None:
    code, _out, err = await console.run(
        "remember 42",
        "/forget",
        "what number?",
        "/persona",
        "/persona pirate",
        "/bogus",
        "/new",
        "fresh",
        args=("--thread", "c"),
    )
    assert code == 0
    assert "Forgotten." in err
    assert "Unknown persona 'pirate'" in err
    assert "Unknown command /bogus. Try /help." in err
    assert "• coder" in err
    reqs = console.fake.generate_requests()
    assert reqs[1].texts() == ["[tester] what number?"]  # forgotten
    assert reqs[2].texts() == ["[tester] fresh"]  # new thread


@pytest.mark.parametrize(
    ("fault", "message", "status", "text"),
    [
        (
            Fault.rate_limited(60),
            "Gemini's quota is used up for now. Try again in about 60 seconds.",
            "failed",
            "",
        ),
        (
            Fault.unavailable(),
            "Gemini is unavailable right now. Please try again in a few minutes.",
            "failed",
            "",
        ),
        (
            Fault.mid_stream("Half an ", "answer"),
            "The reply was cut short: Gemini is unavailable",
            "partial",
            "Half an answer",
        ),
        (
            Fault.safety_block(),
            "Gemini declined to answer this (safety). Try rephrasing.",
            "failed",
            "",
        ),
        (
            Reply(["Too ", "long"], finish_reason="MAX_TOKENS"),
            "The reply reached the maximum length and was cut off.",
            "partial",
            "Too long",
        ),
        (Fault.too_large(), "That is more than Gemini can take in one request.", "failed", ""),
    ],
    ids=["quota", "unavailable", "mid-stream", "safety", "max-tokens", "too-large"],
)
async def test_faults_give_user_message_and_consistent_history(
    console: Console, fault, message: str, status: str, text: str
) -> None:
    console.fake.enqueue(Reply(["fine"]))
    console.fake.enqueue(
        *([fault] * (2 if fault.__class__ is Fault and fault.status == 503 else 1))
    )
    console.fake.enqueue(Reply(["recovered"]))
    code, out, err = await console.run("first", "second", "third", args=("--thread", "x"))
    assert code == 0, err
    assert "Traceback" not in err and "Traceback" not in out
    assert message in out
    if text:
        assert text in out
    assert out.rstrip().endswith("recovered")
    hist = await console.history("x")
    assert [(t.role, t.status) for t in hist] == [
        ("user", "complete"),
        ("model", "complete"),
        ("user", "complete"),
        ("model", status),
        ("user", "complete"),
        ("model", "complete"),
    ]
    assert hist[3].text == text
    # The third request saw a history that makes sense: failed turns leave no model text.
    third = console.fake.generate_requests()[-1].texts()
    assert third[:2] == ["[tester] first", "fine"]
    assert third[-1] == "[tester] third"
    assert ("Half an answer" in third) == (text == "Half an answer")
