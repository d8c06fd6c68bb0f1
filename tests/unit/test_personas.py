from __future__ import annotations

from pathlib import Path

import pytest

from bot.errors import UnknownPersona
from bot.personas import PersonaFileError, load_personas, parse_personas
from tests.conftest import ROOT


def test_shipped_personas_load_and_are_useful() -> None:
    reg = load_personas(ROOT / "personas.toml", default="assistant")
    assert len(reg.names) >= 3
    for p in reg.all():
        assert p.description and len(p.system_instruction) > 50
    assert reg.get("coder").generation.temperature == 0.2


def test_package_copy_is_used_without_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    reg = load_personas(None, default="assistant")
    assert reg.source == "built-in personas.toml"
    assert "summarizer" in reg.names


def test_working_directory_file_wins_over_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "personas.toml").write_text(
        '[personas.pirate]\ndescription = "Arr"\nsystem_instruction = "Talk like a pirate."\n'
    )
    reg = load_personas(None, default="pirate")
    assert reg.names == ["pirate"]


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ('[personas.x]\ndescription = "d"\n', "persona 'x': system_instruction: Field required"),
        (
            '[personas.x]\ndescription = "d"\nsystem_instruction = "s"\n'
            "[personas.x.generation]\ntemperature = 5\n",
            "persona 'x': generation.temperature: Input should be less than or equal to 2",
        ),
        (
            '[personas.x]\ndescription = "d"\nsystem_instruction = "s"\ncolour = "red"\n',
            "persona 'x': colour",
        ),
        (
            '[personas."Bad Name"]\ndescription = "d"\nsystem_instruction = "s"\n',
            "persona 'Bad Name': name",
        ),
        ("[personas.x\n", "not valid TOML"),
        ('[persona.x]\ndescription = "d"\n', "unknown top-level key(s) persona"),
    ],
)
def test_malformed_file_names_persona_and_field(toml: str, expected: str) -> None:
    with pytest.raises(PersonaFileError) as err:
        parse_personas(toml, source="p.toml")
    assert expected in str(err.value)
    assert str(err.value).startswith("p.toml")


def test_default_persona_must_exist(tmp_path: Path) -> None:
    f = tmp_path / "p.toml"
    f.write_text('[personas.a]\ndescription = "d"\nsystem_instruction = "s"\n')
    with pytest.raises(PersonaFileError, match="DEFAULT_PERSONA: 'zzz'"):
        load_personas(f, default="zzz")


def test_missing_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(PersonaFileError, match="PERSONAS_FILE: cannot read"):
        load_personas(tmp_path / "nope.toml", default="a")


def test_resolution_order_thread_channel_default() -> None:
    reg = load_personas(ROOT / "personas.toml", default="assistant")
    assert reg.resolve(thread="coder", channel="editor").name == "coder"
    assert reg.resolve(thread=None, channel="editor").name == "editor"
    assert reg.resolve(thread=None, channel=None).name == "assistant"
    # A persona removed from the file since it was chosen falls through.
    assert reg.resolve(thread="deleted", channel=None).name == "assistant"


def test_unknown_persona_has_a_user_message() -> None:
    reg = load_personas(ROOT / "personas.toml", default="assistant")
    with pytest.raises(UnknownPersona) as err:
        reg.get("pirate")
    assert "Choose one of: analyst, assistant" in err.value.user_message
