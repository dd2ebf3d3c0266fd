"""A laid-out journey map drawn as one standalone, printable, accessible SVG 1.1 document."""

from __future__ import annotations

import re
from xml.sax.saxutils import escape, quoteattr

from .labels import (
    HEADER_ROW,
    KIND_NAMES,
    Row,
    card_rows,
    engaged_label,
    felt_label,
    header_height,
    stage_lines,
    wrap,
)
from .layout import MARGIN
from .model import Card, CardNumbers, Edge, MapLayout, MapNumbers

FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif"
INK = "#1a202c"  # every text colour below is ≥ 4.5:1 on the light fill it sits on
MUTED = "#4a5568"
KIND_FILLS: dict[str, str] = {
    "entry": "#e6f4ff", "goal": "#fff8db", "send": "#eef3ff", "wait": "#f4f5f7",
    "wait_for": "#fff3e6", "branch": "#f3edff", "split": "#f3edff", "update": "#eaf8f0",
    "goto": "#f4f5f7", "exit": "#f9eded",
}  # fmt: skip
KIND_STROKES: dict[str, str] = {"goal": "#b7791f", "entry": "#2b6cb0", "exit": "#9b2c2c"}
EMOTION_COLOURS = {"positive": "#276749", "neutral": "#4a5568", "negative": "#9b2c2c"}
EDGE_STYLES: dict[str, tuple[str, str | None]] = {
    "next": ("#4a5568", None), "timeout": ("#975a16", "6 3"), "branch": ("#2c5282", None),
    "else": ("#2c5282", "6 3"), "split": ("#553c9a", None), "goto": ("#4a5568", "2 3"),
}  # fmt: skip
ROW_STYLES: dict[str, tuple[float, str, str]] = {  # size, weight, colour
    "meta": (10.5, "600", MUTED), "title": (13.0, "700", INK), "content": (11.0, "400", INK),
    "detail": (11.0, "400", MUTED), "emotion": (11.0, "600", INK), "numbers": (11.0, "600", INK),
    "variant": (11.0, "400", "#44337a"), "pain": (11.0, "700", "#822727"),
    "truth": (11.0, "700", "#5f370e"),
}  # fmt: skip
BADGES = {"pain": ("#fde8e8", "#c53030"), "truth": ("#fff4c2", "#b7791f")}
LABEL_CHARS = 20


def face(cx: float, cy: float, emotion: str, r: float = 6.0) -> str:
    """A small coloured face: smiling, straight or frowning (always shown with its word)."""
    colour = EMOTION_COLOURS.get(emotion, MUTED)
    bend = {"positive": 0.45, "negative": -0.45}.get(emotion, 0.0) * r
    mouth_y = cy + 0.3 * r - (bend if bend < 0 else 0) * 0.6
    return (
        f'<g aria-hidden="true"><circle cx="{cx:g}" cy="{cy:g}" r="{r:g}" fill="{colour}"/>'
        f'<circle cx="{cx - r * 0.35:g}" cy="{cy - r * 0.25:g}" r="{r * 0.13:g}" fill="#fff"/>'
        f'<circle cx="{cx + r * 0.35:g}" cy="{cy - r * 0.25:g}" r="{r * 0.13:g}" fill="#fff"/>'
        f'<path d="M{cx - r * 0.45:g},{mouth_y:g} Q{cx:g},{mouth_y + bend:g} {cx + r * 0.45:g},'
        f'{mouth_y:g}" fill="none" stroke="#fff" stroke-width="{r * 0.18:g}"/></g>'
    )


def _text(x: float, y: float, text: str, size: float, weight: str, fill: str) -> str:
    return (
        f'<text x="{x:g}" y="{y:g}" font-size="{size:g}" font-weight="{weight}" '
        f'fill="{fill}">{escape(text)}</text>'
    )


