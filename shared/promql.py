"""The PromQL inventory: every expression the dashboards and the alert rules evaluate.

``dashboard_expressions()`` walks the Grafana dashboards in ``deploy/grafana/dashboards``
(rows and nested panels included) and returns each target's ``expr`` with the Grafana
variables substituted, so the result is plain PromQL; ``rule_expressions()`` does the same
for the alerting and recording rules in ``deploy/prometheus/rules``. The tests parse every
one of them with ``promtool`` and check the metric names against docs/metrics.md.

Alert rules follow one convention, which ``comparisons()`` and ``measures()`` read: the
expression is ``<measure> <op> <threshold>`` at the top level, or
``(<measure> <op> <threshold>) and (<measure2> <op> <threshold2>)``.

``python -m shared.promql prometheusrule`` prints deploy/k8s/prometheusrule.yaml: the rule
files' groups wrapped in a Prometheus Operator ``PrometheusRule``.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
DASHBOARDS = REPO_ROOT / "deploy" / "grafana" / "dashboards"
RULES = REPO_ROOT / "deploy" / "prometheus" / "rules"

DEFAULT_VARIABLES: Mapping[str, str] = {
    "journey": ".*",
    "persona": ".*",
    "__rate_interval": "1m",
    "__interval": "30s",
    "__interval_ms": "30000",
    "__range": "5m",
    "__range_s": "300",
    "__range_ms": "300000",
}
"""What Grafana would put in place of each variable: "All" for the template variables
(their ``allValue``) and plausible values for the built-in intervals."""

COMPARISON_OPERATORS = ("==", "!=", ">=", "<=", ">", "<")

# $name, ${name}, ${name:format}, [[name]], [[name:format]]
_VARIABLE = re.compile(
    r"\$\{(?P<braced>\w+)(?::[^}]*)?\}|\$(?P<bare>\w+)|\[\[(?P<old>\w+)(?::[^\]]*)?\]\]"
)
_IDENTIFIER_CHAR = re.compile(r"[A-Za-z0-9_:]")
_MATCHING_CLAUSE = re.compile(r"^(?:on|ignoring)\s*\([^()]*\)\s*", re.IGNORECASE)
_GROUP_CLAUSE = re.compile(r"^group_(?:left|right)\s*(?:\([^()]*\))?\s*", re.IGNORECASE)
_BOOL = re.compile(r"^bool\b\s*", re.IGNORECASE)

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_LABEL_LIST = re.compile(
    r"(?<![\w:])(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", re.IGNORECASE
)
_RANGE = re.compile(r"\[[^\[\]]*\]")
_NAME = re.compile(r"(?<![\w:.$])([A-Za-z_:][\w:]*)(?![\w:])(?!\s*\()")
KEYWORDS = frozenset(
    {
        "and",
        "or",
        "unless",
        "bool",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "offset",
        "atan2",
        "inf",
        "nan",
        "start",
        "end",
        *("sum", "min", "max", "avg", "group", "stddev", "stdvar", "count"),
        *("count_values", "bottomk", "topk", "quantile", "limitk", "limit_ratio"),
    }
)
"""Words of PromQL that are not metric names even when they stand bare."""


@dataclass(frozen=True)
class Expression:
    source: str
    """The file the expression comes from (its name, not the path)."""
    title: str
    """The panel title, or the alert or recording rule name."""
    expr: str
    """PromQL, with the Grafana variables substituted."""
    alert: bool = False
    """An alerting rule: ``expr`` is ``<measure> <op> <threshold>`` (see :func:`measures`)."""


@dataclass(frozen=True)
class Comparison:
    measure: str
    """The left-hand side: what is measured."""
    operator: str
    """One of ``COMPARISON_OPERATORS``."""
    threshold: str
    """The right-hand side, without ``bool`` or vector-matching modifiers."""


def substitute(expr: str, variables: Mapping[str, str]) -> str:
    """Replace the Grafana variables ``variables`` names; leave anything else (``$1``)."""

    def replace(match: re.Match[str]) -> str:
        name = match.group("braced") or match.group("bare") or match.group("old")
        return variables.get(name, match.group(0))

    return _VARIABLE.sub(replace, expr)


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def dashboard_panels(dashboard: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every panel of a dashboard, the panels inside (collapsed) rows included."""
    return list(_panels(list(dashboard.get("panels", []))))


