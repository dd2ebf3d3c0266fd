"""Conditions compiled once into plain predicates: declarative data, never ``eval``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .model import All, AnyOf, Compare, Condition, Not

_MISSING = object()


@dataclass(frozen=True, slots=True)
class Facts:
    """What a condition can look at: the prospect and, when there is one, the event."""

    traits: Mapping[str, Any] = field(default_factory=dict)
    facts: Mapping[str, Any] = field(default_factory=dict)
    properties: Mapping[str, Any] = field(default_factory=dict)
    fields: Mapping[str, Any] = field(default_factory=dict)


Predicate = Callable[[Facts], bool]


def _dig(data: Mapping[str, Any], path: str) -> Any:
    """``a.b.c`` inside nested mappings (a flat key ``a.b.c`` first); missing gives _MISSING."""
    if path in data:
        return data[path]
    value: Any = data
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _same(value: Any, expected: Any) -> bool:
    """Equality without Python's ``True == 1``: a boolean equals only a boolean."""
    return isinstance(value, bool) is isinstance(expected, bool) and value == expected


def _compare(op: str, expected: Any) -> Callable[[Any], bool]:
    if op == "exists":
        return lambda v: (v is not _MISSING and v is not None) is expected
    if op == "eq":
        return lambda v: v is not _MISSING and _same(v, expected)
    if op == "ne":
        return lambda v: v is _MISSING or not _same(v, expected)
    if op in {"gt", "gte", "lt", "lte"}:
        bound = float(expected)
        test: Callable[[float], bool] = {
            "gt": lambda n: n > bound,
            "gte": lambda n: n >= bound,
            "lt": lambda n: n < bound,
            "lte": lambda n: n <= bound,
        }[op]
        return lambda v: (n := _number(v)) is not None and test(n)
    if op == "in":
        allowed = list(expected)
        return lambda v: v is not _MISSING and any(_same(v, a) for a in allowed)
    if op == "not_in":
        denied = list(expected)
        return lambda v: v is _MISSING or not any(_same(v, d) for d in denied)
    if op == "contains":
        return lambda v: (
            (isinstance(v, str) and expected in v) or (isinstance(v, list) and expected in v)
        )
    if op == "startswith":
        return lambda v: isinstance(v, str) and v.startswith(expected)
    raise ValueError(f"unknown operator {op!r}")


def compile_condition(condition: Condition | None) -> Predicate:
    """A predicate for the condition; no condition is always true."""
    if condition is None:
        return lambda _: True
    if isinstance(condition, All):
        parts = [compile_condition(c) for c in condition.all]
        return lambda f: all(p(f) for p in parts)
    if isinstance(condition, AnyOf):
        parts = [compile_condition(c) for c in condition.any]
        return lambda f: any(p(f) for p in parts)
    if isinstance(condition, Not):
        inner = compile_condition(condition.not_)
        return lambda f: not inner(f)
    assert isinstance(condition, Compare)
    kind, path = condition.subject
    test = _compare(*condition.operator)
    source: Callable[[Facts], Mapping[str, Any]] = {
        "trait": lambda f: f.traits,
        "fact": lambda f: f.facts,
        "prop": lambda f: f.properties,
        "field": lambda f: f.fields,
    }[kind]
    return lambda f: test(_dig(source(f), path))
