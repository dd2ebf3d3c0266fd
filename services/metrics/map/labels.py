"""The words of a journey map: default card titles and details, condition and edge labels,
numbers for people, and the text rows of a card.

The rows are shared: the layout sizes each card from them and the SVG draws exactly them,
so a card is always as tall as its text (numbers included when they are given).
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from services.orchestrator.journey.model import (
    All,
    AnyOf,
    BranchStep,
    Compare,
    Condition,
    ExitStep,
    GotoStep,
    Not,
    Scalar,
    SendStep,
    SplitStep,
    Step,
    UpdateStep,
    WaitForStep,
    WaitStep,
)

from .model import Card, CardKind, CardNumbers, MapNumbers

RowStyle = Literal["meta", "title", "content", "detail", "emotion", "numbers", "variant", "pain",
                   "truth"]  # fmt: skip

TITLE_CHARS = 26  # 13 px bold in a 240 px card
TEXT_CHARS = 34  # 11 px
BOLD_CHARS = 31  # 11 px bold
ROW_HEIGHT: dict[RowStyle, float] = {"title": 17.0, "meta": 15.0}
DEFAULT_ROW_HEIGHT = 15.0
PADDING = 9.0
BADGE_PADDING = 5.0
HEADER_HEIGHT = 44.0
HEADER_ROW = 15.0
HEADER_NUMBER_ROWS = 3

CHANNEL_ICONS: dict[str, str] = {
    "email": "✉", "web": "⊞", "paid_social": "♥", "paid_search": "⌕", "display": "▭",
    "organic_search": "⌕", "organic_social": "☺", "referral": "⇄", "direct": "→",
    "phone": "☎", "postal": "✉", "in_person": "☺", "call_centre": "☏", "webinar": "◉",
    "video": "▶", "pdf": "▤", "webhook": "⚙", "other": "•",
}  # fmt: skip
KIND_NAMES: dict[str, str] = {"wait_for": "wait for", "goto": "go to"}
_OPERATORS = {"eq": "=", "ne": "≠", "gt": ">", "gte": "≥", "lt": "<", "lte": "≤"}
_ENGAGED = {
    "email_opened": "opened", "email_clicked": "clicked", "video_progress": "watched",
    "pdf_downloaded": "downloaded", "webinar_registered": "registered",
    "webinar_attended": "attended", "page_view": "viewed", "form_submitted": "submitted",
    "lead_captured": "left details", "ad_click": "clicked the ad", "call": "called",
    "purchase": "bought", "referral_made": "referred", "feedback": "answered",
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Row:
    """One line of text in a card, ``top`` measured from the card's top edge."""

    text: str
    style: RowStyle
    top: float
    height: float
    emotion: str | None = None


# ---------------------------------------------------------------- definitions


def duration(value: timedelta) -> str:
    """``3d``, ``2h``, ``90s``: as written in journey files."""
    seconds = value.total_seconds()
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def _value(value: Scalar | list[Scalar]) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def condition_label(condition: Condition) -> str:
    """``trait company_size < 50``, ``any of (fact score ≥ 20; prop interest = pricing)``."""
    if isinstance(condition, All | AnyOf):
        items = condition.all if isinstance(condition, All) else condition.any
        if len(items) == 1:
            return condition_label(items[0])
        word = "all of" if isinstance(condition, All) else "any of"
        return f"{word} (" + "; ".join(condition_label(c) for c in items) + ")"
    if isinstance(condition, Not):
        return f"not ({condition_label(condition.not_)})"
    assert isinstance(condition, Compare)
    kind, path = condition.subject
    operator, value = condition.operator
    subject = f"{kind} {path}"
    if operator in _OPERATORS:
        return f"{subject} {_OPERATORS[operator]} {_value(value)}"
    if operator == "exists":
        return f"{subject} {'exists' if value else 'is missing'}"
    words = {"in": "in", "not_in": "not in", "contains": "contains", "startswith": "starts with"}
    return f"{subject} {words[operator]} {_value(value)}"