def dashboard_expressions(
    directory: Path = DASHBOARDS, variables: Mapping[str, str] | None = None
) -> list[Expression]:
    """Every target ``expr`` of every ``*.json`` dashboard in ``directory``.

    ``variables`` are added to (and override) ``DEFAULT_VARIABLES``.
    """
    values = {**DEFAULT_VARIABLES, **(variables or {})}
    found: list[Expression] = []
    for path in sorted(directory.glob("*.json")):
        dashboard = json.loads(path.read_text())
        for panel in dashboard_panels(dashboard):
            for target in panel.get("targets", []):
                expr = target.get("expr")
                if isinstance(expr, str) and expr.strip():
                    found.append(
                        Expression(path.name, str(panel.get("title", "")), substitute(expr, values))
                    )
    return found


def rule_groups(directory: Path = RULES) -> list[dict[str, Any]]:
    """The rule groups of every ``*.yml`` file in ``directory``, in file-name order."""
    groups: list[dict[str, Any]] = []
    for path in sorted(directory.glob("*.yml")):
        document = yaml.safe_load(path.read_text()) or {}
        groups.extend(document.get("groups", []))
    return groups


def rule_expressions(directory: Path = RULES) -> list[Expression]:
    """The ``expr`` of every alerting and recording rule in ``directory``."""
    found: list[Expression] = []
    for path in sorted(directory.glob("*.yml")):
        document = yaml.safe_load(path.read_text()) or {}
        for group in document.get("groups", []):
            for rule in group.get("rules", []):
                title = rule.get("alert") or rule.get("record") or ""
                expr = str(rule["expr"]).strip()
                found.append(Expression(path.name, str(title), expr, alert="alert" in rule))
    return found


def prometheus_rule(directory: Path = RULES) -> dict[str, Any]:
    """The Prometheus Operator ``PrometheusRule`` holding the groups of the rule files."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "trayecto",
            "labels": {"app.kubernetes.io/name": "trayecto"},
        },
        "spec": {"groups": rule_groups(directory)},
    }


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects, by their bare-identifier form.

    Strings, label matchers, grouping label lists and range/subquery brackets are blanked
    out first; what remains as an identifier that is no keyword and is not called like a
    function (``rate(``) is a metric name. ``{__name__="x"}`` selectors are not seen.
    """
    text = _STRING.sub('""', strip_comments(expr))
    text = _MATCHERS.sub("{}", text)
    text = _LABEL_LIST.sub(" ", text)
    text = _RANGE.sub("[]", text)
    return {name for name in _NAME.findall(text) if name.lower() not in KEYWORDS}


def strip_comments(expr: str) -> str:
    """``expr`` without its ``#`` comments (a ``#`` inside a string is kept)."""
    kept: list[str] = []
    quote: str | None = None
    index = 0
    while index < len(expr):
        char = expr[index]
        if quote is not None:
            if char == "\\" and quote != "`":
                kept.append(expr[index : index + 2])
                index += 2
                continue
            if char == quote:
                quote = None
        elif char in "\"'`":
            quote = char
        elif char == "#":
            newline = expr.find("\n", index)
            index = len(expr) if newline < 0 else newline
            continue
        kept.append(char)
        index += 1
    return "".join(kept)


def _top_level(expr: str) -> Iterator[int]:
    """Indexes of the characters of ``expr`` outside (), [], {}, strings and comments."""
    depth = 0
    quote: str | None = None
    index = 0
    while index < len(expr):
        char = expr[index]
        if quote is not None:
            if char == "\\" and quote != "`":
                index += 2
                continue
            if char == quote:
                quote = None
        elif char in "\"'`":
            quote = char
        elif char == "#":
            newline = expr.find("\n", index)
            index = len(expr) if newline < 0 else newline
            continue
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
            if depth < 0:
                raise ValueError(f"unbalanced {char!r} at {index} in {expr!r}")
        elif depth == 0:
            yield index
        index += 1
    if quote is not None or depth != 0:
        raise ValueError(f"unterminated string or bracket in {expr!r}")


