from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.settings import Settings, SettingsError, id_set, load_settings

ENV_NAMES = [n for n in Settings.model_fields]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def test_defaults() -> None:
    s = load_settings()
    assert s.DATABASE_URL is None
    assert s.database_path == Path("data/gemini-bot.db")
    assert s.SLACK_STREAM_MODE == "edit"
    assert s.platforms_enabled() == []


def test_dotenv_is_read_and_environment_wins(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text("GEMINI_MODEL=from-dotenv\nHTTP_PORT=9000\n")
    monkeypatch.setenv("HTTP_PORT", "9100")
    s = load_settings()
    assert s.GEMINI_MODEL == "from-dotenv"
    assert s.HTTP_PORT == 9100


def test_one_line_per_problem_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PORT", "eighty")
    monkeypatch.setenv("SLACK_STREAM_MODE", "fast")
    monkeypatch.setenv("DATABASE_URL", "postgres://x")
    with pytest.raises(SettingsError) as err:
        load_settings()
    problems = err.value.problems
    assert len(problems) == 3
    assert {p.split(":")[0] for p in problems} == {"HTTP_PORT", "SLACK_STREAM_MODE", "DATABASE_URL"}


def test_secrets_are_never_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", "AIzaSECRET")
    s = load_settings()
    assert "AIzaSECRET" not in repr(s)


def test_gemini_key_required_for_model_use() -> None:
    with pytest.raises(SettingsError, match="GEMINI_API_KEY"):
        load_settings().require_gemini()


def test_platforms_enabled_by_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-1")
    monkeypatch.setenv("DISCORD_TOKEN", "abc")
    assert load_settings().platforms_enabled() == ["slack", "discord"]


def test_id_lists() -> None:
    assert id_set(" slack:U1, discord:2;discord:role:3 ,") == {
        "slack:U1",
        "discord:2",
        "discord:role:3",
    }


def _cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ENV_NAMES}
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        env={**base, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_run_without_platform_token_exits_non_zero_and_says_what_to_set(tmp_path: Path) -> None:
    r = _cli("run", env={"GEMINI_API_KEY": "k"}, cwd=tmp_path)
    assert r.returncode == 2
    assert "SLACK_BOT_TOKEN" in r.stderr and "DISCORD_TOKEN" in r.stderr
    assert "Traceback" not in r.stderr


def test_invalid_settings_stop_the_program_without_traceback(tmp_path: Path) -> None:
    r = _cli("run", env={"HTTP_PORT": "x", "LOG_LEVEL": "loud"}, cwd=tmp_path)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("gemini-bot: HTTP_PORT:")
    assert lines[1].startswith("gemini-bot: LOG_LEVEL:")


def test_console_without_key_names_the_setting(tmp_path: Path) -> None:
    r = _cli("console", env={}, cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.startswith("gemini-bot: GEMINI_API_KEY:")


def test_malformed_personas_file_is_one_clear_line(tmp_path: Path) -> None:
    (tmp_path / "p.toml").write_text('[personas.x]\ndescription = "d"\n')
    r = _cli("personas", env={"PERSONAS_FILE": "p.toml", "DEFAULT_PERSONA": "x"}, cwd=tmp_path)
    assert r.returncode == 2
    assert "persona 'x': system_instruction" in r.stderr
    assert "Traceback" not in r.stderr


def test_a_postgres_url_is_accepted_and_its_password_kept_out_of_labels(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://bot:pa55@db.internal:5432/gemini")
    s = load_settings()
    assert s.postgres_url == "postgresql://bot:pa55@db.internal:5432/gemini"
    assert s.database_path is None
    assert s.database_label == "postgresql://bot@db.internal:5432/gemini"
    assert s.database_password == "pa55"


def test_an_unknown_database_scheme_names_the_accepted_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DATABASE_URL", "mysql://x@y/z")
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert "postgresql://user:password@host:5432/dbname" in str(err.value.problems)