def percent(weight: float, total: float) -> str:
    return f"{round(100 * weight / total, 1):g}%"


def describe_step(step: Step) -> tuple[CardKind, str, str | None, str | None, str | None]:
    """(kind, default title, channel, content id, detail) of a step."""
    if isinstance(step, SendStep):
        send = step.send
        parts = [] if send.type == "email" else [str(send.type)]
        if send.variants:
            parts.append("variants " + ", ".join(v.name for v in send.variants))
        detail = " · ".join(parts) or None
        return "send", f"Send {send.content}", str(send.channel), send.content, detail
    if isinstance(step, WaitStep):
        if isinstance(step.wait, timedelta):
            return "wait", f"Wait {duration(step.wait)}", None, None, f"waits {duration(step.wait)}"
        days = ", ".join(step.wait.days) or "any day"
        return "wait", f"Wait until {step.wait.time}", None, None, f"until {step.wait.time} {days}"
    if isinstance(step, WaitForStep):
        action = step.wait_for
        detail = f"timeout {duration(action.timeout)}"
        if action.when is not None:
            detail += f" · when {condition_label(action.when)}"
        title = f"Wait for {action.event} ({duration(action.timeout)})"
        return "wait_for", title, None, None, detail
    if isinstance(step, BranchStep):
        return "branch", f"Branch ({len(step.branch) + 1} ways)", None, None, None
    if isinstance(step, SplitStep):
        total = sum(arm.weight for arm in step.split)
        letters = "/".join("ABCDEFGH"[i] for i in range(min(len(step.split), 8)))
        detail = " · ".join(f"{arm.variant} {percent(arm.weight, total)}" for arm in step.split)
        return "split", f"Split {letters}", None, None, detail
    if isinstance(step, UpdateStep):
        changes = [
            f"unset {key}" if value is None else f"set {key}={_value(value)}"
            for key, value in step.update.set.items()
        ]
        if step.update.score:
            changes.append(f"score {step.update.score:+g}")
        return "update", "Update profile", None, None, ", ".join(changes) or None
    if isinstance(step, GotoStep):
        return "goto", f"Go to {step.goto}", None, None, None
    assert isinstance(step, ExitStep)
    return "exit", f"Exit: {step.exit}", None, None, f"exit reason {step.exit}"


# ---------------------------------------------------------------- numbers


def count(value: int) -> str:
    return f"{value:,}"


def human_duration(seconds: float | None) -> str:
    """``45 s``, ``12 min``, ``2 h 5 min``, ``3 d``, ``3 d 4 h``; ``—`` when unknown."""
    if seconds is None:
        return "—"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min"
    if whole < 86400:
        hours, minutes = whole // 3600, whole % 3600 // 60
        return f"{hours} h" + (f" {minutes} min" if minutes else "")
    days, hours = whole // 86400, whole % 86400 // 3600
    return f"{days} d" + (f" {hours} h" if hours else "")


def engaged_label(engaged: dict[str, int]) -> str:
    """``opened 12 · clicked 4 · watched 75% 3`` (a key may carry a detail after ``:``)."""
    parts = []
    for key, value in engaged.items():
        base, _, extra = key.partition(":")
        word = _ENGAGED.get(base, base.replace("_", " "))
        if extra:
            word += f" {extra}%" if extra.isdigit() else f" {extra}"
        parts.append(f"{word} {count(value)}")
    return " · ".join(parts)


def felt_label(numbers: CardNumbers) -> str | None:
    if numbers.actual_emotion is None:
        return None
    total = sum(numbers.emotions.values())
    found = numbers.emotions.get(numbers.actual_emotion, 0)
    return f"felt {numbers.actual_emotion} ({count(found)} of {count(total)})"


def variant_label(name: str, assigned: int, converted: int, rate: float | None) -> str:
    shown = "—" if rate is None else f"{rate:.0%}"
    return f"{name} {shown} · {count(converted)}/{count(assigned)}"


