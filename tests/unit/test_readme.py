from pathlib import Path

from shared.settings import Settings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_every_setting_is_in_the_readme_table() -> None:
    missing = [
        f"TRAYECTO_{name.upper()}"
        for name in Settings.model_fields
        if f"| `TRAYECTO_{name.upper()}` |" not in README
    ]
    assert missing == [], f"document these in the README's configuration table: {missing}"


def test_readme_gives_the_two_setup_commands() -> None:
    assert "make up " in README
    assert "make test " in README
