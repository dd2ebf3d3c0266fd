"""Journey files: the seed journeys, the JSON Schema, and `trayecto journeys validate`."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator
from typer.testing import CliRunner

from services.orchestrator.journey import Journey, load_journey, load_journey_file
from services.orchestrator.journey.model import (
    STEP_KINDS,
    All,
    AnyOf,
    BranchStep,
    Compare,
    Condition,
    ExitStep,
    GotoStep,
    Not,
    SendStep,
    SplitStep,
    Step,
    UpdateStep,
    WaitForStep,
    WaitStep,
    WaitUntil,
)
from services.orchestrator.journey.store import checksum, normalised
from shared.cli.journeys_cmd import JSON_SCHEMA_DIALECT, journey_schema
from shared.cli.main import app
from shared.contract import ContentType, Stage

ROOT = Path(__file__).resolve().parents[2]
SEEDS = sorted((ROOT / "journeys").glob("*.yaml"))
SIX_STAGES = [s.value for s in Stage]


def seeds() -> dict[str, Journey]:
    return {path.stem: load_journey_file(path) for path in SEEDS}


def kind(step: Step) -> str:
    return next(k for k in STEP_KINDS if hasattr(step, k))


def compares(condition: Condition | None) -> Iterator[Compare]:
    if isinstance(condition, All):
        for c in condition.all:
            yield from compares(c)
    elif isinstance(condition, AnyOf):
        for c in condition.any:
            yield from compares(c)
    elif isinstance(condition, Not):
        yield from compares(condition.not_)
    elif isinstance(condition, Compare):
        yield condition


def step(journey: Journey, step_id: str) -> Step:
    return next(s for s in journey.steps if s.id == step_id)


# ---------------------------------------------------------------- seed journeys


def test_three_seed_journeys_one_per_persona() -> None:
    journeys = seeds()
    assert set(journeys) == {"smb-owner", "it-manager", "procurement-lead"}
    assert {j.persona.id for j in journeys.values()} == set(journeys)
    for name, journey in journeys.items():
        assert journey.journey == name, "the file is named after the journey id"
        assert journey.stages == SIX_STAGES
        assert journey.default_locale == "es"


@pytest.mark.parametrize("path", SEEDS, ids=lambda p: p.name)
def test_seed_journey_validates_and_is_fully_annotated(path: Path) -> None:
    journey = load_journey_file(path)
    for goal in journey.goals:
        assert None not in (goal.map.channel, goal.map.emotion, goal.map.title), goal.event
    for s in journey.steps:
        assert s.map.stage in journey.stages, f"{s.id}: every step sits in a stage of the map"
        if isinstance(s, SendStep):
            assert None not in (s.map.channel, s.map.emotion, s.map.title), s.id
    policies = journey.policies
    assert policies.frequency_cap is not None
    assert policies.quiet_hours is not None


def test_seeds_cover_the_18_control_points() -> None:
    """Every (persona, stage) cell has touchpoints on the map: goals, sends or awaited events."""
    cells: set[tuple[str, str | None]] = set()
    for journey in seeds().values():
        annotated: list[str | None] = [g.map.stage or g.stage for g in journey.goals]
        annotated += [s.map.stage for s in journey.steps if isinstance(s, SendStep | WaitForStep)]
        cells |= {(journey.persona.id, stage) for stage in annotated}
    personas = {"smb-owner", "it-manager", "procurement-lead"}
    assert cells == {(persona, stage) for persona in personas for stage in SIX_STAGES}


def test_seeds_use_every_step_type_and_option() -> None:
    steps = [s for j in seeds().values() for s in j.steps]
    assert {kind(s) for s in steps} == set(STEP_KINDS)
    assert any(isinstance(s, SendStep) and s.send.variants for s in steps)
    waits = [s.wait for s in steps if isinstance(s, WaitStep)]
    assert any(isinstance(w, WaitUntil) for w in waits)
    assert any(not isinstance(w, WaitUntil) for w in waits)
    assert any(isinstance(s, WaitForStep) and s.wait_for.when is not None for s in steps)
    subjects = {
        c.subject[0]
        for s in steps
        if isinstance(s, BranchStep)
        for case in s.branch
        for c in compares(case.when)
    }
    assert {"fact", "trait", "prop", "field"} <= subjects
    facts = {
        c.subject[1]
        for s in steps
        if isinstance(s, BranchStep)
        for case in s.branch
        for c in compares(case.when)
        if c.subject[0] == "fact"
    }
    assert {"video_max_percent", "score", "count.email_opened"} <= facts
    updates = [s.update for s in steps if isinstance(s, UpdateStep)]
    assert any(u.set for u in updates)
    assert any(u.score for u in updates)
    assert any(isinstance(s, SplitStep) for s in steps)
    assert any(isinstance(s, GotoStep) for s in steps)
    assert any(isinstance(s, ExitStep) for s in steps)


def test_seed_goals_move_to_the_right_stages() -> None:
    goals = {(g.event, g.stage) for j in seeds().values() for g in j.goals}
    assert ("form_submitted", "contact") in goals
    assert {("lead_captured", "contact"), ("lead_captured", "prospect")} <= goals
    assert ("purchase", "customer") in goals
    assert ("referral_made", "promoter") in goals
    modes = {
        (j.policies.frequency_cap.when_capped if j.policies.frequency_cap else None)
        for j in seeds().values()
    }
    assert modes == {"defer", "skip"}


def test_it_manager_has_the_video_decision_tree() -> None:
    journey = seeds()["it-manager"]
    video = step(journey, "send-video")
    assert isinstance(video, SendStep)
    assert video.send.type is ContentType.VIDEO
    assert video.next == "await-video"

    awaited = step(journey, "await-video")
    assert isinstance(awaited, WaitForStep)
    assert awaited.wait_for.event == "video_progress"
    assert [(c.subject, c.operator) for c in compares(awaited.wait_for.when)] == [
        (("prop", "percent"), ("gte", 100))
    ]
    assert awaited.wait_for.timeout.days >= 2
    assert awaited.next == "webinar-invite"  # watched to the end
    assert awaited.on_timeout == "video-depth"

    depth = step(journey, "video-depth")
    assert isinstance(depth, BranchStep)
    cases = [
        ([(c.subject, c.operator) for c in compares(case.when)], case.next) for case in depth.branch
    ]
    # Cases in order: the first that holds wins, so "gt 0" means part-way (below 100).
    assert cases == [
        ([(("fact", "video_max_percent"), ("gte", 100))], "webinar-invite"),
        ([(("fact", "video_max_percent"), ("gt", 0))], "pdf-summary"),
    ]
    assert depth.else_ == "video-reinvite"  # 0 % or no progress at all: not watched

    reinvite = step(journey, "video-reinvite")
    assert isinstance(reinvite, SendStep)
    assert reinvite.send.content != video.send.content, "a different message"
    summary = step(journey, "pdf-summary")
    assert isinstance(summary, SendStep)
    assert summary.send.type is ContentType.PDF, "another format"
    invite = step(journey, "webinar-invite")
    assert isinstance(invite, SendStep)
    assert invite.send.type is ContentType.WEBINAR_INVITE
    contents = {s.send.content for s in journey.steps if isinstance(s, SendStep)}
    assert {"it-video-intro", "it-video-reinvite", "it-pdf-summary", "it-webinar-invite"} <= (
        contents
    )


# ---------------------------------------------------------------- JSON Schema


def test_json_schema_is_valid_and_accepts_every_seed() -> None:
    schema = journey_schema()
    assert schema["$schema"] == JSON_SCHEMA_DIALECT
    assert schema["title"] == "Trayecto journey"
    Draft202012Validator.check_schema(schema)
    validator = Draft202012Validator(schema)
    for path in SEEDS:
        errors = list(validator.iter_errors(yaml.safe_load(path.read_text())))
        assert not errors, f"{path.name}: {[e.message for e in errors]}"


def test_json_schema_refuses_what_the_format_refuses() -> None:
    validator = Draft202012Validator(journey_schema())
    good = yaml.safe_load(SEEDS[0].read_text())
    for broken in (
        {**good, "colour": "blue"},
        {**good, "steps": [{"id": "a", "wait": "soon"}]},
        {**good, "steps": [{"id": "a", "send": {"content": "x"}, "exit": "done"}]},
        {k: v for k, v in good.items() if k != "entry"},
    ):
        assert not validator.is_valid(broken)


def test_schema_command_prints_the_schema(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["journeys", "schema"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == journey_schema()
    out = tmp_path / "journey.schema.json"
    result = CliRunner().invoke(app, ["journeys", "schema", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text()) == journey_schema()


# ---------------------------------------------------------------- stored form


@pytest.mark.parametrize("path", SEEDS, ids=lambda p: p.name)
def test_stored_definition_round_trips(path: Path) -> None:
    journey = load_journey_file(path)
    stored = json.loads(json.dumps(normalised(journey)))
    again = Journey.model_validate(stored)
    assert again == journey
    # Same JSON text: a true stays true (not 1), a default stays spelled out.
    assert json.dumps(normalised(again), sort_keys=True) == json.dumps(stored, sort_keys=True)
    assert checksum(again) == checksum(journey)


def test_checksum_ignores_layout_and_sees_changes() -> None:
    text = SEEDS[0].read_text()
    journey = load_journey(text)
    relaid = yaml.safe_dump(yaml.safe_load(text), sort_keys=True, default_flow_style=True)
    assert checksum(load_journey(relaid)) == checksum(journey)
    spelled = text.replace("steps:\n", "allow_backward: false\nsteps:\n", 1)
    assert checksum(load_journey(spelled)) == checksum(journey)
    assert "timeout: 5d" in text
    changed = text.replace("timeout: 5d", "timeout: 6d", 1)
    assert checksum(load_journey(changed)) != checksum(journey)


# ---------------------------------------------------------------- validate command


SEVERAL_PROBLEMS = """\
journey: broken
title: Several problems
persona:
  id: it-manager
