"""The Grafana dashboards, the Prometheus rules and their k8s twins, checked offline.

Every expression of the PromQL inventory (shared/promql.py) is parsed by promtool and may
only select the series docs/metrics.md documents; the alerts follow the
`<measure> <op> <number>` convention; the Prometheus Operator resources match the rule
files and the services.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.promql import (
    DASHBOARDS,
    DEFAULT_VARIABLES,
    RULES,
    Comparison,
    Expression,
    comparisons,
    dashboard_expressions,
    dashboard_panels,
    measures,
    metric_names,
    prometheus_rule,
    rule_expressions,
    rule_groups,
    substitute,
)
from shared.settings import SERVICES, Settings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
METRICS_DOC = ROOT / "docs" / "metrics.md"
DATASOURCE_UID = "prometheus"
NEW_DASHBOARDS = ("funnel.json", "delivery.json", "pipeline.json")
REQUIRED_VARIABLES = {
    "funnel.json": {"journey", "persona"},
    "delivery.json": {"journey"},
}
VARIABLE_QUERIES = {
    "journey": "label_values(trayecto_stage_entries_total, journey)",
    "persona": 'label_values(trayecto_stage_entries_total{journey=~"$journey"}, persona)',
}
GRAFANA_BUILTINS = {name for name in DEFAULT_VARIABLES if name.startswith("__")}
EXTRA_SERIES = {
    "up",
    "trayecto_orchestrator_events_total",
    "trayecto_orchestrator_batch_seconds",
}
"""Series outside docs/metrics.md the dashboards and rules may use (besides process_*)."""
EXTRA_PREFIXES = ("process_",)
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
ALERT_OPERATORS = {">", "<", ">=", "<="}
SEVERITIES = {"critical", "warning", "info"}
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool is not installed (Debian package prometheus; `trayecto stack up`)",
)


def _dashboard(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DASHBOARDS / name).read_text())
    return data


def _dashboard_names() -> list[str]:
    return sorted(p.name for p in DASHBOARDS.glob("*.json"))


def _query_panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    return (panel for panel in dashboard_panels(dashboard) if panel.get("type") != "row")


def _raw_exprs(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for panel in _query_panels(dashboard):
        for target in panel.get("targets", []):
            yield panel["title"], target.get("expr", "")


def _variables(dashboard: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in dashboard.get("templating", {}).get("list", [])}


def _documented_series() -> dict[str, set[str]]:
    """Series name → labels, from the tables of docs/metrics.md."""
    series: dict[str, set[str]] = {}
    for line in METRICS_DOC.read_text().splitlines():
        row = re.match(r"^\|\s*`([a-z_:][a-z0-9_:]*)`\s*\|([^|]*)\|", line)
        if row:
            series[row.group(1)] = {
                label.strip() for label in row.group(2).split(",") if label.strip()
            }
    return series


def _documented_names() -> tuple[set[str], tuple[str, ...]]:
    """Exact names and name prefixes (``faststream_published_*``) docs/metrics.md lists."""
    exact: set[str] = set(_documented_series())
    prefixes: list[str] = []
    for token in re.findall(r"`([a-z_][a-z0-9_]*\*?)(?:\{[^`]*\})?`", METRICS_DOC.read_text()):
        if not token.startswith(("trayecto_", "faststream_", "process_", "python_")):
            continue
        if token.endswith("*"):
            prefixes.append(token.rstrip("*"))
        else:
            exact.add(token)
    return exact, tuple(prefixes)


def _allowed(name: str, exact: set[str], prefixes: tuple[str, ...]) -> bool:
    candidates = {name} | {
        name.removesuffix(suffix) for suffix in HISTOGRAM_SUFFIXES if name.endswith(suffix)
    }
    return any(c in exact for c in candidates) or name.startswith(prefixes)


def _alerts() -> list[tuple[str, dict[str, Any]]]:
    return [
        (path.name, rule)
        for path in sorted(RULES.glob("*.yml"))
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]


def _k8s_documents() -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    return [
        document
        for name in kustomization["resources"]
        for document in yaml.safe_load_all((K8S / name).read_text())
        if document
    ]


def _promtool_check_rules(*paths: Path) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, "check", "rules", *map(str, paths)],
        capture_output=True,
        text=True,
        check=False,
    )


# --------------------------------------------------------------------------- dashboards


def test_the_dashboards_exist() -> None:
    assert {"platform.json", *NEW_DASHBOARDS} <= set(_dashboard_names())


@pytest.mark.parametrize("name", _dashboard_names())
def test_dashboard_identity(name: str) -> None:
    dashboard = _dashboard(name)
    assert re.fullmatch(r"trayecto-[a-z0-9-]+", dashboard["uid"])
    assert dashboard["title"].startswith("Trayecto — ")
    assert dashboard["schemaVersion"] == 39


def test_dashboard_uids_and_titles_are_unique() -> None:
    dashboards = [_dashboard(name) for name in _dashboard_names()]
    assert len({d["uid"] for d in dashboards}) == len(dashboards)
    assert len({d["title"] for d in dashboards}) == len(dashboards)


@pytest.mark.parametrize("name", _dashboard_names())
def test_every_panel_queries_the_prometheus_datasource(name: str) -> None:
    dashboard = _dashboard(name)
    panels = dashboard_panels(dashboard)
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), f"duplicate panel ids in {name}"
    for panel in panels:
        position = panel["gridPos"]
        assert {"x", "y", "w", "h"} <= set(position), panel["title"]
        assert position["x"] >= 0, panel["title"]
        assert position["x"] + position["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == DATASOURCE_UID, panel["title"]
        targets = panel.get("targets", [])
        assert any(target.get("expr", "").strip() for target in targets), panel["title"]
        for target in targets:
            assert target["datasource"]["uid"] == DATASOURCE_UID, panel["title"]
            assert target["expr"].strip(), (panel["title"], target["refId"])
        ref_ids = [target["refId"] for target in targets]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]


@pytest.mark.parametrize("name", sorted(REQUIRED_VARIABLES))
def test_journey_and_persona_variables(name: str) -> None:
    variables = _variables(_dashboard(name))
    assert set(variables) >= REQUIRED_VARIABLES[name]
    for variable_name in REQUIRED_VARIABLES[name]:
        variable = variables[variable_name]
        assert variable["type"] == "query"
        assert variable["datasource"]["uid"] == DATASOURCE_UID
        query = variable["query"]
        assert (query["query"] if isinstance(query, dict) else query) == VARIABLE_QUERIES[
            variable_name
        ]
        assert variable["multi"] is True
        assert variable["includeAll"] is True
        assert variable["allValue"] == ".*"


@pytest.mark.parametrize("name", _dashboard_names())
def test_every_variable_an_expression_uses_is_defined(name: str) -> None:
    dashboard = _dashboard(name)
    defined = set(_variables(dashboard)) | GRAFANA_BUILTINS
    for title, expr in _raw_exprs(dashboard):
        used = set(re.findall(r"\$\{?(\w+)", expr)) - set(re.findall(r"\$(\d+)", expr))
        assert used <= defined, (title, used - defined)


@pytest.mark.parametrize("name", sorted(REQUIRED_VARIABLES))
def test_journey_series_are_filtered_by_the_journey_variable(name: str) -> None:
    with_journey = {
        series for series, labels in _documented_series().items() if "journey" in labels
    }
    for title, expr in _raw_exprs(_dashboard(name)):
        for series in with_journey:
            pattern = rf"(?<![\w:]){series}(?:_bucket|_sum|_count)?(?![\w:])(\{{[^}}]*\}})?"
            for match in re.finditer(pattern, expr):
                matchers = match.group(1) or ""
                assert 'journey=~"$journey"' in matchers, (title, match.group(0))
    # and the persona variable where the series has a persona label (the A/B panels
    # compare with the variant series, which have none, so they leave persona out)
    if "persona" in REQUIRED_VARIABLES[name]:
        assert any('persona=~"$persona"' in expr for _, expr in _raw_exprs(_dashboard(name)))


@pytest.mark.parametrize("name", NEW_DASHBOARDS)
def test_range_vectors_use_grafana_intervals(name: str) -> None:
    for title, expr in _raw_exprs(_dashboard(name)):
        expr_without_strings = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
        for window in re.findall(r"\[([^\]]*)\]", expr_without_strings):
            assert window in {"$__rate_interval", "$__range"}, (title, window)


def test_the_dashboards_cover_the_platform_series() -> None:
    def used(name: str) -> set[str]:
        return {
            n for e in dashboard_expressions() if e.source == name for n in metric_names(e.expr)
        }

    assert used("funnel.json") >= {
        "trayecto_stage_entries_total",
        "trayecto_stage_exits_total",
        "trayecto_stage_conversions_total",
        "trayecto_prospects_in_stage",
        "trayecto_time_in_stage_seconds_bucket",
        "trayecto_time_to_stage_seconds_bucket",
        "trayecto_variant_stage_entries_total",
        "trayecto_step_entries_total",
        "trayecto_feedback_total",
    }
    assert used("delivery.json") >= {
        "trayecto_deliveries_total",
        "trayecto_touchpoint_engagements_total",
        "trayecto_touchpoints_total",
    }
    assert used("pipeline.json") >= {
        "up",
        "trayecto_consumer_lag",
        "trayecto_topic_messages",
        "trayecto_outbox_backlog",
        "trayecto_outbox_oldest_seconds",
        "trayecto_timers_pending",
        "trayecto_timers_overdue",
        "trayecto_timers_oldest_overdue_seconds",
        "trayecto_orchestrator_events_total",
        "faststream_received_processed_messages_total",
        "faststream_received_processed_messages_duration_seconds_bucket",
    }


def test_funnel_heatmap_and_quantiles() -> None:
    panels = list(_query_panels(_dashboard("funnel.json")))
    heatmaps = [p for p in panels if p["type"] == "heatmap"]
    assert heatmaps
    for panel in heatmaps:
        for target in panel["targets"]:
            assert target["format"] == "heatmap"
            assert "trayecto_time_in_stage_seconds_bucket" in target["expr"]
            assert "by (le)" in target["expr"]
    quantiles = {
        q
        for p in panels
        for t in p["targets"]
        if "trayecto_time_to_stage_seconds_bucket" in t["expr"]
        for q in re.findall(r"histogram_quantile\((0\.\d+)", t["expr"])
    }
    assert quantiles >= {"0.5", "0.9"}


# --------------------------------------------------------------------------- inventory


def test_dashboard_expressions_substitute_variables_and_walk_rows(tmp_path: Path) -> None:
    def panel(panel_id: int, expr: str) -> dict[str, Any]:
        return {
            "id": panel_id,
            "type": "timeseries",
            "title": f"p{panel_id}",
            "targets": [{"refId": "A", "expr": expr}],
        }

    dashboard = {
        "panels": [
            panel(1, 'sum(rate(a{journey=~"$journey"}[$__rate_interval]))'),
            {
                "id": 2,
                "type": "row",
                "title": "collapsed",
                "collapsed": True,
                "panels": [
                    panel(3, 'b{persona=~"${persona}", j=~"[[journey]]"}[$__range]'),
                    panel(4, 'label_replace(c, "d", "$1", "s", "(.*)")[$__interval]'),
                ],
            },
        ]
    }
    (tmp_path / "d.json").write_text(json.dumps(dashboard))
    found = dashboard_expressions(tmp_path)
    assert found == [
        Expression("d.json", "p1", 'sum(rate(a{journey=~".*"}[1m]))'),
        Expression("d.json", "p3", 'b{persona=~".*", j=~".*"}[5m]'),
        Expression("d.json", "p4", 'label_replace(c, "d", "$1", "s", "(.*)")[30s]'),
    ]
    overridden = dashboard_expressions(tmp_path, {"journey": "onboarding", "__range": "1h"})
    assert overridden[1].expr == 'b{persona=~".*", j=~"onboarding"}[1h]'
    assert substitute("$__range_s $unknown ${journey:regex}", DEFAULT_VARIABLES) == (
        "300 $unknown .*"
    )


def test_the_inventory_holds_every_panel_target_and_rule() -> None:
    expressions = dashboard_expressions()
    targets = sum(
        1 for name in _dashboard_names() for _, expr in _raw_exprs(_dashboard(name)) if expr.strip()
    )
    assert len(expressions) == targets
    assert not any("$" in e.expr.replace("$1", "") for e in expressions)
    rules = rule_expressions()
    titles = {e.title for e in rules}
    assert {alert["alert"] for _, alert in _alerts()} <= titles
    assert any(":" in title for title in titles), "recording rules are part of the inventory"
    assert len(rules) == sum(len(group["rules"]) for group in rule_groups())


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ('up{job=~"trayecto-.*"} < 1', ['up{job=~"trayecto-.*"}']),
        ("trayecto_outbox_oldest_seconds > 60", ["trayecto_outbox_oldest_seconds"]),
        (
            "(sum(rate(a[5m])) / sum(rate(b[5m]))) > 0.05",
            ["(sum(rate(a[5m])) / sum(rate(b[5m])))"],
        ),
        ("((max(x) >= 3))", ["max(x)"]),
        ("(a > 1)", ["a"]),
        (
            "(sum by (g) (lag) > 1000)\nand\n(sum by (g) (delta(lag[10m])) > 0)",
            ["sum by (g) (lag)", "sum by (g) (delta(lag[10m]))"],
        ),
        ("(a > 1) and on (job) (b <= 2)", ["a", "b"]),
        ('x{path=">"} > 1', ['x{path=">"}']),
        (
            'label_replace(x, "d", ")>(", "s", "(.*)") >= 3',
            ['label_replace(x, "d", ")>(", "s", "(.*)")'],
        ),
        ("rate(x[5m]) > bool 0", ["rate(x[5m])"]),
        ('y{a="\\"}>"} != 0', ['y{a="\\"}>"}']),
        ("z == 0 # when z > 1", ["z"]),
        ("brand_and_total > 1", ["brand_and_total"]),
    ],
)
def test_measures(expr: str, expected: list[str]) -> None:
    assert measures(expr) == expected


def test_comparisons_give_operator_and_threshold() -> None:
    assert comparisons("(a > 1) and (b <= bool 2.5)") == [
        Comparison("a", ">", "1"),
        Comparison("b", "<=", "2.5"),
    ]


@pytest.mark.parametrize(
    "expr",
    [
        "sum(rate(x[5m]))",
        "a > 1 > 2",
        "a > 1 or b > 2",
        "(a > 1) unless (b > 2)",
        "sum(a > 1",
        'a{x="unterminated} > 1',
        "> 1",
    ],
)
def test_measures_refuses_what_is_not_the_convention(expr: str) -> None:
    with pytest.raises(ValueError, match=r"."):
        measures(expr)


def test_metric_names() -> None:
    expr = (
        "histogram_quantile(0.9, sum by (journey, le) (rate(t_seconds_bucket"
        '{journey=~".*", a="b_total"}[1m] offset 5m)))'
        " / on (journey) group_left () (sum without (x) (u_total) > 0)"
        ' and up or label_replace(v, "dst", "$1", "src", "(.*)") # w_total'
    )
    assert metric_names(expr) == {"t_seconds_bucket", "u_total", "up", "v"}


def test_every_expression_selects_documented_series() -> None:
    exact, prefixes = _documented_names()
    exact |= EXTRA_SERIES
    prefixes += EXTRA_PREFIXES
    recorded = {e.title for e in rule_expressions() if ":" in e.title}
    assert "trayecto_consumer_lag" in exact
    assert "faststream_received_messages_total" in exact
    unknown = {
        (e.source, e.title, name)
        for e in dashboard_expressions() + rule_expressions()
        for name in metric_names(e.expr)
        if name not in recorded and not _allowed(name, exact, prefixes)
    }
    assert unknown == set()


def test_variable_queries_select_documented_series() -> None:
    exact, _ = _documented_names()
    for name in _dashboard_names():
        for variable in _variables(_dashboard(name)).values():
            query = variable["query"]
            text = query["query"] if isinstance(query, dict) else query
            match = re.fullmatch(r"label_values\((\w+)(\{.*\})?,\s*(\w+)\)", text)
            assert match, text
            assert match.group(1) in exact
            assert match.group(3) in _documented_series()[match.group(1)]


@needs_promtool
def test_every_expression_parses(tmp_path: Path) -> None:
    """promtool 2.42 has no `promql` subcommand: check them as recording rules instead."""
    expressions = dashboard_expressions() + rule_expressions()
    assert expressions
    rules = {
        "groups": [
            {
                "name": "inventory",
                "rules": [
                    {"record": f"inventory_check_{i}", "expr": e.expr}
                    for i, e in enumerate(expressions)
                ],
            }
        ]
    }
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump(rules))
    checked = _promtool_check_rules(path)
    output = checked.stdout + checked.stderr
    failing = [
        expressions[int(i)] for i in sorted(set(re.findall(r"inventory_check_(\d+)", output)))
    ]
    assert checked.returncode == 0, f"{output}\n{failing}"


@needs_promtool
def test_promtool_rejects_a_broken_expression(tmp_path: Path) -> None:
    path = tmp_path / "broken.yml"
    rule = {"record": "inventory_check_0", "expr": "sum(rate(x[5m])"}
    path.write_text(yaml.safe_dump({"groups": [{"name": "g", "rules": [rule]}]}))
    assert _promtool_check_rules(path).returncode != 0


# --------------------------------------------------------------------------- rules


@needs_promtool
def test_rule_files_pass_promtool() -> None:
    files = sorted(RULES.glob("*.yml"))
    assert files
    checked = _promtool_check_rules(*files)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_pipeline_alerts_exist() -> None:
    exprs = {rule["alert"]: rule["expr"] for _, rule in _alerts()}
    assert {
        "TrayectoServiceDown",
        "TrayectoConsumerLagGrowing",
        "TrayectoDeadLetters",
        "TrayectoDeliveryFailureRatio",
        "TrayectoOutboxStuck",
        "TrayectoTimersOverdue",
    } <= set(exprs)
    assert exprs["TrayectoDeadLetters"] == (
        'increase(trayecto_topic_messages{topic=~".*\\\\.dlq"}[5m]) > 0'
    )
    assert exprs["TrayectoTimersOverdue"] == "trayecto_timers_oldest_overdue_seconds > 300"
    assert exprs["TrayectoOutboxStuck"] == "trayecto_outbox_oldest_seconds > 60"


@pytest.mark.parametrize(
    ("source", "rule"), _alerts(), ids=lambda v: v if isinstance(v, str) else v["alert"]
)
def test_alert_follows_the_convention(source: str, rule: dict[str, Any]) -> None:
    assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["alert"]
    assert rule["labels"]["severity"] in SEVERITIES
    assert rule["annotations"]["summary"].strip()
    assert len(rule["annotations"]["description"].split()) >= 10, "say what to check"
    found = comparisons(rule["expr"])
    assert 1 <= len(found) <= 2
    for comparison in found:
        assert comparison.operator in ALERT_OPERATORS, rule["alert"]
        float(comparison.threshold)  # a number
        assert metric_names(comparison.measure), rule["alert"]


def test_alert_names_are_unique() -> None:
    names = [rule["alert"] for _, rule in _alerts()]
    assert len(names) == len(set(names))


# --------------------------------------------------------------------------- deployment


def test_prometheusrule_is_the_rule_files() -> None:
    documents = list(yaml.safe_load_all((K8S / "prometheusrule.yaml").read_text()))
    assert documents == [prometheus_rule()], (
        "deploy/k8s/prometheusrule.yaml is stale: run "
        "`python -m shared.promql prometheusrule > deploy/k8s/prometheusrule.yaml`"
    )


def test_prometheus_operator_resources_are_well_formed() -> None:
    documents = _k8s_documents()
    by_kind = {doc["kind"]: doc for doc in documents}
    monitor = by_kind["ServiceMonitor"]
    rule = by_kind["PrometheusRule"]
    for doc in (monitor, rule):
        assert doc["apiVersion"] == "monitoring.coreos.com/v1"
        assert set(doc) == {"apiVersion", "kind", "metadata", "spec"}
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", doc["metadata"]["name"])
    assert set(monitor["spec"]) <= {"selector", "endpoints", "namespaceSelector", "jobLabel"}
    assert set(rule["spec"]) == {"groups"}
    for group in rule["spec"]["groups"]:
        assert set(group) <= {"name", "interval", "rules", "limit"}
        for item in group["rules"]:
            assert set(item) <= {"alert", "record", "expr", "for", "labels", "annotations"}
            assert ("alert" in item) != ("record" in item)


def test_servicemonitor_scrapes_the_four_services() -> None:
    documents = _k8s_documents()
    monitor = next(doc for doc in documents if doc["kind"] == "ServiceMonitor")
    selector = monitor["spec"]["selector"]
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["path"] == "/metrics"
    assert endpoint["interval"] == "15s"

    def selected(labels: dict[str, str]) -> bool:
        if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
            return False
        for expression in selector.get("matchExpressions", []):
            assert expression["operator"] == "In"
            if labels.get(expression["key"]) not in expression["values"]:
                return False
        return True

    services = [doc for doc in documents if doc["kind"] == "Service"]
    chosen = {doc["metadata"]["name"] for doc in services if selected(doc["metadata"]["labels"])}
    assert chosen == {f"trayecto-{name}" for name in SERVICES}
    for doc in services:
        if doc["metadata"]["name"] in chosen:
            assert endpoint["port"] in {port["name"] for port in doc["spec"]["ports"]}


def test_services_and_pods_carry_the_scrape_annotations() -> None:
    documents = _k8s_documents()
    defaults = Settings()
    for name in SERVICES:
        port = str(defaults.service_port(name))
        owners = [
            doc
            for doc in documents
            if doc["kind"] in {"Service", "Deployment"}
            and doc["metadata"]["name"] == f"trayecto-{name}"
        ]
        assert {doc["kind"] for doc in owners} == {"Service", "Deployment"}
        for doc in owners:
            metadata = (
                doc["spec"]["template"]["metadata"]
                if doc["kind"] == "Deployment"
                else doc["metadata"]
            )
            annotations = metadata["annotations"]
            assert annotations["prometheus.io/scrape"] == "true", (name, doc["kind"])
            assert annotations["prometheus.io/port"] == port, (name, doc["kind"])
            assert annotations["prometheus.io/path"] == "/metrics", (name, doc["kind"])


def test_compose_provisions_dashboards_and_rules() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    prometheus_volumes = compose["prometheus"]["volumes"]
    assert "./deploy/prometheus/rules:/etc/prometheus/rules:ro" in prometheus_volumes
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.compose.yml").read_text())
    assert "/etc/prometheus/rules/*.yml" in config["rule_files"]
    grafana_volumes = compose["grafana"]["volumes"]
    assert "./deploy/grafana/dashboards:/var/lib/grafana/dashboards:ro" in grafana_volumes
    provider = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/dashboards/trayecto.yml").read_text()
    )
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
