"""Markers by folder (tests/unit → unit, tests/integration → integration, tests/e2e → e2e),
and the headless Chromium the page tests drive."""

import shutil
from pathlib import Path

import pytest

from shared.settings import Settings
from shared.stack import StackError, debian

CHROMIUM = Path("/usr/bin/chromium")

_TIERS = ("unit", "integration", "e2e")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for tier in Path(str(item.fspath)).parts:
            if tier in _TIERS:
                item.add_marker(getattr(pytest.mark, tier))
                break


@pytest.fixture(scope="session")
def chromium() -> Path:
    """The system Chromium; installed from Debian packages when missing and running as root."""
    if not CHROMIUM.is_file():
        log = Settings().stack_dir / "apt.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        try:
            debian.install("chromium", log, "Chromium (the page tests' headless browser)")
        except StackError as exc:
            pytest.fail(str(exc))
    if not CHROMIUM.is_file():
        pytest.fail(f"Chromium was installed but {CHROMIUM} is missing: {shutil.which('chromium')}")
    return CHROMIUM
