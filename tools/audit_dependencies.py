"""Audit the locked dependencies against PyPI's vulnerability data (`make audit`).

pip-audit asks PyPI's per-release JSON (`/pypi/NAME/VERSION/json`) about every pin of
the lock. A pin whose release data is not served (from this project's build machines
that endpoint answers 404) comes back skipped; it is then looked up in its project's
JSON (`/pypi/NAME/json`), whose vulnerability list is the latest release's, and so is
audited when it pins its project's latest release. What neither covers is named in one
warning line.

Exit status 1 when a vulnerability outside --ignore-vuln is found, or pip-audit fails
for a reason other than the network; 0 otherwise, also when PyPI cannot be reached at
all (a warning says the audit was skipped), so that CI does not fail for want of network.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Collection, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

PYPI = "https://pypi.org/pypi"
TIMEOUT_S = 15.0
# pip-audit reports a failed or refused request with a traceback naming one of these.
NETWORK_ERRORS = ("requests.exceptions.", "urllib3.exceptions.", "ServiceError")


class Unreachable(Exception):
    """PyPI could not be reached; the message says why."""


@dataclass(frozen=True)
class LatestRelease:
    version: str
    vulnerabilities: list[dict[str, Any]]


@dataclass(frozen=True)
class Finding:
    package: str
    version: str
    vuln_id: str
    fixed_in: tuple[str, ...]

    def __str__(self) -> str:
        fixed = ", ".join(self.fixed_in) or "no release yet"
        return f"{self.package} {self.version}: {self.vuln_id} (fixed in {fixed})"


@dataclass
class Outcome:
    pins: int
    findings: list[Finding] = field(default_factory=list)
    unaudited: dict[str, str] = field(default_factory=dict)  # name -> pinned version
    unaudited_because: str = ""
    skipped_because: str | None = None  # set when nothing could be audited


RunPipAudit = Callable[[Path, Sequence[str]], dict[str, Any]]
FetchLatest = Callable[[str], LatestRelease | None]


def read_pins(lock: Path) -> dict[str, str]:
    """Canonical name -> pinned version of every requirement line of a lock file."""
    pins: dict[str, str] = {}
    for line in lock.read_text().splitlines():
        if not line or line[0] in " #-":
            continue
        requirement = Requirement(line.rstrip("\\ "))
        (specifier,) = requirement.specifier
        pins[canonicalize_name(requirement.name)] = specifier.version
    return pins


def _ignored(ids: Iterable[str], ignore: Collection[str]) -> bool:
    return any(vuln_id in ignore for vuln_id in ids)


def run_pip_audit(lock: Path, ignore: Sequence[str]) -> dict[str, Any]:
    """pip-audit's JSON report on `lock`; Unreachable when its requests failed."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "report.json"
        command = [sys.executable, "-m", "pip_audit", "--requirement", str(lock)]
        command += ["--require-hashes", "--disable-pip", "--vulnerability-service", "pypi"]
        command += ["--format", "json", "--output", str(out), "--progress-spinner", "off"]
        command += [f"--ignore-vuln={vuln_id}" for vuln_id in ignore]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if out.exists() and out.stat().st_size:
            report: dict[str, Any] = json.loads(out.read_text())
            return report
    last_line = (done.stderr.strip().splitlines() or ["no output"])[-1]
    if any(marker in done.stderr for marker in NETWORK_ERRORS):
        raise Unreachable(f"pip-audit's requests failed: {last_line}")
    raise RuntimeError(f"pip-audit failed (exit {done.returncode}):\n{done.stderr}")


def fetch_latest(name: str) -> LatestRelease | None:
    """The project's latest release and its vulnerabilities; None if PyPI lacks it."""
    try:
        with urllib.request.urlopen(f"{PYPI}/{name}/json", timeout=TIMEOUT_S) as response:
            project = json.load(response)
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return None
        raise Unreachable(f"{PYPI}/{name}/json answered HTTP {error.code}") from error
    except (OSError, TimeoutError) as error:  # URLError is an OSError
        raise Unreachable(f"{PYPI} could not be reached: {error}") from error
    return LatestRelease(project["info"]["version"], project.get("vulnerabilities", []))


