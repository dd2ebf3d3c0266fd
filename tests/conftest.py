"""Markers by folder: tests/unit → unit, tests/integration → integration, tests/e2e → e2e."""

from pathlib import Path

import pytest

_TIERS = ("unit", "integration", "e2e")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for tier in Path(str(item.fspath)).parts:
            if tier in _TIERS:
                item.add_marker(getattr(pytest.mark, tier))
                break
