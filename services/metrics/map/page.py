"""Journey maps as one standalone HTML page: the SVGs, their numbers as tables, a legend."""

from __future__ import annotations

from typing import Any

from jinja2 import Environment
from markupsafe import Markup

from .labels import (
    CHANNEL_ICONS,
    KIND_NAMES,
    count,
    engaged_label,
    felt_label,
    human_duration,
    variant_label,
)
from .model import CardNumbers, MapLayout, MapNumbers
from .svg import EMOTION_COLOURS, KIND_FILLS, face, render_svg

_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<style>
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1a202c;
       background: #fff; margin: 1.5rem; line-height: 1.4; }
h1 { font-size: 1.5rem; margin: 0 0 1rem; }
h2 { font-size: 1.25rem; margin: 1.5rem 0 .25rem; }
.maps { display: grid; gap: 2rem;
        grid-template-columns: repeat({{ maps|length }}, minmax(0, 1fr)); }
.scroll { overflow-x: auto; border: 1px solid #cbd5e0; border-radius: 6px; }
.scroll svg { display: block; }
table { border-collapse: collapse; margin: 0; font-size: .875rem; }
.scroll + .scroll { margin-top: 1rem; }
caption { text-align: left; font-weight: 700; padding: .25rem 0; }
th, td { border: 1px solid #cbd5e0; padding: .25rem .5rem; text-align: left; vertical-align: top; }
thead th { background: #edf2f7; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
.pain { background: #fde8e8; color: #822727; border: 1px solid #c53030; }
.truth { background: #fff4c2; color: #5f370e; border: 1px solid #b7791f; }
.badge { display: inline-block; border-radius: 4px; padding: 0 .35rem; font-weight: 700; }
.legend ul { list-style: none; padding: 0; display: flex; flex-wrap: wrap; gap: .5rem 1.5rem; }
.swatch { display: inline-block; width: 1.2em; height: .9em; border: 1px solid #718096;
          vertical-align: middle; margin-right: .3em; }
@media print { .scroll { overflow: visible; border: 0; }
               .scroll svg { width: 100%; height: auto; } }
</style>
</head>
<body>
<h1>{{ title }}</h1>
{{ filters }}
<main class="maps">
{% for map in maps %}
<section class="map" aria-labelledby="{{ map.id }}">
<h2 id="{{ map.id }}">{{ map.heading }}</h2>
<p>{{ map.layout.title }} · journey {{ map.layout.journey }} · persona {{ map.layout.persona }}</p>
<div class="scroll" role="region" tabindex="0" aria-label="{{ map.heading }}: map">
{{ map.svg }}</div>
{% if map.stages %}
<div class="scroll" role="region" tabindex="0" aria-label="{{ map.heading }}: stages">
<table>
<caption>Stages of {{ map.heading|lower }}</caption>
<thead><tr><th scope="col">Stage</th><th scope="col">Entered</th><th scope="col">Now in it</th>
<th scope="col">Converted</th><th scope="col">Drop-off</th><th scope="col">Median time</th>
</tr></thead>
<tbody>
{% for row in map.stages %}<tr><th scope="row">{{ row[0] }}</th>
{%- for cell in row[1:] %}<td class="n">{{ cell }}</td>{% endfor %}</tr>
{% endfor %}</tbody>
</table>
</div>
{% endif %}
<div class="scroll" role="region" tabindex="0" aria-label="{{ map.heading }}: cards">
<table>
<caption>Cards of {{ map.heading|lower }}</caption>
<thead><tr>{% for name in map.card_columns %}<th scope="col">{{ name }}</th>{% endfor %}
</tr></thead>
<tbody>
{% for row in map.cards %}<tr><th scope="row">{{ row[0] }}</th>
{%- for cell in row[1:] %}<td>{{ cell }}</td>{% endfor %}</tr>
{% endfor %}</tbody>
</table>
</div>
</section>
{% endfor %}
</main>
<section class="legend" aria-labelledby="legend">
<h2 id="legend">Legend</h2>
<h3>Channels</h3>
<ul>{% for name, icon in channels %}
<li><span aria-hidden="true">{{ icon }}</span> {{ name }}</li>{% endfor %}</ul>
<h3>Cards</h3>
<ul>{% for name, fill in kinds %}
<li><span class="swatch" style="background: {{ fill }}"></span>{{ name }}</li>{% endfor %}</ul>
<h3>Emotions</h3>
<ul>{% for name, drawn in emotions %}<li>{{ drawn }} {{ name }}</li>{% endfor %}</ul>
<h3>Badges</h3>
<ul>
<li><span class="badge pain">⚠ Moment of pain</span> feedback there is mostly negative,
or many runs end there</li>
<li><span class="badge truth">★ Moment of truth</span> prospects who engaged there went on
to a later stage much more often than the others</li>
</ul>
</section>
</body>
</html>
"""
_CARD_COLUMNS = ["Card", "Stage", "Kind", "Channel", "Content", "Expected emotion"]
_NUMBER_COLUMNS = ["Reached", "Sent", "Engaged", "Felt", "Variants", "Moment"]
_template = Environment(autoescape=True).from_string(_TEMPLATE)


def render_html(
    layouts: list[tuple[MapLayout, MapNumbers | None]], *, title: str, filters_html: str = ""
) -> str:
    """One page with every map (several side by side: versions compared), each followed by
    its numbers as tables. ``filters_html`` is trusted markup put above the maps."""
    maps = [_map(i, layout, numbers) for i, (layout, numbers) in enumerate(layouts)]
    return _template.render(
        title=title,
        filters=Markup(filters_html),  # the caller's own form, trusted
        maps=maps,
        channels=[(name.replace("_", " "), icon) for name, icon in CHANNEL_ICONS.items()],
        kinds=[(KIND_NAMES.get(kind, kind), fill) for kind, fill in KIND_FILLS.items()],
        emotions=[(name, _icon(name)) for name in EMOTION_COLOURS],
    )


def _icon(emotion: str) -> Markup:
    return Markup(
        '<svg width="14" height="14" viewBox="0 0 14 14" aria-hidden="true">'
        f"{face(7, 7, emotion)}</svg>"
    )


def _map(index: int, layout: MapLayout, numbers: MapNumbers | None) -> dict[str, Any]:
    svg = render_svg(layout, numbers)
    svg = svg.split("?>", 1)[1].lstrip() if svg.startswith("<?xml") else svg
    heading = "File (not published)" if layout.version is None else f"Version {layout.version}"
    stages = []
    if numbers is not None:
        for column in layout.columns:
            found = numbers.stages.get(column.stage)
            if found is None:
                stages.append([column.stage, "0", "0", "0", "0", "—"])
                continue
            stages.append(
                [column.stage, count(found.entered), count(found.current), count(found.converted),
                 count(found.dropped), human_duration(found.median_seconds)]
            )  # fmt: skip
    cards = []
    for card in layout.cards:
        row = [card.title, card.stage, KIND_NAMES.get(card.kind, card.kind),
               (card.channel or "").replace("_", " "), card.content or "",
               card.expected_emotion or ""]  # fmt: skip
        if numbers is not None:
            row += _numbers(card.kind, numbers.cards.get(card.id) or CardNumbers())
        cards.append(row)
    columns = _CARD_COLUMNS + (_NUMBER_COLUMNS if numbers is not None else [])
    return {
        "id": f"map-{index + 1}",
        "heading": heading,
        "layout": layout,
        "svg": Markup(svg),  # render_svg escapes every text
        "stages": stages,
        "cards": cards,
        "card_columns": columns,
    }


def _numbers(kind: str, found: CardNumbers) -> list[str]:
    variants = "; ".join(
        variant_label(name, v.assigned, v.converted, v.conversion_rate)
        for name, v in found.variants.items()
    )
    moments = [f"pain: {found.pain}"] if found.pain else []
    moments += [f"truth: {found.truth}"] if found.truth else []
    return [
        count(found.reached),
        count(found.delivered) if kind == "send" else "",
        engaged_label(found.engaged),
        felt_label(found) or "",
        variants,
        "; ".join(moments),
    ]