def _strip_parens(expr: str) -> str:
    """``expr`` without the parentheses that enclose all of it, if any."""
    expr = expr.strip()
    while expr.startswith("(") and expr.endswith(")"):
        inner = expr[1:-1]
        try:
            list(_top_level(inner))
        except ValueError:
            break  # "(a) > (b)": the first ( closes before the end
        expr = inner.strip()
    return expr


def _is_word_at(expr: str, index: int, word: str) -> bool:
    end = index + len(word)
    return (
        expr[index:end].lower() == word
        and (index == 0 or not _IDENTIFIER_CHAR.match(expr[index - 1]))
        and (end == len(expr) or not _IDENTIFIER_CHAR.match(expr[end]))
    )


def _split_and(expr: str) -> list[str]:
    """``expr`` split at its top-level ``and`` operators; ``or``/``unless`` are refused."""
    parts: list[str] = []
    start = 0
    for index in _top_level(expr):
        for word in ("or", "unless"):
            if _is_word_at(expr, index, word):
                raise ValueError(f"top-level {word!r} in {expr!r}: only 'and' is supported")
        if _is_word_at(expr, index, "and"):
            parts.append(expr[start:index])
            start = index + len("and")
    parts.append(expr[start:])
    # "a > 1 and on (job) b > 2": the matching clause belongs to the operator
    return [parts[0].strip()] + [_MATCHING_CLAUSE.sub("", p.strip(), count=1) for p in parts[1:]]


def _strip_modifiers(right: str) -> str:
    right = right.strip()
    for pattern in (_BOOL, _MATCHING_CLAUSE, _GROUP_CLAUSE):
        right = pattern.sub("", right, count=1)
    return right.strip()


def split_comparison(expr: str) -> Comparison:
    """``<measure> <op> <threshold>``: the single top-level comparison of ``expr``."""
    expr = _strip_parens(expr)
    found: list[tuple[int, str]] = []
    skip_until = -1
    for index in _top_level(expr):
        if index < skip_until:
            continue
        for operator in COMPARISON_OPERATORS:
            if expr.startswith(operator, index):
                found.append((index, operator))
                skip_until = index + len(operator)
                break
    if not found:
        raise ValueError(f"no top-level comparison in {expr!r}")
    if len(found) > 1:
        raise ValueError(f"more than one top-level comparison in {expr!r}")
    index, operator = found[0]
    measure = expr[:index].strip()
    threshold = _strip_modifiers(expr[index + len(operator) :])
    if not measure or not threshold:
        raise ValueError(f"comparison without both sides in {expr!r}")
    return Comparison(measure, operator, threshold)


def comparisons(expr: str) -> list[Comparison]:
    """The comparisons of an alert expression that follows the convention."""
    return [split_comparison(part) for part in _split_and(_strip_parens(strip_comments(expr)))]


def measures(expr: str) -> list[str]:
    """The left-hand measures of an alert expression that follows the convention.

    ``sum(x) > 5`` gives ``["sum(x)"]``; ``(a > 1) and (b < 2)`` gives ``["a", "b"]``.
    Raises ``ValueError`` when the expression has no top-level comparison.
    """
    return [comparison.measure for comparison in comparisons(expr)]


def main(argv: list[str]) -> int:
    if argv != ["prometheusrule"]:
        print("usage: python -m shared.promql prometheusrule > deploy/k8s/prometheusrule.yaml")
        return 2
    print(
        "# Generated from deploy/prometheus/rules/*.yml by "
        "`python -m shared.promql prometheusrule`: do not edit by hand."
    )
    print(yaml.safe_dump(prometheus_rule(), sort_keys=False, allow_unicode=True, width=100), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