def render_svg(layout: MapLayout, numbers: MapNumbers | None = None) -> str:
    """The map as an SVG document. Give the same ``numbers`` to ``layout()`` so the cards
    are tall enough for the measured lines; rows that do not fit a card are left out."""
    prefix = re.sub(r"[^A-Za-z0-9_-]", "-", f"map-{layout.journey}-v{layout.version or 0}")
    titles = {card.id: card.title for card in layout.cards}
    version = "" if layout.version is None else f" (version {layout.version})"
    stages = [c.stage for c in layout.columns]
    desc = (
        f"Customer-journey map of {layout.title}{version} for the persona {layout.persona}: "
        f"{len(stages)} stages from left to right ({', '.join(stages)}), {len(layout.cards)} "
        f"touchpoint and decision cards, {len(layout.edges)} transitions between them."
        + (" Measured numbers are shown on each stage and card." if numbers else "")
    )
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="{layout.width:g}" '
        f'height="{layout.height:g}" viewBox="0 0 {layout.width:g} {layout.height:g}" '
        f'role="img" aria-labelledby="{prefix}-title {prefix}-desc" font-family={quoteattr(FONT)}>',
        f'<title id="{prefix}-title">Journey map: {escape(layout.title + version)}</title>',
        f'<desc id="{prefix}-desc">{escape(desc)}</desc>',
        "<defs>",
        *(
            f'<marker id="{prefix}-arrow-{kind}" viewBox="0 0 10 10" refX="10" refY="5" '
            f'markerWidth="8" markerHeight="8" orient="auto"><path d="M0,0 L10,5 L0,10 z" '
            f'fill="{colour}"/></marker>'
            for kind, (colour, _) in EDGE_STYLES.items()
        ),
        "</defs>",
        f'<rect width="{layout.width:g}" height="{layout.height:g}" fill="#ffffff"/>',
        _text(MARGIN, MARGIN + 20, layout.title, 20, "700", INK),
        _text(MARGIN, MARGIN + 42, f"Journey {layout.journey}{version} · persona "
              f"{layout.persona} · stages left to right, cards top to bottom", 12, "400", MUTED),
    ]  # fmt: skip
    parts += _columns(layout, numbers)
    parts.append('<g class="edges">')
    parts += [_edge(edge, prefix, titles) for edge in layout.edges]
    parts.append('</g><g class="cards">')
    for i, card in enumerate(layout.cards):
        found = None if numbers is None else numbers.cards.get(card.id) or CardNumbers()
        parts.append(_card(card, f"{prefix}-card-{i}", numbers, found))
    parts.append('</g><g class="edge-labels">')
    parts += [_label(edge) for edge in layout.edges if edge.label and len(edge.points) >= 2]
    parts += ["</g>", "</svg>", ""]
    return "\n".join(parts)


def _columns(layout: MapLayout, numbers: MapNumbers | None) -> list[str]:
    parts = ['<g class="stages">']
    header = header_height(numbers is not None)
    for i, column in enumerate(layout.columns):
        b = column.box
        tip = b.x + b.width
        parts += [
            f'<rect x="{b.x:g}" y="{b.y:g}" width="{b.width:g}" height="{b.height:g}" rx="10" '
            'fill="#f7fafc" stroke="#cbd5e0"/>',
            f'<polygon points="{b.x:g},{b.y:g} {tip - 14:g},{b.y:g} {tip:g},{b.y + 17:g} '
            f'{tip - 14:g},{b.y + 34:g} {b.x:g},{b.y + 34:g}" fill="#e2e8f0" stroke="#a0aec0"/>',
            _text(b.x + 12, b.y + 23, f"{i + 1} · {column.stage}", 14, "700", INK),
        ]
        for j, line in enumerate(stage_lines(numbers, column.stage)):
            baseline = b.y + 40 + (j + 1) * HEADER_ROW
            if line and baseline + 4 <= b.y + header:
                parts.append(_text(b.x + 12, baseline, line, 11, "600", INK))
    parts.append("</g>")
    return parts


def _edge(edge: Edge, prefix: str, titles: dict[str, str]) -> str:
    colour, dash = EDGE_STYLES[edge.kind]
    path = "M" + " L".join(f"{x:g},{y:g}" for x, y in edge.points)
    what = f"{titles.get(edge.source, edge.source)} → {titles.get(edge.target, edge.target)}"
    if edge.label:
        what += f" ({edge.label})"
    dashes = f' stroke-dasharray="{dash}"' if dash else ""
    return (
        f'<g class="edge edge-{edge.kind}"><title>{escape(what)}</title>'
        f'<path d="{path}" fill="none" stroke="{colour}" stroke-width="1.5"{dashes} '
        f'marker-end="url(#{prefix}-arrow-{edge.kind})"/></g>'
    )


