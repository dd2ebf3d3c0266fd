"""Loading a journey file: YAML → model → cross-checks, every problem with its path and line."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .model import (
    BranchStep,
    ExitStep,
    GotoStep,
    Journey,
    SendStep,
    SplitStep,
    Step,
    UpdateStep,
    WaitForStep,
    WaitStep,
)


@dataclass(frozen=True, slots=True)
class Problem:
    path: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line else ""
        return f"{where}{self.path}: {self.message}"


class JourneyError(ValueError):
    """A journey file that cannot be used; ``problems`` lists every reason."""

    def __init__(self, source: str, problems: list[Problem]) -> None:
        self.source = source
        self.problems = problems
        listed = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"{source}: {len(problems)} problem(s)\n{listed}")


def load_journey_file(path: Path) -> Journey:
    return load_journey(path.read_text(encoding="utf-8"), str(path))


def load_journey(text: str, source: str = "<journey>") -> Journey:
    """Parse and check a journey; raises JourneyError listing every problem found."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise JourneyError(source, [Problem("(file)", f"not valid YAML: {exc}", line)]) from exc
    if not isinstance(data, dict):
        raise JourneyError(source, [Problem("(file)", "a journey file is a YAML mapping", 1)])
    lines = _line_index(node)
    try:
        journey = Journey.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_url=False):
            path = _data_path(data, error["loc"])
            problems.append(Problem(_format(path), error["msg"], _line_of(lines, path)))
        raise JourneyError(source, problems) from exc
    problems = [
        Problem(path, message, _line_of(lines, _parse_path(path)))
        for path, message in check_journey(journey)
    ]
    if problems:
        raise JourneyError(source, problems)
    return journey


# ---------------------------------------------------------------- cross-checks


def successors(step: Step) -> list[tuple[str, str]]:
    """(field, step id) of every step this one can lead to."""
    if isinstance(step, SendStep | WaitStep | UpdateStep):
        return [("next", step.next)] if step.next else []
    if isinstance(step, WaitForStep):
        found = [("on_timeout", step.on_timeout)]
        return [("next", step.next), *found] if step.next else found
    if isinstance(step, BranchStep):
        return [
            *((f"branch[{i}].next", c.next) for i, c in enumerate(step.branch)),
            ("else", step.else_),
        ]
    if isinstance(step, SplitStep):
        return [(f"split[{i}].next", arm.next) for i, arm in enumerate(step.split)]
    if isinstance(step, GotoStep):
        return [("goto", step.goto)]
    return []


def next_in_order(journey: Journey, index: int) -> str | None:
    """Where a step without ``next`` goes: the following step, or the end of the journey."""
    return journey.steps[index + 1].id if index + 1 < len(journey.steps) else None


def check_journey(journey: Journey) -> Iterator[tuple[str, str]]:
    """Problems the schema cannot see: references, stages, loops, unreachable steps."""
    ids: dict[str, int] = {}
    for i, step in enumerate(journey.steps):
        if step.id in ids:
            yield (
                f"steps[{i}].id",
                f"step id {step.id!r} is used twice (first at steps[{ids[step.id]}])",
            )
        ids.setdefault(step.id, i)
    stages = set(journey.stages)
    if len(stages) != len(journey.stages):
        yield "stages", "a stage is listed twice"
    for i, step in enumerate(journey.steps):
        for field, target in successors(step):
            if target not in ids:
                yield f"steps[{i}].{field}", f"no step with id {target!r}"
        if step.map.stage is not None and step.map.stage not in stages:
            yield f"steps[{i}].map.stage", f"{step.map.stage!r} is not one of the journey's stages"
    for i, goal in enumerate(journey.goals):
        if goal.stage not in stages:
            yield f"goals[{i}].stage", f"{goal.stage!r} is not one of the journey's stages"
    dangling = any(t not in ids for s in journey.steps for _, t in successors(s))
    if not dangling:  # reachability is meaningless with broken references
        yield from _reachability(journey, ids)


