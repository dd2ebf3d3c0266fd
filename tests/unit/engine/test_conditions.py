"""Every operator of the condition language, and all / any / not, on present, missing and
null values: a missing or null value fails every operator except ``ne``, ``not_in`` and
``exists: false``."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from services.orchestrator.journey.conditions import Facts, compile_condition
from services.orchestrator.journey.model import OPERATORS, Condition

CONDITION: TypeAdapter[Condition] = TypeAdapter(Condition)
MISSING = object()
"""The subject is not there at all."""


def holds(condition: dict[str, Any], value: Any, subject: str = "trait") -> bool:
    """Whether ``condition`` holds when its ``subject`` named ``x`` has ``value``."""
    data = {} if value is MISSING else {"x": value}
    facts = Facts(**{{"trait": "traits", "fact": "facts", "prop": "properties"}[subject]: data})
    return compile_condition(CONDITION.validate_python({subject: "x", **condition}))(facts)


# (operator and operand, value, whether it holds)
CASES: list[tuple[dict[str, Any], Any, bool]] = [
    # eq: exact equality, no conversion
    ({"eq": "cto"}, "cto", True),
    ({"eq": "cto"}, "CTO", False),
    ({"eq": 30}, 30, True),
    ({"eq": 30}, 30.0, True),
    ({"eq": 30}, "30", False),
    ({"eq": False}, False, True),
    ({"eq": 1}, True, False),  # a boolean is not a number, though Python says True == 1
    ({"eq": True}, 1, False),
    ({"eq": 0}, False, False),
    ({"eq": "cto"}, MISSING, False),
    ({"eq": "cto"}, None, False),
    # ne: the opposite of eq, so a missing or null value is "not equal"
    ({"ne": "cto"}, "cfo", True),
    ({"ne": "cto"}, "cto", False),
    ({"ne": "cto"}, MISSING, True),
    ({"ne": "cto"}, None, True),
    ({"ne": 1}, True, True),
    # gt / gte / lt / lte: numbers, or strings holding one
    ({"gt": 50}, 51, True),
    ({"gt": 50}, 50, False),
    ({"gt": 50}, "75", True),
    ({"gte": 50}, 50, True),
    ({"gte": 50}, 49.9, False),
    ({"gte": 50}, "50.0", True),
    ({"lt": 50}, 49, True),
    ({"lt": 50}, 50, False),
    ({"lt": 50}, -1, True),
    ({"lte": 50}, 50, True),
    ({"lte": 50}, 50.5, False),
    ({"gte": 0}, "lots", False),
    ({"gte": 0}, True, False),  # a boolean is not a number
    ({"gte": 0}, [1], False),
    ({"gt": 0}, MISSING, False),
    ({"gte": 0}, MISSING, False),
    ({"lt": 100}, MISSING, False),
    ({"lte": 100}, MISSING, False),
    ({"gt": 0}, None, False),
    ({"gte": 0}, None, False),
    ({"lt": 100}, None, False),
    ({"lte": 100}, None, False),
    # in / not_in: membership in the list
    ({"in": [25, 50, 75]}, 50, True),
    ({"in": [25, 50, 75]}, 30, False),
    ({"in": [0, 1]}, True, False),
    ({"not_in": [0, 1]}, False, True),
    ({"in": ["es", "en"]}, "es", True),
    ({"in": ["es", "en"]}, MISSING, False),
    ({"in": ["es", "en"]}, None, False),
    ({"not_in": ["es", "en"]}, "fr", True),
    ({"not_in": ["es", "en"]}, "en", False),
    ({"not_in": ["es", "en"]}, MISSING, True),
    ({"not_in": ["es", "en"]}, None, True),
    # exists: present and not null
    ({"exists": True}, "x", True),
    ({"exists": True}, 0, True),
    ({"exists": True}, False, True),
    ({"exists": True}, "", True),
    ({"exists": True}, MISSING, False),
    ({"exists": True}, None, False),
    ({"exists": False}, "x", False),
    ({"exists": False}, 0, False),
    ({"exists": False}, MISSING, True),
    ({"exists": False}, None, True),
    # contains: a substring of a string, or an item of a list
    ({"contains": "ops"}, "devops lead", True),
    ({"contains": "ops"}, "sales", False),
    ({"contains": "ops"}, ["ops", "it"], True),
    ({"contains": "ops"}, ["devops"], False),
    ({"contains": "1"}, 1, False),
    ({"contains": "ops"}, MISSING, False),
    ({"contains": "ops"}, None, False),
    # startswith: strings only
    ({"startswith": "it-"}, "it-spring", True),
    ({"startswith": "it-"}, "smb-it-", False),
    ({"startswith": "1"}, 12, False),
    ({"startswith": "it-"}, ["it-a"], False),
    ({"startswith": "it-"}, MISSING, False),
    ({"startswith": "it-"}, None, False),
]


def _id(case: tuple[dict[str, Any], Any, bool]) -> str:
    operator, value, result = case
    shown = "missing" if value is MISSING else repr(value)
    return f"{operator}-{shown}-{result}"


@pytest.mark.parametrize(("operator", "value", "expected"), CASES, ids=[_id(c) for c in CASES])
@pytest.mark.parametrize("subject", ["trait", "fact", "prop"])
def test_operator(operator: dict[str, Any], value: Any, expected: bool, subject: str) -> None:
    assert holds(operator, value, subject) is expected


def test_the_cases_cover_every_operator_on_present_missing_and_null_values() -> None:
    names = {"in" if name == "in_" else name for name in OPERATORS}
    for name in names:
        values = [value for operator, value, _ in CASES if name in operator]
        assert any(v is MISSING for v in values), f"{name} on a missing value"
        assert any(v is None for v in values), f"{name} on a null value"
        assert any(v is not MISSING and v is not None for v in values), f"{name} on a value"


OPERANDS: dict[str, Any] = {
    "eq": "a",
    "ne": "a",
    "gt": -1,
    "gte": -1,
    "lt": 1,
    "lte": 1,
    "in": ["a"],
    "not_in": ["a"],
    "exists": True,
    "contains": "a",
    "startswith": "a",
}


@pytest.mark.parametrize("value", [MISSING, None], ids=["missing", "null"])
def test_a_missing_or_null_value_fails_all_but_ne_not_in_and_exists_false(value: Any) -> None:
    assert set(OPERANDS) == {"in" if name == "in_" else name for name in OPERATORS}
    passing = {name for name, operand in OPERANDS.items() if holds({name: operand}, value)}
    assert passing == {"ne", "not_in"}
    assert holds({"exists": False}, value)


# ---------------------------------------------------------------- paths and fields


def test_dotted_paths_read_nested_values_and_a_flat_key_first() -> None:
    condition = CONDITION.validate_python({"prop": "utm.term", "eq": "crm"})
    predicate = compile_condition(condition)
    assert predicate(Facts(properties={"utm": {"term": "crm"}}))
    assert predicate(Facts(properties={"utm.term": "crm", "utm": {"term": "erp"}}))
    assert not predicate(Facts(properties={"utm": {"source": "crm"}}))
    assert not predicate(Facts(properties={"utm": "crm"}))  # not a mapping: missing
    assert not predicate(Facts())


def test_field_reads_the_events_own_fields() -> None:
    condition = CONDITION.validate_python({"field": "campaign.name", "startswith": "it-"})
    predicate = compile_condition(condition)
    assert predicate(Facts(fields={"campaign": {"name": "it-spring"}}))
    assert not predicate(Facts(fields={"campaign": {"name": None}}))
    assert not predicate(Facts(fields={}))


# ---------------------------------------------------------------- all, any, not

YES = {"trait": "x", "exists": True}
NO = {"trait": "x", "exists": False}
ABSENT = {"trait": "nowhere", "gte": 1}


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ({"all": [YES]}, True),
        ({"all": [YES, YES]}, True),
        ({"all": [YES, NO]}, False),
        ({"all": [NO, YES]}, False),
        ({"all": [YES, ABSENT]}, False),
        ({"any": [NO]}, False),
        ({"any": [NO, YES]}, True),
        ({"any": [YES, NO]}, True),
        ({"any": [NO, ABSENT]}, False),
        ({"not": YES}, False),
        ({"not": NO}, True),
        ({"not": ABSENT}, True),  # a missing value fails gte, so "not gte" holds
        ({"not": {"not": YES}}, True),
        ({"all": [YES, {"any": [NO, {"not": ABSENT}]}]}, True),
        ({"any": [{"all": [YES, NO]}, {"not": {"any": [YES]}}]}, False),
    ],
)
def test_combinations(condition: dict[str, Any], expected: bool) -> None:
    predicate = compile_condition(CONDITION.validate_python(condition))
    assert predicate(Facts(traits={"x": "here"})) is expected


def test_no_condition_always_holds() -> None:
    assert compile_condition(None)(Facts())


@pytest.mark.parametrize(
    "condition",
    [
        {"trait": "x"},  # no operator
        {"trait": "x", "eq": None},  # a null operand is no operator
        {"trait": "x", "eq": 1, "ne": 2},  # two operators
        {"eq": 1},  # no subject
        {"trait": "x", "fact": "y", "eq": 1},  # two subjects
        {"trait": "x", "gte": "many"},  # not a number
        {"trait": "x", "in": "es"},  # not a list
        {"trait": "x", "like": "a%"},  # not an operator
        {"all": []},
        {"any": []},
    ],
)
def test_malformed_conditions_are_refused_when_loaded(condition: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        CONDITION.validate_python(condition)
