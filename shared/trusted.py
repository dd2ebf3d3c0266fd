"""Models built from values already held typed, without validating them again.

The engine's ``decide`` makes a few messages per input and copies a run at every step;
ingest makes a touchpoint of every call. pydantic's ``model_construct`` and
``model_copy`` spend longer on generic bookkeeping (aliases, defaults, private
attributes, copies of the copy) than validating would, and longer than the engine on
deciding. These do the same for plain frozen models (no aliases, private attributes,
extra fields or post-init), with values taken from models already validated or computed
by the caller; the callers' tests check that every model made this way validates back
to itself.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)
_set = object.__setattr__


def construct(cls: type[M], values: dict[str, Any], fields_set: frozenset[str] | None = None) -> M:
    """``cls`` holding ``values``: every field of ``cls``, in its order (serialisation
    follows it), each of its type. ``fields_set`` is what ``model_fields_set`` says was
    given (all of them unless told)."""
    made = cls.__new__(cls)
    _set(made, "__dict__", values)
    _set(made, "__pydantic_fields_set__", set(values if fields_set is None else fields_set))
    _set(made, "__pydantic_extra__", None)
    _set(made, "__pydantic_private__", None)
    return made


def replace(model: M, changes: dict[str, Any]) -> M:
    """``model.model_copy(update=changes)``: the values of ``changes`` are of their types."""
    cls = type(model)
    made = cls.__new__(cls)
    _set(made, "__dict__", {**model.__dict__, **changes})
    _set(made, "__pydantic_fields_set__", model.__pydantic_fields_set__ | changes.keys())
    _set(made, "__pydantic_extra__", None)
    _set(made, "__pydantic_private__", None)
    return made