def _edges(journey: Journey) -> dict[str, list[str]]:
    edges: dict[str, list[str]] = {}
    for i, step in enumerate(journey.steps):
        targets = [t for _, t in successors(step)]
        implicit = isinstance(step, SendStep | WaitStep | UpdateStep) and step.next is None
        implicit = implicit or (isinstance(step, WaitForStep) and step.next is None)
        if implicit and (following := next_in_order(journey, i)) is not None:
            targets.append(following)
        edges[step.id] = targets
    return edges


def _reachability(journey: Journey, ids: dict[str, int]) -> Iterator[tuple[str, str]]:
    edges = _edges(journey)
    seen: set[str] = set()
    todo = [journey.first_step]
    while todo:
        current = todo.pop()
        if current not in seen:
            seen.add(current)
            todo.extend(edges.get(current, []))
    for step in journey.steps:
        if step.id not in seen:
            yield (
                f"steps[{ids[step.id]}]",
                f"step {step.id!r} can never be reached from {journey.first_step!r}",
            )
    # A loop must pass a wait or wait_for, or a prospect would cycle without end.
    pausing = {s.id for s in journey.steps if isinstance(s, WaitStep | WaitForStep | ExitStep)}
    instant = {k: [t for t in v if t not in pausing] for k, v in edges.items() if k not in pausing}
    for start in instant:
        stack, visited = [start], set()
        while stack:
            current = stack.pop()
            for target in instant.get(current, []):
                if target == start:
                    yield (
                        f"steps[{ids[start]}]",
                        f"step {start!r} is on a loop with no wait or wait_for: it would never end",
                    )
                    stack = []
                    break
                if target not in visited:
                    visited.add(target)
                    stack.append(target)


# ---------------------------------------------------------------- YAML line numbers


def _line_index(node: yaml.Node | None) -> dict[tuple[Any, ...], int]:
    index: dict[tuple[Any, ...], int] = {}

    def walk(current: yaml.Node, path: tuple[Any, ...]) -> None:
        index[path] = current.start_mark.line + 1
        if isinstance(current, yaml.MappingNode):
            for key, value in current.value:
                walk(value, (*path, key.value))
                index[(*path, key.value)] = key.start_mark.line + 1
        elif isinstance(current, yaml.SequenceNode):
            for i, item in enumerate(current.value):
                walk(item, (*path, i))

    if node is not None:
        walk(node, ())
    return index


def _data_path(data: Any, loc: tuple[int | str, ...]) -> tuple[Any, ...]:
    """The error's location in the file's data: union tags (not in the data) dropped."""
    aliases = {"else_": "else", "not_": "not", "in_": "in"}
    path: list[Any] = []
    current = data
    for i, part in enumerate(loc):
        key = aliases.get(part, part) if isinstance(part, str) else part
        following = loc[i + 1] if i + 1 < len(loc) else None
        following = aliases.get(following, following) if isinstance(following, str) else following
        if (
            key in _UNION_TAGS
            and isinstance(current, dict)
            and (key not in current or following in current)
        ):
            continue  # the union member's tag, not a key of the file
        found, child = _child(current, key)
        if found:
            current = child
            path.append(key)
        elif isinstance(current, dict) and isinstance(key, str):
            path.append(key)  # a missing field: name it
            current = None
    return tuple(path)


def _child(node: Any, key: int | str) -> tuple[bool, Any]:
    if isinstance(node, dict) and key in node:
        return True, node[key]
    if isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node):
        return True, node[key]
    return False, None


_UNION_TAGS = frozenset(
    {
        "send",
        "wait",
        "wait_for",
        "branch",
        "split",
        "update",
        "goto",
        "exit",
        "all",
        "any",
        "not",
        "compare",
    }
)


def _format(path: tuple[Any, ...]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(file)"


def _parse_path(path: str) -> tuple[Any, ...]:
    parts: list[Any] = []
    for piece in path.replace("]", "").split("."):
        name, *indices = piece.split("[")
        if name:
            parts.append(name)
        parts.extend(int(i) for i in indices)
    return tuple(parts)


def _line_of(lines: dict[tuple[Any, ...], int], path: tuple[Any, ...]) -> int | None:
    """The line of the deepest part of the path the file has."""
    for end in range(len(path), -1, -1):
        if path[:end] in lines:
            return lines[path[:end]]
    return None
