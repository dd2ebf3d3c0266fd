"""Values every consumer can store: what JSON in PostgreSQL (and JSON itself) can hold.

PostgreSQL ``text`` and ``jsonb`` cannot hold the NUL character (``\\u0000``), and
``jsonb`` refuses ``NaN`` and ``Infinity`` (JSON has no such numbers; Python's parser
reads ``1e400`` as infinity). A message carrying one would fail its consumer's
transaction on every redelivery, so the contract refuses it up front: the record goes
to the dead-letter topic with the reason, and the partition keeps flowing.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

from pydantic import BaseModel

T = TypeVar("T")
_isfinite = math.isfinite
_LEAVES = frozenset({int, bool, type(None), UUID, datetime})


def storable(value: object) -> bool:
    """True when no string (key or value) in ``value`` holds NUL and every float is finite.

    Walks dicts, lists and models without recursion. It runs on every decode, hence the
    exact-type checks first and strings and integers checked without a trip through
    the stack.
    """
    stack: list[Any] = [value]
    pop, push = stack.pop, stack.append
    while stack:
        item = pop()
        kind = type(item)
        if kind is dict:
            for key, child in item.items():
                if type(key) is str and "\x00" in key:
                    return False
                child_kind = type(child)
                if child_kind is str:
                    if "\x00" in child:
                        return False
                elif child_kind not in _LEAVES:
                    push(child)
        elif kind is list:
            for child in item:
                child_kind = type(child)
                if child_kind is str:
                    if "\x00" in child:
                        return False
                elif child_kind not in _LEAVES:
                    push(child)
        elif kind is str:
            if "\x00" in item:
                return False
        elif kind in _LEAVES:
            continue
        elif kind is float:
            if not _isfinite(item):
                return False
        elif isinstance(item, str):
            if "\x00" in item:
                return False
        elif isinstance(item, float):
            if not _isfinite(item):
                return False
        elif isinstance(item, BaseModel):
            push(item.__dict__)
        elif isinstance(item, dict):
            push(dict(item))
        elif isinstance(item, list | tuple):
            push(list(item))
    return True


def unstorable(value: object) -> str | None:
    """What in ``value`` cannot be stored, and where (``note[2]: ...``); None if nothing."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        path, item = stack.pop()
        where = f"{path}: " if path else ""
        if isinstance(item, str) and "\x00" in item:
            return f"{where}contains a NUL character (\\u0000), which cannot be stored"
        if isinstance(item, float) and not _isfinite(item):
            return f"{where}{item} is not a JSON number (NaN, Infinity or out of range)"
        if isinstance(item, BaseModel):
            item = item.__dict__
        if isinstance(item, dict):
            for key, child in reversed(item.items()):
                inner = f"{path}.{key}" if path else str(key)
                if isinstance(key, str) and "\x00" in key:
                    return f"{inner!r}: a key contains a NUL character (\\u0000)"
                stack.append((inner, child))
        elif isinstance(item, list | tuple):
            stack += reversed([(f"{path}[{i}]", child) for i, child in enumerate(item)])
    return None


def check_storable(value: T) -> T:
    """A pydantic after-validator: ``value`` unchanged, or ValueError naming the bad part."""
    if not storable(value):
        raise ValueError(unstorable(value) or "a value cannot be stored")
    return value
