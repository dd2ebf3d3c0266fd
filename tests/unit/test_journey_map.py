from __future__ import annotations

import itertools
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from services.metrics.map.labels import TITLE_CHARS
from services.metrics.map.layout import CARD_WIDTH, layout
from services.metrics.map.model import (
    Box,
    CardNumbers,
    MapLayout,
    MapNumbers,
    StageNumbers,
    VariantNumbers,
)
from services.metrics.map.page import render_html
from services.metrics.map.svg import render_svg
from services.orchestrator.journey import Journey, load_journey, load_journey_file
from shared.cli.main import app

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted((ROOT / "journeys").glob("*.yaml"))
SVG = "{http://www.w3.org/2000/svg}"


def generated_journey() -> Journey:
    """6 stages of 8 steps of every kind, long titles, branches, splits, a loop back."""
    stages = [f"stage-{k}" for k in range(6)]
    steps: list[dict[str, Any]] = []
    for k, stage in enumerate(stages):
        s = [f"s{k}-{i}" for i in range(8)]
        after = f"s{k + 1}-0" if k < 5 else "s0-1"
        notes = {"stage": stage, "channel": "email", "emotion": "positive"}
        long = "A very long touchpoint title that will not fit on three lines of a card at all"
        steps += [
            {"id": s[0], "send": {"content": f"c-{k}"}, "map": {**notes, "title": long}},
            {"id": s[1], "wait_for": {"event": "page_view", "timeout": "2d"}, "next": s[2],
             "on_timeout": s[7], "map": {"stage": stage}},
            {"id": s[2], "branch": [
                {"when": {"trait": "plan", "eq": "pro"}, "next": s[3]},
                {"when": {"any": [{"fact": "score", "gte": 10}, {"prop": "x", "exists": True}]},
                 "next": s[4]}], "else": s[5], "map": {"stage": stage, "title": "Which plan"}},
            {"id": s[3], "split": [{"variant": "a", "weight": 70, "next": s[4]},
                                   {"variant": "b", "weight": 30, "next": s[5]}],
             "map": {"stage": stage}},
            {"id": s[4], "send": {"content": f"v-{k}", "variants": [
                {"name": "short", "content": f"v-{k}-short"},
                {"name": "long", "content": f"v-{k}-long"}]}, "next": s[5],
             "map": {**notes, "channel": "video"}},
            {"id": s[5], "update": {"set": {"seen": k, "gone": None}, "score": 5}},
            {"id": s[6], "wait": "1d", "next": after} if k % 2 == 0 or k == 5
            else {"id": s[6], "goto": after},
            {"id": s[7], "exit": f"left-{k}", "map": {"emotion": "negative"}},
        ]  # fmt: skip
    return Journey.model_validate(
        {
            "journey": "generated",
            "title": "Generated",
            "persona": {"id": "anyone"},
            "entry": {"event": "ad_click", "map": {"title": "An ad"}},
            "stages": stages,
            "goals": [
                {"event": "purchase", "stage": stage, "map": {"title": f"Goal {stage} " * 6}}
                for stage in stages
            ],
            "steps": steps,
        }
    )


def big_numbers(journey_map: MapLayout) -> MapNumbers:
    stage = StageNumbers(9_876_543, 123_456, 7_654_321, 98_765, 93_784.0)
    stages = {column.stage: stage for column in journey_map.columns}
    cards = {
        card.id: CardNumbers(
            reached=1_234_567,
            delivered=1_200_000,
            engaged={"opened": 654_321, "clicked": 54_321, "watched 75%": 4_321, "downloaded": 321},
            emotions={"positive": 3, "negative": 7},
            actual_emotion="negative",
            pain="70% of runs end here (876,543 of 1,234,567) after a very long wait",
            truth="62% of those who engaged reached a later stage, 21% of the rest",
            variants={
                "short": VariantNumbers(600_000, 60_000, 0.1),
                "long": VariantNumbers(600_000, 90_000, 0.15),
            },
        )
        for card in journey_map.cards
    }
    return MapNumbers(stages, cards)


def assert_tidy(journey_map: MapLayout) -> None:
    """No two cards overlap, each card is in its column, no edge runs through a card."""
    columns = {c.stage: c.box for c in journey_map.columns}
    for a, b in itertools.combinations(journey_map.cards, 2):
        assert not a.box.intersects(b.box), (a.id, b.id)
    for card in journey_map.cards:
        outer, box = columns[card.stage], card.box
        assert outer.x <= box.x <= box.x + box.width <= outer.x + outer.width, card.id
        assert outer.y <= box.y <= box.y + box.height <= outer.y + outer.height, card.id
        assert box.x + box.width <= journey_map.width
        assert box.y + box.height <= journey_map.height
    for edge in journey_map.edges:
        assert len(edge.points) >= 2
        for (x0, y0), (x1, y1) in itertools.pairwise(edge.points):
            assert x0 == x1 or y0 == y1, edge  # orthogonal
            segment = Box(min(x0, x1), min(y0, y1), abs(x1 - x0) or 0.01, abs(y1 - y0) or 0.01)
            for card in journey_map.cards:
                c = card.box
                inside = Box(c.x + 1, c.y + 1, c.width - 2, c.height - 2)
                assert not segment.intersects(inside), (edge.source, edge.target, card.id)