def stage_lines(numbers: MapNumbers | None, stage: str) -> list[str]:
    """The numbers under a stage header (as many as ``HEADER_NUMBER_ROWS``)."""
    if numbers is None:
        return []
    found = numbers.stages.get(stage)
    if found is None:
        return ["no runs yet", "", ""]
    return [
        f"entered {count(found.entered)} · now {count(found.current)}",
        f"converted {count(found.converted)} · drop-off {count(found.dropped)}",
        f"median time {human_duration(found.median_seconds)}",
    ]


def header_height(with_numbers: bool) -> float:
    return HEADER_HEIGHT + (HEADER_NUMBER_ROWS * HEADER_ROW if with_numbers else 0.0)


# ---------------------------------------------------------------- card rows


def wrap(text: str, width: int, lines: int) -> list[str]:
    """Wrapped to ``width`` characters, at most ``lines`` lines, the rest cut with …."""
    found = textwrap.wrap(text, width, break_on_hyphens=False) or [""]
    if len(found) > lines:
        found = found[:lines]
        found[-1] = found[-1][: width - 1].rstrip() + "…"
    return found


def meta_text(card: Card) -> str:
    kind = KIND_NAMES.get(card.kind, card.kind)
    if card.channel is None:
        return kind
    return f"{CHANNEL_ICONS.get(card.channel, '•')} {card.channel.replace('_', ' ')} · {kind}"


def card_rows(card: Card, numbers: MapNumbers | None) -> tuple[list[Row], float]:
    """The rows of a card and the height they need; with ``numbers``, the measured lines."""
    specs: list[tuple[RowStyle, str, str | None]] = [("meta", meta_text(card), None)]
    specs += [("title", line, None) for line in wrap(card.title, TITLE_CHARS, 3)]
    if card.content:
        specs.append(("content", wrap(f"content {card.content}", TEXT_CHARS, 1)[0], None))
    if card.detail:
        specs += [("detail", line, None) for line in wrap(card.detail, TEXT_CHARS, 2)]
    if (expected := card.expected_emotion) is not None:
        specs.append(("emotion", f"expected {expected}", expected))
    if numbers is not None:
        specs += _number_specs(card, numbers.cards.get(card.id) or CardNumbers())
    rows: list[Row] = []
    top = PADDING
    for i, (style, text, emotion) in enumerate(specs):
        badge = style in ("pain", "truth")
        if badge and (i == 0 or specs[i - 1][0] != style):
            top += BADGE_PADDING
        height = ROW_HEIGHT.get(style, DEFAULT_ROW_HEIGHT)
        rows.append(Row(text, style, top, height, emotion))
        top += height
        if badge and (i + 1 == len(specs) or specs[i + 1][0] != style):
            top += BADGE_PADDING
    return rows, top + PADDING


def _number_specs(card: Card, found: CardNumbers) -> list[tuple[RowStyle, str, str | None]]:
    first = f"reached {count(found.reached)}"
    if card.kind == "send":
        first += f" · sent {count(found.delivered)}"
    specs: list[tuple[RowStyle, str, str | None]] = [("numbers", first, None)]
    if found.engaged:
        specs += [("numbers", x, None) for x in wrap(engaged_label(found.engaged), BOLD_CHARS, 3)]
    if (felt := felt_label(found)) is not None:
        specs.append(("emotion", felt, found.actual_emotion))
    if found.variants:
        specs.append(("variant", "variants: converted/assigned", None))
        for name, v in found.variants.items():
            text = variant_label(name, v.assigned, v.converted, v.conversion_rate)
            specs += [("variant", line, None) for line in wrap(text, TEXT_CHARS, 1)]
    if found.pain:
        pain = wrap(f"⚠ Moment of pain: {found.pain}", BOLD_CHARS, 3)
        specs += [("pain", line, None) for line in pain]
    if found.truth:
        truth = wrap(f"★ Moment of truth: {found.truth}", BOLD_CHARS, 3)
        specs += [("truth", line, None) for line in truth]
    return specs
