"""DISCORD_SHARD_COUNT and DISCORD_SHARD_IDS: parsed, checked against each other, one line
per problem naming the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.settings import Settings, SettingsError, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in Settings.model_fields:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def shards(monkeypatch: pytest.MonkeyPatch, **env: str) -> Settings:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return load_settings()


def problems(monkeypatch: pytest.MonkeyPatch, **env: str) -> list[str]:
    with pytest.raises(SettingsError) as err:
        shards(monkeypatch, **env)
    return err.value.problems


def test_unset_means_no_sharding(monkeypatch: pytest.MonkeyPatch) -> None:
    s = shards(monkeypatch, DISCORD_SHARD_COUNT="", DISCORD_SHARD_IDS=" ")
    assert s.DISCORD_SHARD_COUNT is None and s.DISCORD_SHARD_IDS is None


@pytest.mark.parametrize(
    ("count", "ids", "want"),
    [
        ("4", "0,1", (4, (0, 1))),
        (" 4 ", " 3 , ,2", (4, (2, 3))),  # blanks dropped, sorted
        ("2", "", (2, None)),  # every shard
        ("auto", "", ("auto", None)),
        ("AUTO", "", ("auto", None)),
        ("1", "0", (1, (0,))),
    ],
)
def test_valid_values(monkeypatch: pytest.MonkeyPatch, count: str, ids: str, want: object) -> None:
    s = shards(monkeypatch, DISCORD_SHARD_COUNT=count, DISCORD_SHARD_IDS=ids)
    assert want == (s.DISCORD_SHARD_COUNT, s.DISCORD_SHARD_IDS)


@pytest.mark.parametrize(
    ("env", "line"),
    [
        ({"DISCORD_SHARD_COUNT": "0"}, "DISCORD_SHARD_COUNT: Value error, must be a whole number"),
        ({"DISCORD_SHARD_COUNT": "two"}, "DISCORD_SHARD_COUNT: Value error, must be a whole"),
        ({"DISCORD_SHARD_COUNT": "1.5"}, "DISCORD_SHARD_COUNT: Value error, must be a whole"),
        (
            {"DISCORD_SHARD_COUNT": "4", "DISCORD_SHARD_IDS": "0;1"},
            "DISCORD_SHARD_IDS: Value error, must be comma-separated shard numbers",
        ),
        (
            {"DISCORD_SHARD_COUNT": "4", "DISCORD_SHARD_IDS": "-1"},
            "DISCORD_SHARD_IDS: Value error, must be comma-separated shard numbers",
        ),
        (
            {"DISCORD_SHARD_COUNT": "4", "DISCORD_SHARD_IDS": "1,2,1"},
            "DISCORD_SHARD_IDS: Value error, lists shard 1 more than once",
        ),
        (
            {"DISCORD_SHARD_COUNT": "4", "DISCORD_SHARD_IDS": "3,4,5"},
            "DISCORD_SHARD_IDS: Value error, shards 4, 5 out of range: with "
            "DISCORD_SHARD_COUNT=4 the ids go from 0 to 3",
        ),
        ({"DISCORD_SHARD_IDS": "0,1"}, "DISCORD_SHARD_IDS: Value error, needs DISCORD_SHARD_COUNT"),
        (
            {"DISCORD_SHARD_COUNT": "auto", "DISCORD_SHARD_IDS": "0"},
            "DISCORD_SHARD_IDS: Value error, needs a number in DISCORD_SHARD_COUNT, not auto",
        ),
    ],
)
def test_one_clear_line_per_problem(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], line: str
) -> None:
    (got,) = problems(monkeypatch, **env)
    assert got.startswith(line), got
    assert f"(got {next(reversed(env.values()))!r})" in got


def test_both_wrong_is_two_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    got = problems(monkeypatch, DISCORD_SHARD_COUNT="-2", DISCORD_SHARD_IDS="x")
    assert [p.split(":")[0] for p in got] == ["DISCORD_SHARD_COUNT", "DISCORD_SHARD_IDS"]


def test_an_invalid_count_is_not_blamed_on_the_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    (got,) = problems(monkeypatch, DISCORD_SHARD_COUNT="many", DISCORD_SHARD_IDS="0,1")
    assert got.startswith("DISCORD_SHARD_COUNT:")


def test_overrides_as_python_values() -> None:
    s = load_settings(_env_file=None, DISCORD_SHARD_COUNT=4, DISCORD_SHARD_IDS=[1, 0])
    assert (s.DISCORD_SHARD_COUNT, s.DISCORD_SHARD_IDS) == (4, (0, 1))