def _label(edge: Edge) -> str:
    (x0, y0), (x1, _) = edge.points[0], edge.points[1]
    lines = wrap(edge.label or "", LABEL_CHARS, 2)
    height = 13 * len(lines) + 4
    width = max(len(line) for line in lines) * 5.8 + 8
    if x1 > x0:  # leaves to the right: the label sits just right of the card
        x, y = x0 + 4, y0 - height / 2
    else:  # straight down between two cards
        x, y = x0 + 6, (y0 + edge.points[-1][1]) / 2 - height / 2
    colour = EDGE_STYLES[edge.kind][0]
    texts = "".join(
        f'<text x="{x + 4:g}" y="{y + 13 * (k + 1):g}" font-size="10" fill="{colour}">'
        f"{escape(line)}</text>"
        for k, line in enumerate(lines)
    )
    return (
        f'<g class="edge-label"><rect x="{x:g}" y="{y:g}" width="{width:g}" height="{height:g}" '
        f'rx="3" fill="#ffffff" stroke="#cbd5e0"/>{texts}</g>'
    )


def _card(card: Card, ident: str, numbers: MapNumbers | None, found: CardNumbers | None) -> str:
    b = card.box
    fill = KIND_FILLS.get(card.kind, "#ffffff")
    stroke = KIND_STROKES.get(card.kind, "#718096")
    dash = ' stroke-dasharray="5 3"' if card.kind == "goal" else ""
    parts = [
        f'<g class="card card-{card.kind}" id="{ident}"><title>{escape(_sentence(card, found))}'
        "</title>",
        f'<rect x="{b.x:g}" y="{b.y:g}" width="{b.width:g}" height="{b.height:g}" rx="8" '
        f'fill="{fill}" stroke="{stroke}" stroke-width="1.5"{dash}/>',
    ]
    rows = [r for r in card_rows(card, numbers)[0] if r.top + r.height <= b.height]
    for style, (background, border) in BADGES.items():
        block = [r for r in rows if r.style == style]
        if block:
            top, bottom = block[0].top - 3, block[-1].top + block[-1].height + 3
            parts.append(
                f'<rect x="{b.x + 6:g}" y="{b.y + top:g}" width="{b.width - 12:g}" '
                f'height="{bottom - top:g}" rx="4" fill="{background}" stroke="{border}"/>'
            )
    parts += [_row(b.x, b.y, row) for row in rows]
    parts.append("</g>")
    return "".join(parts)


def _row(x: float, y: float, row: Row) -> str:
    size, weight, colour = ROW_STYLES[row.style]
    baseline = y + row.top + row.height - 4
    if row.emotion is None:
        return _text(x + 12, baseline, row.text, size, weight, colour)
    word = EMOTION_COLOURS.get(row.emotion, INK)
    drawn = face(x + 18, y + row.top + row.height / 2, row.emotion)
    return drawn + _text(x + 30, baseline, row.text, size, weight, word)


def _sentence(card: Card, found: CardNumbers | None) -> str:
    """The whole card in words, for tooltips and screen readers."""
    kind = KIND_NAMES.get(card.kind, card.kind)
    parts = [f"{kind.capitalize()} in the stage {card.stage}: {card.title}."]
    if card.channel:
        parts.append(f"Channel: {card.channel.replace('_', ' ')}.")
    if card.content:
        parts.append(f"Content: {card.content}.")
    if card.detail:
        parts.append(f"{card.detail[0].upper()}{card.detail[1:]}.")
    if card.expected_emotion:
        parts.append(f"Expected emotion: {card.expected_emotion}.")
    if found is not None:
        parts.append(f"Reached by {found.reached:,} runs" + (
            f", {found.delivered:,} sent." if card.kind == "send" else "."))  # fmt: skip
        if found.engaged:
            parts.append(f"Engagement: {engaged_label(found.engaged)}.")
        if (felt := felt_label(found)) is not None:
            parts.append(f"Prospects {felt}.")
        for name, v in found.variants.items():
            parts.append(f"Variant {name}: {v.converted:,} of {v.assigned:,} converted.")
        if found.pain:
            parts.append(f"Moment of pain: {found.pain}.")
        if found.truth:
            parts.append(f"Moment of truth: {found.truth}.")
    return " ".join(parts)