def texts(element: ET.Element) -> list[str]:
    return [t.text or "" for t in element.iter(f"{SVG}text")]


def card_groups(root: ET.Element) -> list[ET.Element]:
    return [g for g in root.iter(f"{SVG}g") if g.get("class", "").split()[:1] == ["card"]]


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_every_shipped_journey_lays_out_and_renders(path: Path) -> None:
    journey = load_journey_file(path)
    journey_map = layout(journey, 4)
    assert_tidy(journey_map)
    assert [c.stage for c in journey_map.columns] == journey.stages
    root = ET.fromstring(render_svg(journey_map))
    assert root.tag == f"{SVG}svg"
    assert root.get("viewBox")
    assert root.get("role") == "img"
    assert root[0].tag == f"{SVG}title"
    assert root[1].tag == f"{SVG}desc"
    groups = card_groups(root)
    assert len(groups) == len(journey_map.cards) == len(journey.steps) + len(journey.goals) + 1
    everything = " ".join(texts(root))
    for stage in journey.stages:
        assert stage in everything
    for group, card in zip(groups, journey_map.cards, strict=True):
        sentence = group.findtext(f"{SVG}title") or ""
        assert card.title in sentence
        if len(card.title) <= TITLE_CHARS * 2:  # never cut: the drawn lines are the title
            assert " ".join(card.title.split()) in " ".join(texts(group))
    steps = [c.id for c in journey_map.cards if c.kind not in ("entry", "goal")]
    assert sorted(steps) == sorted(s.id for s in journey.steps)


def test_a_crowded_journey_stays_tidy_with_and_without_numbers() -> None:
    journey = generated_journey()
    plain = layout(journey)
    assert_tidy(plain)
    assert {len([c for c in plain.cards if c.stage == s]) for s in journey.stages} == {9, 10}
    assert all(column.box.width > 2 * CARD_WIDTH for column in plain.columns), "two lanes"
    numbers = big_numbers(plain)
    measured = layout(journey, 2, numbers)
    assert_tidy(measured)
    for before, after in zip(plain.cards, measured.cards, strict=True):
        assert after.box.height > before.box.height
    long = next(c for c in plain.cards if c.id == "s0-0")
    root = ET.fromstring(render_svg(plain))
    drawn = texts(card_groups(root)[[c.id for c in plain.cards].index("s0-0")])
    assert any(line.endswith("…") for line in drawn), "the long title is cut after 3 lines"
    assert long.title.startswith("A very long")


def test_edges_follow_the_engine_with_labels() -> None:
    journey = load_journey_file(ROOT / "journeys" / "smb-owner.yaml")
    journey_map = layout(journey)
    out: dict[str, list[tuple[str, str, str | None]]] = {}
    for edge in journey_map.edges:
        out.setdefault(edge.source, []).append((edge.kind, edge.target, edge.label))
    assert out["entry"] == [("next", "await-visit", None)]
    assert out["await-visit"] == [
        ("next", "await-lead", "page_view"),
        ("timeout", "retarget", "timeout 1d"),
    ]
    assert out["lead-interest"] == [
        ("branch", "send-pricing", "prop interest = pricing"),
        ("branch", "sector-story", "trait industry in [retail, restaurant, hospitality]"),
        ("else", "offer-test", "else"),
    ]
    assert out["offer-test"] == [
        ("split", "offer-discount", "discount · 50%"),
        ("split", "offer-trial", "trial · 50%"),
    ]
    assert out["trial-ending"][0][2] == "all of (fact score ≥ 20; fact count.email_opened ≥ 2)"
    assert out["try-again"] == [("goto", "await-trial", None)]
    assert out["care"] == [("next", "care-message", None)]
    exits = {s.id for s in journey.steps if "exit" in type(s).__name__.lower()}
    assert exits
    assert not exits & out.keys()
    assert {s.id for s in journey.steps} - exits <= out.keys()
    ends = {end for e in journey_map.edges for end in (e.source, e.target)}
    assert not any(end.startswith("goal:") for end in ends)

    generated = layout(generated_journey())
    implicit = [(e.kind, e.target) for e in generated.edges if e.source == "s3-0"]
    assert implicit == [("next", "s3-1")], "a send without next goes on to the following step"
    assert ("next", "s0-1") in [(e.kind, e.target) for e in generated.edges if e.source == "s5-6"]
    labels = {e.label for e in generated.edges if e.source == "s2-2"}
    assert labels == {"trait plan = pro", "any of (fact score ≥ 10; prop x exists)", "else"}
    assert {e.label for e in generated.edges if e.source == "s1-3"} == {"a · 70%", "b · 30%"}


