"""`make audit`'s verdicts, with pip-audit and PyPI replaced by canned answers."""

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from tools.audit_dependencies import (
    Finding,
    LatestRelease,
    Unreachable,
    audit,
    main,
    read_pins,
    report_lines,
)

LOCK = """\
jinja2==3.1.6 \\
    --hash=sha256:aa
    # via fastapi
rich==15.0.0 \\
    --hash=sha256:bb
"""
ADVISORY = {"id": "PYSEC-2018-97", "aliases": ["CVE-2018-6594"], "fixed_in": []}


@pytest.fixture
def lock(tmp_path: Path) -> Path:
    path = tmp_path / "lock.txt"
    path.write_text(LOCK)
    return path


def skipped(*names: str) -> dict[str, Any]:
    """pip-audit's report when PyPI's per-release data is not served."""
    return {"dependencies": [{"name": n, "skip_reason": "not found on PyPI"} for n in names]}


def run_returning(report: dict[str, Any]) -> Any:
    def run(lock: Path, ignore: Sequence[str]) -> dict[str, Any]:
        return report

    return run


def latest(releases: dict[str, LatestRelease]) -> Any:
    def fetch(name: str) -> LatestRelease | None:
        return releases.get(name, LatestRelease("1", [])) if name == "pip" else releases[name]

    return fetch


def test_read_pins_reads_names_and_versions_of_a_hashed_lock(lock: Path) -> None:
    assert read_pins(lock) == {"jinja2": "3.1.6", "rich": "15.0.0"}


def test_a_vulnerability_pip_audit_reports_fails_the_audit(lock: Path) -> None:
    report = {
        "dependencies": [
            {
                "name": "Jinja2",
                "version": "3.1.6",
                "vulns": [{"id": "GHSA-x", "fix_versions": ["3.1.7"]}],
            },
            {"name": "rich", "version": "15.0.0", "vulns": []},
        ]
    }
    outcome = audit(lock, set(), run=run_returning(report), fetch=latest({}))
    assert outcome.findings == [Finding("jinja2", "3.1.6", "GHSA-x", ("3.1.7",))]
    assert report_lines(outcome)[0] == "VULNERABLE: jinja2 3.1.6: GHSA-x (fixed in 3.1.7)"


def test_a_skipped_pin_is_audited_by_its_latest_releases_advisories(lock: Path) -> None:
    fetch = latest(
        {
            "jinja2": LatestRelease("3.1.6", [ADVISORY]),
            "rich": LatestRelease("16.0.0", [ADVISORY]),  # not the pinned release
        }
    )
    outcome = audit(lock, set(), run=run_returning(skipped("jinja2", "rich")), fetch=fetch)
    assert outcome.findings == [Finding("jinja2", "3.1.6", "PYSEC-2018-97", ())]
    assert outcome.unaudited == {"rich": "15.0.0"}
    assert "1 of 2 pinned packages not audited" in report_lines(outcome)[1]


def test_an_ignored_alias_or_a_withdrawn_advisory_passes(lock: Path) -> None:
    withdrawn = {**ADVISORY, "id": "GHSA-w", "aliases": [], "withdrawn": "2026-01-01"}
    fetch = latest({"jinja2": LatestRelease("3.1.6", [ADVISORY, withdrawn])})
    outcome = audit(lock, {"CVE-2018-6594"}, run=run_returning(skipped("jinja2")), fetch=fetch)
    assert outcome.findings == []
    assert report_lines(outcome) == ["dependency audit: no known vulnerabilities in 1 audited pins"]


def test_pypi_out_of_reach_skips_the_audit_with_a_warning_and_exit_0(
    lock: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def unreachable(name: str) -> LatestRelease | None:
        raise Unreachable("https://pypi.org/pypi could not be reached: no route")

    assert main([str(lock)], run=run_returning(skipped("jinja2")), fetch=unreachable) == 0
    assert capsys.readouterr().err.splitlines() == [
        "WARNING: dependency audit skipped, nothing audited: "
        "https://pypi.org/pypi could not be reached: no route"
    ]


def test_pip_audit_losing_the_network_skips_and_a_finding_exits_1(
    lock: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def cut_off(lock: Path, ignore: Sequence[str]) -> dict[str, Any]:
        raise Unreachable("pip-audit's requests failed: ReadTimeout")

    assert main([str(lock)], run=cut_off, fetch=latest({})) == 0
    assert "skipped, nothing audited: pip-audit's requests failed" in capsys.readouterr().err
    vulnerable = latest({"jinja2": LatestRelease("3.1.6", [ADVISORY])})
    assert main([str(lock)], run=run_returning(skipped("jinja2")), fetch=vulnerable) == 1
    assert "VULNERABLE: jinja2 3.1.6: PYSEC-2018-97" in capsys.readouterr().err
