"""The locks pin every dependency pyproject.toml names, inside its range, with hashes.

When one of these fails, pyproject.toml changed without `make lock` (docs/dependencies.md).
"""

import importlib.metadata
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
DEV_LOCK = ROOT / "requirements" / "dev.txt"
RUNTIME_LOCK = ROOT / "requirements" / "runtime.txt"


@dataclass(frozen=True)
class Pin:
    version: Version
    hashes: int


def parse_lock(text: str) -> dict[NormalizedName, Pin]:
    """Name -> pin of each requirement in a `pip install --require-hashes` file."""
    pins: dict[NormalizedName, Pin] = {}
    for line in text.replace("\\\n", " ").splitlines():
        line = line.strip()
        if not line or line.startswith(("#", "-")):
            continue
        requirement_text, *hashes = line.split(" --hash=")
        requirement = Requirement(requirement_text.strip())
        specifiers = list(requirement.specifier)
        assert len(specifiers) == 1, f"not pinned to one version: {line}"
        assert specifiers[0].operator == "==", f"not an exact pin: {line}"
        pins[canonicalize_name(requirement.name)] = Pin(Version(specifiers[0].version), len(hashes))
    return pins


def disagreements(requirements: list[str], lock_text: str) -> list[str]:
    """How `lock_text` fails to pin `requirements` (pyproject.toml's strings)."""
    pins = parse_lock(lock_text)
    problems = []
    for text in requirements:
        requirement = Requirement(text)
        pin = pins.get(canonicalize_name(requirement.name))
        if pin is None:
            problems.append(f"{text}: not in the lock")
        elif not requirement.specifier.contains(pin.version, prereleases=True):
            problems.append(f"{text}: the lock pins {pin.version}")
        elif pin.hashes == 0:
            problems.append(f"{text}: pinned without a --hash")
    return problems


def extras_requirements(requirements: list[str]) -> list[str]:
    """What the requested extras (`uvicorn[standard]`) add, from the installed metadata."""
    added = []
    for text in requirements:
        requirement = Requirement(text)
        if not requirement.extras:
            continue
        for dependency_text in importlib.metadata.requires(requirement.name) or []:
            marker = Requirement(dependency_text).marker
            for extra in requirement.extras:
                if marker is not None and marker.evaluate({"extra": extra}):
                    added.append(dependency_text.split(";")[0])
                    break
    return added


def _project() -> dict[str, Any]:
    project: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return project


RUNTIME = _project()["dependencies"]
DEV = _project()["optional-dependencies"]["dev"]


@pytest.mark.parametrize(
    ("lock", "requirements"),
    [(RUNTIME_LOCK, RUNTIME), (DEV_LOCK, RUNTIME + DEV)],
    ids=["runtime", "dev"],
)
def test_lock_pins_every_pyproject_dependency(lock: Path, requirements: list[str]) -> None:
    problems = disagreements(requirements, lock.read_text())
    assert problems == [], f"{lock.name} disagrees with pyproject.toml, run `make lock`: {problems}"


def test_lock_pins_what_the_requested_extras_add() -> None:
    added = extras_requirements(RUNTIME + DEV)
    assert "aiokafka" in {Requirement(text).name for text in added}  # faststream[kafka]
    problems = disagreements(added, DEV_LOCK.read_text())
    assert problems == [], f"run `make lock`: {problems}"


def test_runtime_lock_pins_the_dev_lock_versions_and_no_dev_tool() -> None:
    runtime, dev = parse_lock(RUNTIME_LOCK.read_text()), parse_lock(DEV_LOCK.read_text())
    assert {name: dev.get(name) for name in runtime} == runtime
    assert all(pin.hashes > 0 for pin in [*runtime.values(), *dev.values()])
    assert not {"pytest", "mypy", "pip-audit", "uv"} & set(runtime)


def test_disagreements_names_a_missing_an_out_of_range_and_an_unhashed_pin() -> None:
    lock = "jinja2==3.1.6 \\\n    --hash=sha256:aa \\\n    --hash=sha256:bb\nrich==13.0.0\n"
    assert parse_lock(lock) == {"jinja2": Pin(Version("3.1.6"), 2), "rich": Pin(Version("13"), 0)}
    assert disagreements(["Jinja2>=3.1.6", "rich>=13"], lock) == [
        "rich>=13: pinned without a --hash"
    ]
    assert disagreements(["jinja2>=3.2", "typer"], lock) == [
        "jinja2>=3.2: the lock pins 3.1.6",
        "typer: not in the lock",
    ]
