from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from shared.cli.main import app

JOURNEY = """
journey: uses-missing
title: Sends content that does not exist
persona: {id: tester}
entry: {event: lead_captured}
steps:
  - id: hello
    send: {content: it-welcome}
  - id: ghost
    send: {content: no-such-content}
"""


def test_content_validate_accepts_the_shipped_catalogue_and_journeys() -> None:
    result = CliRunner().invoke(app, ["content", "validate"])
    assert result.exit_code == 0, result.output
    assert "catalogue ok" in result.output


def test_content_validate_names_a_journey_step_whose_content_is_missing(tmp_path: Path) -> None:
    (tmp_path / "j.yaml").write_text(JOURNEY)
    result = CliRunner().invoke(app, ["content", "validate", "--journeys", str(tmp_path)])
    assert result.exit_code == 1
    assert "j.yaml: step 'ghost' sends 'no-such-content'" in result.output
    assert "'hello'" not in result.output
