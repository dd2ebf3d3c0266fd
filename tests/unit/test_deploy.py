"""The deploy targets these machines cannot run are checked against their schemas.

docker-compose.yml against the Compose Specification JSON schema (vendored by
check-jsonschema), deploy/k8s/ against the Kubernetes OpenAPI schemas
(kubernetes-validate), and both against the settings and routes they refer to.
"""

from __future__ import annotations

import copy
import importlib
import importlib.resources
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from shared.promql import dashboard_panels
from shared.settings import SERVICES, Settings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
SETTING_VARS = {f"TRAYECTO_{name.upper()}" for name in Settings.model_fields}
CUSTOM_RESOURCES = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
}
"""Prometheus Operator kinds: kubernetes-validate has no schema for CRDs, so
tests/unit/test_dashboards.py checks these structurally instead."""


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def _compose_errors(document: dict[str, Any]) -> list[str]:
    schema_file = (
        importlib.resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    )
    validator = jsonschema.Draft202012Validator(json.loads(schema_file.read_text()))
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(document)
    ]


def _k8s_documents() -> list[tuple[str, dict[str, Any]]]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    return [
        (name, document)
        for name in kustomization["resources"]
        for document in yaml.safe_load_all((K8S / name).read_text())
        if document
    ]


def _k8s_errors(document: dict[str, Any]) -> str | None:
    try:
        kubernetes_validate.validate(document, kubernetes_validate.latest_version(), strict=True)
    except kubernetes_validate.ValidationError as exc:
        return str(exc)
    return None


def test_compose_file_follows_the_compose_specification() -> None:
    assert _compose_errors(_compose()) == []


@pytest.mark.parametrize(
    ("path", "bad_value"),
    [
        (("services", "kafka", "ports"), {"19092": "19092"}),
        (("services", "init", "depends_on", "kafka", "condition"), "service_ready"),
        (("services", "postgres", "imagee"), "postgres:15"),
    ],
)
def test_compose_validation_rejects_a_broken_file(path: tuple[str, ...], bad_value: Any) -> None:
    document = copy.deepcopy(_compose())
    node = document
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = bad_value
    assert _compose_errors(document), f"a broken {'.'.join(path)} passed validation"


def test_compose_runs_each_service_on_its_port_with_known_settings() -> None:
    services = _compose()["services"]
    defaults = Settings()
    for name in SERVICES:
        service = services[name]
        assert service["command"] == ["serve", name]
        port = defaults.service_port(name)
        assert f"{port}:{port}" in service["ports"]
        assert f"127.0.0.1:{port}/healthz" in " ".join(service["healthcheck"]["test"])
        assert service["depends_on"]["init"]["condition"] == "service_completed_successfully"
    assert services["init"]["command"][0] == "init"
    for name, service in services.items():
        unknown = {
            var
            for var in service.get("environment", {})
            if var.startswith("TRAYECTO_") and var not in SETTING_VARS
        }
        assert not unknown, f"{name} sets variables no setting reads: {unknown}"


def test_compose_runs_the_infrastructure_the_services_need() -> None:
    services = _compose()["services"]
    images = {name: str(service.get("image", "")) for name, service in services.items()}
    kinds = {image.split(":")[0] for image in images.values()}
    assert {"apache/kafka", "postgres", "prom/prometheus", "grafana/grafana"} <= kinds
    # Every service's image is the one Trayecto image the Dockerfile builds.
    assert {images[name] for name in SERVICES} == {"trayecto:latest"}


def test_dockerfile_copies_what_exists_and_runs_the_cli() -> None:
    text = (ROOT / "Dockerfile").read_text()
    for source in re.findall(r"^COPY (?!--)(.+) \S+$", text, re.MULTILINE):
        for part in source.split():
            assert (ROOT / part).exists(), f"Dockerfile copies missing {part}"
    assert 'ENTRYPOINT ["trayecto"]' in text