def test_numbers_and_badges_are_drawn() -> None:
    journey = generated_journey()
    numbers = big_numbers(layout(journey))
    svg = render_svg(layout(journey, 2, numbers), numbers)
    root = ET.fromstring(svg)
    everything = "\n".join(texts(root))
    for expected in (
        "entered 9,876,543 · now 123,456",
        "converted 7,654,321 · drop-off 98,765",
        "median time 1 d 2 h",
        "reached 1,234,567 · sent 1,200,000",
        "felt negative (7 of 10)",
        "expected positive",
        "short 10% · 60,000/600,000",
        "⚠ Moment of pain:",
        "★ Moment of truth:",
    ):
        assert expected in everything
    assert "opened 654,321 · clicked 54,321" in " ".join(everything.split("\n"))
    sentences = [g.findtext(f"{SVG}title") or "" for g in card_groups(root)]
    assert all("Moment of pain: 70% of runs end here" in s for s in sentences)
    assert "Measured numbers" in (root.findtext(f"{SVG}desc") or "")


def test_text_is_escaped() -> None:
    text = (ROOT / "journeys" / "smb-owner.yaml").read_text(encoding="utf-8")
    text = text.replace("\ntitle: Small business owner —", "\ntitle: <script>&x —")
    text = text.replace('title: "Social or search ad"', 'title: "<script>alert(1)</script> & co"')
    journey = load_journey(text)
    svg = render_svg(layout(journey))
    ET.fromstring(svg)
    assert "<script" not in svg
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co" in svg
    assert "Journey map: &lt;script&gt;&amp;x —" in svg
    html = render_html([(layout(journey), None)], title="<b>&")
    assert "<script" not in html
    assert "&lt;b&gt;&amp;" in html


class _Checker(HTMLParser):
    VOID = frozenset({"meta", "link", "br", "hr", "img", "input", "col", "area", "base", "wbr"})

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.problems: list[str] = []
        self.seen: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.seen.append(tag)
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.seen.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.problems.append(f"</{tag}> closes {self.stack[-1:]}")
        else:
            self.stack.pop()


def test_the_page_compares_versions_with_tables() -> None:
    journey = load_journey_file(ROOT / "journeys" / "smb-owner.yaml")
    before = layout(journey, 2)
    numbers = big_numbers(before)
    html = render_html(
        [(before, None), (layout(journey, 3, numbers), numbers)],
        title="smb-owner map",
        filters_html='<form class="filters"><label>Persona <input name="persona"></label></form>',
    )
    checker = _Checker()
    checker.feed(html)
    checker.close()
    assert checker.problems == []
    assert checker.stack == []
    assert html.startswith("<!DOCTYPE html>")
    assert '<html lang="en">' in html
    assert "<script" not in html
    assert "<?xml" not in html
    assert ">Version 2</h2>" in html
    assert ">Version 3</h2>" in html
    assert checker.seen.count("svg") >= 2
    assert checker.seen.count("table") == 3
    assert "Stages of version 3" in html
    assert "9,876,543" in html
    assert '<form class="filters">' in html.split("<main")[0]
    assert "Moment of truth" in html
    assert "Legend" in html


def test_cli_renders_svg_and_html(tmp_path: Path) -> None:
    runner = CliRunner()
    smb = str(ROOT / "journeys" / "smb-owner.yaml")
    for name in ("map.svg", "map.html"):
        out = tmp_path / name
        result = runner.invoke(app, ["journeys", "render", smb, "--out", str(out)])
        assert result.exit_code == 0, result.output
        assert f"wrote {out}" in result.output
        assert "47 cards in 6 stages" in result.output
        assert "smb-owner" in out.read_text(encoding="utf-8")
    ET.parse(tmp_path / "map.svg")
    result = runner.invoke(app, ["journeys", "render", smb, "--out", str(tmp_path / "map.png")])
    assert result.exit_code == 2
    assert "--out" in result.output
    assert not (tmp_path / "map.png").exists()


def test_cli_reports_a_broken_file_like_validate(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("journey: broken\ntitle: x\npersona: {id: p}\nentry: {event: nope}\n")
    result = CliRunner().invoke(
        app, ["journeys", "render", str(broken), "--out", str(tmp_path / "m.svg")]
    )
    assert result.exit_code == 1
    assert f"{broken}:4: entry.event" in result.output
    assert not (tmp_path / "m.svg").exists()
