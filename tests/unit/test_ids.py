"""Ids of a :class:`shared.ids.Namespace` are exactly ``uuid.uuid5`` ids: stored rows and
records already hold ids made by ``uuid5``."""

from __future__ import annotations

from uuid import UUID, uuid5

from hypothesis import given
from hypothesis import strategies as st

from shared.ids import Namespace


@given(st.uuids(), st.text())
def test_ids_are_the_uuid5_of_the_name(namespace: UUID, name: str) -> None:
    expected = uuid5(namespace, name)
    made = Namespace(namespace).id(name)
    assert made == expected
    assert str(made) == str(expected)
    assert (made.version, made.variant, made.is_safe) == (5, expected.variant, expected.is_safe)


@given(st.uuids(), st.text(), st.text(), st.text())
def test_prefixes_are_part_of_the_name(namespace: UUID, first: str, second: str, name: str) -> None:
    ids = Namespace(namespace)
    assert ids.prefixed(first).id(name) == uuid5(namespace, first + name)
    nested = ids.prefixed(first).prefixed(second)
    assert nested.id(name) == uuid5(namespace, first + second + name)


def test_an_id_leaves_the_namespace_as_it_was() -> None:
    namespace = UUID("6f1d0c3e-1c51-4b8e-9a3f-7472617965a1")
    ids = Namespace(namespace)
    prefixed = ids.prefixed("a:")
    assert [ids.id("x"), prefixed.id("x"), ids.id("x"), prefixed.id("x")] == [
        uuid5(namespace, "x"),
        uuid5(namespace, "a:x"),
        uuid5(namespace, "x"),
        uuid5(namespace, "a:x"),
    ]