def audit(
    lock: Path,
    ignore: Collection[str],
    run: RunPipAudit = run_pip_audit,
    fetch: FetchLatest = fetch_latest,
) -> Outcome:
    pins = read_pins(lock)
    outcome = Outcome(pins=len(pins))
    try:
        fetch("pip")  # one cheap request first, so that an offline run stops at once
        report = run(lock, list(ignore))
    except Unreachable as error:
        outcome.skipped_because = str(error)
        return outcome
    outcome.pins = len(report["dependencies"])  # those whose markers hold here
    skipped: list[str] = []
    for dependency in report["dependencies"]:
        name: str = canonicalize_name(dependency["name"])
        if "skip_reason" in dependency:
            skipped.append(name)
        for vuln in dependency.get("vulns", []):
            if not _ignored([vuln["id"], *vuln.get("aliases", [])], ignore):
                fixed = tuple(vuln.get("fix_versions", []))
                outcome.findings.append(Finding(name, dependency["version"], vuln["id"], fixed))
    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            latest = dict(zip(skipped, pool.map(fetch, skipped), strict=True))
    except Unreachable as error:
        if len(skipped) == len(report["dependencies"]):
            outcome.skipped_because = str(error)
        outcome.unaudited = {name: pins.get(name, "?") for name in skipped}
        outcome.unaudited_because = str(error)
        return outcome
    for name, release in latest.items():
        pinned = pins.get(name)
        if release is None or pinned is None or Version(release.version) != Version(pinned):
            outcome.unaudited[name] = pinned or "?"
            outcome.unaudited_because = (
                "PyPI serves no vulnerability data for their pinned release here, "
                "and it is not their project's latest release"
            )
            continue
        for vuln in release.vulnerabilities:
            ids = [vuln["id"], *vuln.get("aliases", [])]
            if vuln.get("withdrawn") is None and not _ignored(ids, ignore):
                fixed = tuple(vuln.get("fixed_in") or [])
                outcome.findings.append(Finding(name, pinned, vuln["id"], fixed))
    return outcome


def report_lines(outcome: Outcome) -> list[str]:
    if outcome.skipped_because is not None:
        return [f"WARNING: dependency audit skipped, nothing audited: {outcome.skipped_because}"]
    lines = [f"VULNERABLE: {finding}" for finding in outcome.findings]
    if outcome.unaudited:
        names = ", ".join(f"{name} {version}" for name, version in outcome.unaudited.items())
        lines.append(
            f"WARNING: {len(outcome.unaudited)} of {outcome.pins} pinned packages not audited "
            f"({outcome.unaudited_because}): {names}"
        )
    audited = outcome.pins - len(outcome.unaudited)
    if outcome.findings:
        lines.append(
            f"dependency audit: {len(outcome.findings)} known vulnerabilities; pin a fixed "
            "version (make lock LOCK_FLAGS='--upgrade-package NAME') or accept one in the "
            "Makefile's AUDIT_IGNORE with its reason in docs/dependencies.md"
        )
    else:
        lines.append(f"dependency audit: no known vulnerabilities in {audited} audited pins")
    return lines


def main(
    argv: Sequence[str] | None = None,
    run: RunPipAudit = run_pip_audit,
    fetch: FetchLatest = fetch_latest,
) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("lock", type=Path)
    parser.add_argument("--ignore-vuln", action="append", default=[], metavar="ID")
    args = parser.parse_args(argv)
    outcome = audit(args.lock, set(args.ignore_vuln), run, fetch)
    for line in report_lines(outcome):
        print(line, file=sys.stderr if line.startswith(("WARNING", "VULNERABLE")) else sys.stdout)
    return 1 if outcome.findings else 0


if __name__ == "__main__":
    sys.exit(main())