def test_kustomization_lists_every_manifest() -> None:
    listed = set(yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk


def test_k8s_manifests_validate_against_kubernetes_schemas() -> None:
    errors = {
        f"{name}:{doc['kind']}/{doc['metadata']['name']}": error
        for name, doc in _k8s_documents()
        if (doc["apiVersion"], doc["kind"]) not in CUSTOM_RESOURCES
        and (error := _k8s_errors(doc)) is not None
    }
    assert errors == {}


def test_k8s_custom_resources_skipped_by_validation_are_all_used() -> None:
    """Any other CRD kind fails the schema validation above (no schema found)."""
    used = {(doc["apiVersion"], doc["kind"]) for _, doc in _k8s_documents()}
    assert used >= CUSTOM_RESOURCES


def test_k8s_validation_rejects_a_broken_deployment() -> None:
    deployment = next(
        doc
        for name, doc in _k8s_documents()
        if name == "ingest.yaml" and doc["kind"] == "Deployment"
    )
    misspelt = copy.deepcopy(deployment)
    misspelt["spec"]["replica"] = misspelt["spec"].pop("replicas")
    wrong_type = copy.deepcopy(deployment)
    wrong_type["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "http"
    assert _k8s_errors(misspelt) is not None
    assert _k8s_errors(wrong_type) is not None


def test_k8s_workloads_match_the_services() -> None:
    documents = [doc for _, doc in _k8s_documents()]
    deployments = {d["metadata"]["name"]: d for d in documents if d["kind"] == "Deployment"}
    config = next(d for d in documents if d["kind"] == "ConfigMap")["data"]
    secret = next(d for d in documents if d["kind"] == "Secret")["stringData"]
    assert set(config) | set(secret) <= SETTING_VARS
    assert "TRAYECTO_DATABASE_URL" in secret
    assert "TRAYECTO_DATABASE_URL" not in config
    defaults = Settings()
    for name in SERVICES:
        container = deployments[f"trayecto-{name}"]["spec"]["template"]["spec"]["containers"][0]
        assert container["args"] == ["serve", name]
        assert container["ports"][0]["containerPort"] == defaults.service_port(name)
        routes = _routes(name, defaults)
        assert container["readinessProbe"]["httpGet"]["path"] in routes
        assert container["livenessProbe"]["httpGet"]["path"] in routes
    scaled = {
        d["spec"]["scaleTargetRef"]["name"]
        for d in documents
        if d["kind"] == "HorizontalPodAutoscaler"
    }
    assert scaled == {"trayecto-orchestrator", "trayecto-delivery"}
    budgets = {d["metadata"]["name"] for d in documents if d["kind"] == "PodDisruptionBudget"}
    assert budgets == {f"trayecto-{name}" for name in SERVICES}


def _routes(service: str, settings: Settings) -> set[str]:
    app = importlib.import_module(f"services.{service}").create_app(settings)
    return {getattr(route, "path", "") for route in app.routes}


def test_grafana_dashboards_use_the_provisioned_datasource() -> None:
    provisioned = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text()
    )
    uids = {source["uid"] for source in provisioned["datasources"]}
    dashboards = [
        json.loads(p.read_text()) for p in (ROOT / "deploy/grafana/dashboards").glob("*.json")
    ]
    assert dashboards
    assert len({d["uid"] for d in dashboards}) == len(dashboards)
    for dashboard in dashboards:
        for panel in dashboard_panels(dashboard):
            if panel["type"] == "row":
                continue
            assert panel["datasource"]["uid"] in uids, (dashboard["uid"], panel["title"])
            for target in panel["targets"]:
                assert target["datasource"]["uid"] in uids, (dashboard["uid"], panel["title"])


@pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool comes with `trayecto stack up`"
)
def test_prometheus_rules_and_compose_config_pass_promtool() -> None:
    rules = sorted((ROOT / "deploy/prometheus/rules").glob("*.yml"))
    assert rules
    checked = subprocess.run(
        ["promtool", "check", "rules", *map(str, rules)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool comes with `trayecto stack up`"
)
def test_prometheus_compose_config_passes_promtool(tmp_path: Path) -> None:
    """The compose config, with its rule_files pointed at the mounted rules directory."""
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.compose.yml").read_text())
    mount = next(
        volume
        for volume in _compose()["services"]["prometheus"]["volumes"]
        if volume.startswith("./deploy/prometheus/rules:")
    )
    container_dir = mount.split(":")[1]
    assert config["rule_files"], "prometheus.compose.yml loads no rules"
    local_dir = ROOT / "deploy/prometheus/rules"
    rule_files = []
    for pattern in config["rule_files"]:
        assert pattern.startswith(container_dir + "/"), f"{pattern} is not in the mounted rules"
        rule_files.append(str(local_dir / pattern.removeprefix(container_dir + "/")))
    assert any(local_dir.glob(Path(pattern).name) for pattern in config["rule_files"])
    config["rule_files"] = rule_files
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    checked = subprocess.run(
        ["promtool", "check", "config", str(tmp_path / "prometheus.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