entry:
  event: ad_clik
steps:
  - id: first
    wait: soon
  - id: second
    send:
      content: Not A Slug
  - id: third
    wait_for:
      event: purchase
    on_timeout: first
  - id: fourth
    colour: blue
"""

LINE = re.compile(r"^(?P<file>[^:]+)(:(?P<line>\d+))?: (?P<path>\S+): (?P<message>.+)$")


def validate(*paths: Path) -> tuple[int, list[tuple[str, int | None, str, str]], str]:
    """Exit code, (file, line, path, message) of every problem printed, and the output."""
    result = CliRunner().invoke(app, ["journeys", "validate", *map(str, paths)])
    problems = []
    for text in result.stdout.splitlines():
        if match := LINE.match(text):
            line = int(match["line"]) if match["line"] else None
            problems.append((match["file"], line, match["path"], match["message"]))
    return result.exit_code, problems, result.stdout


def test_validate_reports_every_problem_with_its_line_and_path(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(SEVERAL_PROBLEMS)
    code, problems, _ = validate(broken)
    assert code == 1
    assert {p[0] for p in problems} == {str(broken)}
    found = {(line, path) for _, line, path, _ in problems}
    assert {
        (6, "entry.event"),
        (9, "steps[0].wait"),
        (12, "steps[1].send.content"),
        (14, "steps[2].wait_for.timeout"),
        (17, "steps[3]"),
    } <= found
    messages = " | ".join(p[3] for p in problems)
    assert "unknown event 'ad_clik'" in messages
    assert "Field required" in messages
    assert "a step needs exactly one of send, wait" in messages


def test_validate_says_ok_for_good_files_and_exit_0() -> None:
    code, problems, output = validate(ROOT / "journeys")
    assert code == 0, output
    assert problems == []
    assert output.count(": ok (journey ") == len(SEEDS)


def test_validate_reports_good_and_broken_files_together(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(SEVERAL_PROBLEMS)
    code, problems, output = validate(SEEDS[0], broken)
    assert code == 1
    assert f"{SEEDS[0]}: ok" in output
    assert problems


@pytest.mark.parametrize(
    ("text", "line"),
    [
        pytest.param("journey: broken\ntitle: [unclosed\nsteps: []\n", 3, id="unclosed flow"),
        pytest.param("journey: broken\ntitle: x\n  persona: y\n", 3, id="bad indentation"),
        pytest.param("journey: broken\nsteps:\n  - id: a\n\tsend: {}\n", 4, id="tab"),
    ],
)
def test_validate_reports_a_yaml_syntax_error_with_its_file_and_line(
    tmp_path: Path, text: str, line: int
) -> None:
    broken = tmp_path / "syntax.yaml"
    broken.write_text(text)
    code, problems, output = validate(broken)
    assert code == 1
    assert f"{broken}:{line}: (file): not valid YAML" in output, output
    assert problems == [(str(broken), line, "(file)", problems[0][3])]


HEADER = """\
journey: checks
title: Cross checks
persona: {id: p}
entry: {event: ad_click}
"""


@pytest.mark.parametrize(
    ("body", "line", "path", "message"),
    [
        pytest.param(
            "steps:\n  - id: start\n    send: {content: hello}\n    next: nowhere\n",
            8,
            "steps[0].next",
            "no step with id 'nowhere'",
            id="dangling reference",
        ),
        pytest.param(
            "steps:\n  - id: start\n    goto: end\n  - id: island\n    send: {content: hello}\n"
            "  - id: end\n    exit: done\n",
            8,
            "steps[1]",
            "step 'island' can never be reached from 'start'",
            id="unreachable step",
        ),
        pytest.param(
            "steps:\n  - id: start\n    send: {content: hello}\n  - id: again\n    goto: start\n",
            6,
            "steps[0]",
            "step 'start' is on a loop with no wait or wait_for",
            id="loop without wait",
        ),
        pytest.param(
            "goals:\n  - event: purchase\n    stage: buyer\nsteps:\n  - id: start\n"
            "    send: {content: hello}\n",
            7,
            "goals[0].stage",
            "'buyer' is not one of the journey's stages",
            id="unknown goal stage",
        ),
        pytest.param(
            "steps:\n  - id: start\n    send: {content: hello}\n    map: {stage: lead}\n",
            8,
            "steps[0].map.stage",
            "'lead' is not one of the journey's stages",
            id="unknown map stage",
        ),
    ],
)
def test_validate_reports_cross_checks(
    tmp_path: Path, body: str, line: int, path: str, message: str
) -> None:
    file = tmp_path / "checks.yaml"
    file.write_text(HEADER + body)
    code, problems, output = validate(file)
    assert code == 1
    assert any(
        (p_line, p_path) == (line, path) and message in p_message
        for _, p_line, p_path, p_message in problems
    ), output


def test_validate_names_unreadable_and_duplicate_files(tmp_path: Path) -> None:
    copy = tmp_path / "copy.yaml"
    copy.write_text(SEEDS[0].read_text())
    missing = tmp_path / "missing.yaml"
    code, problems, output = validate(SEEDS[0], copy, missing)
    assert code == 1
    by_file = {p[0]: p[3] for p in problems}
    assert "cannot read the file" in by_file[str(missing)]
    assert f"is also defined in {SEEDS[0]}" in by_file[str(copy)], output


# ---------------------------------------------------------------- docs


def test_docs_example_is_a_valid_journey() -> None:
    docs = (ROOT / "docs" / "journeys.md").read_text()
    example = re.search(r"```yaml\n(journey:.*?)```", docs, re.DOTALL)
    assert example is not None
    journey = load_journey(example.group(1), "docs/journeys.md")
    assert {kind(s) for s in journey.steps} == set(STEP_KINDS)


def test_docs_describe_every_fact_and_step_kind() -> None:
    docs = (ROOT / "docs" / "journeys.md").read_text()
    for name in (
        "video_max_percent",
        "video_max_percent.<content>",
        "count.<touchpoint type>",
        "count.delivery_<status>",
        "score",
        "last_event_at",
        "negative_feedback",
    ):
        assert f"`{name}`" in docs, name
    for step_kind in STEP_KINDS:
        assert f"### `{step_kind}`" in docs, step_kind
    for persona in seeds():
        assert persona in docs
