"""deploy/: Kubernetes manifests validated against the Kubernetes schemas
(kubernetes-validate), and the rest checked for structure: the Dockerfile and compose file
(Docker does not run on this machine, so neither is built here), the systemd units, the
Grafana dashboard and the Prometheus rules — every `kush` command they run exists and
parses, every probe and health check asks /readyz, every name they point at is defined.
"""

from __future__ import annotations

import configparser
import json
import re
import shlex
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from kush.cli import COMMANDS, build_parser

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
KUBERNETES_VERSION = "1.30.0"
IMAGE = "kushfilms/edge:0.1.0"
KUSH_SERVICES = {"gateway", "admin", "worker", "edge"}


def _kush_parses(argv: list[str]) -> None:
    """`kush ...` as written in a deployment file: a known command whose options parse."""
    assert argv[0].endswith("kush"), argv
    assert argv[1] in {c.name for c in COMMANDS}, argv
    build_parser().parse_args(argv[1:])


def _k8s_docs() -> list[tuple[Path, dict[str, Any]]]:
    out = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        out += [(path, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return out


# ------------------------------------------------------------------ Kubernetes


@pytest.mark.parametrize(
    ("path", "doc"),
    _k8s_docs(),
    ids=lambda v: v.name if isinstance(v, Path) else v.get("kind", "?"),
)
def test_manifest_matches_the_kubernetes_schema(path: Path, doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_kustomization_lists_every_manifest_but_the_secret_template() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk - {"secret.example.yaml"}


def test_workloads_are_wired_together() -> None:
    docs = [doc for _, doc in _k8s_docs()]
    by_kind: dict[str, dict[str, dict[str, Any]]] = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], {})[doc["metadata"]["name"]] = doc
    deployments = by_kind["Deployment"]
    assert set(deployments) == KUSH_SERVICES
    config_names = set(by_kind["ConfigMap"])
    secret_names = set(by_kind["Secret"])
    for name, dep in deployments.items():
        spec = dep["spec"]
        template = spec["template"]
        labels = template["metadata"]["labels"]
        assert spec["selector"]["matchLabels"].items() <= labels.items(), name
        pod = template["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] != 0, name
        (container,) = pod["containers"]
        assert container["image"] == IMAGE, name
        _kush_parses(container["command"])
        assert container["command"][1] == name, name
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        for source in container.get("envFrom", []):
            if "configMapRef" in source:
                assert source["configMapRef"]["name"] in config_names
            if "secretRef" in source:
                assert source["secretRef"]["name"] in secret_names
        port_names = {p["name"] for p in container.get("ports", [])}
        if name != "worker":  # the worker serves only /metrics: no probes
            probe = container["readinessProbe"]["httpGet"]
            assert probe["path"] == "/readyz", name
            assert probe["port"] in port_names, name
    services = by_kind["Service"]
    assert set(services) == KUSH_SERVICES - {"worker"}
    for name, svc in services.items():
        dep = deployments[name]
        labels = dep["spec"]["template"]["metadata"]["labels"]
        assert svc["spec"]["selector"].items() <= labels.items(), name
        (container,) = dep["spec"]["template"]["spec"]["containers"]
        names = {p["name"] for p in container["ports"]}
        assert all(p["targetPort"] in names for p in svc["spec"]["ports"]), name
    (hpa,) = by_kind["HorizontalPodAutoscaler"].values()
    assert hpa["spec"]["scaleTargetRef"]["kind"] == "Deployment"
    assert hpa["spec"]["scaleTargetRef"]["name"] == "gateway"
    assert hpa["spec"]["minReplicas"] >= 2
    # the edge reaches the gateway Service on its port
    (edge,) = deployments["edge"]["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in edge["env"]}
    host, port = env["KUSH_EDGE_UPSTREAM"].rsplit(":", 1)
    assert host.split(".")[0] in services
    assert int(port) in {p["port"] for p in services[host.split(".")[0]]["spec"]["ports"]}
    assert services["edge"]["spec"]["externalTrafficPolicy"] == "Local"


# ------------------------------------------------------------------ Docker


def test_dockerfile_is_slim_non_root_and_uses_the_lock() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+(\S+)", text, flags=re.M)
    assert stages
    assert all("slim" in image for image in stages)
    users = re.findall(r"^USER\s+(\S+)", text, flags=re.M)
    assert users
    assert users[-1].split(":")[0] not in {"0", "root"}
    assert "-c requirements/lock.txt" in text
    assert "nginx" in text  # the edge role runs nginx
    assert "COPY nginx/" in text
    for copied in re.findall(r"^COPY\s+(?!--from)(\S+)", text, flags=re.M):
        assert (ROOT / copied).exists() or copied == "requirements/", copied
    assert re.search(r"^CMD \[\"kush\"", text, flags=re.M)


def test_compose_runs_every_role_with_readyz_health_checks() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert {"postgres", "redis", "minio", *KUSH_SERVICES} <= set(services)
    redis_cmd = " ".join(services["redis"]["command"])
    assert "--appendonly yes" in redis_cmd
    build = services["gateway"]["build"]
    assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == DEPLOY / "Dockerfile"
    ports = {"gateway": 8080, "admin": 8081, "edge": 8088}
    for name, service in services.items():
        for dep in service.get("depends_on", {}):
            assert dep in services, (name, dep)
        for volume in service.get("volumes", []):
            assert volume.split(":")[0] in compose["volumes"], (name, volume)
        command = service.get("command")
        if name in KUSH_SERVICES or name == "migrate":
            _kush_parses([re.sub(r"\$\{GATEWAY_WORKERS:-(\d+)\}", r"\1", c) for c in command])
            assert service["image"] == "kushfilms/edge:${KUSH_VERSION:-0.1.0}"
        if name in ports:
            check = " ".join(service["healthcheck"]["test"])
            assert f"127.0.0.1:{ports[name]}/readyz" in check, name
    edge_env = services["edge"]["environment"]
    assert edge_env["KUSH_EDGE_UPSTREAM"] == "gateway:8080"
    assert services["edge"]["ports"] == ["8088:8088"]
    # the gateway trusts the compose network (where the edge is) for X-Forwarded-For
    subnet = compose["networks"]["kush"]["ipam"]["config"][0]["subnet"]
    assert services["gateway"]["environment"]["KUSH_TRUSTED_PROXIES"] == subnet


# ------------------------------------------------------------------ systemd


def test_systemd_units() -> None:
    units = sorted((DEPLOY / "systemd").glob("*.service"))
    assert {u.stem for u in units} == {f"kush-{s}" for s in KUSH_SERVICES} | {"kush-migrate"}
    for unit in units:
        parser = configparser.ConfigParser(strict=False, interpolation=None)
        parser.optionxform = str  # type: ignore[assignment,method-assign]
        parser.read_string(unit.read_text())
        assert {"Unit", "Service", "Install"} <= set(parser.sections()), unit.name
        service = parser["Service"]
        assert service["User"] == "kush", unit.name
        assert service["EnvironmentFile"] == "/etc/kush/kush.env"
        assert service["NoNewPrivileges"] == "yes"
        _kush_parses(shlex.split(service["ExecStart"]))
    env = (DEPLOY / "systemd" / "kush.env.example").read_text()
    assert "KUSH_TRUSTED_PROXIES=127.0.0.1/32" in env


# ------------------------------------------------------------------ observability


def _metric_names(text: str) -> set[str]:
    names = set(re.findall(r"\b(kush_[a-z_]+?)(?:_bucket|_count|_sum)?\b", text))
    return {n for n in names if not n.startswith("kush_http_request_duration_seconds_")}


def _source_text() -> str:
    packages = ("gateway", "admin", "runtime", "origin", "tokens", "kush")
    return "\n".join(p.read_text() for pkg in packages for p in (ROOT / pkg).rglob("*.py"))


def test_dashboard_and_alerts_use_known_metrics() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "kush-dashboard.json").read_text())
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert all(exprs)
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for topic in ("segment", "latency", "error", "cache hit", "sessions", "queue"):
        assert topic in titles, topic
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    alerts = [r for g in rules["groups"] for r in g["rules"]]
    for rule in alerts:
        assert rule["alert"]
        assert rule["expr"]
        assert rule["annotations"]["summary"]
        assert rule["labels"]["severity"] in {"page", "ticket"}
    by_name = {r["alert"]: r["expr"] for r in alerts}
    assert "> 0.001" in by_name["KushErrorRateHigh"]
    assert "> 0.1" in by_name["KushSegmentLatencyP99High"]
    assert "kush_origin_breaker_open" in by_name["KushOriginBreakerOpen"]
    source = _source_text()
    used = _metric_names("\n".join(exprs)) | _metric_names("\n".join(by_name.values()))
    for name in used:
        assert f'"{name.removesuffix("_total")}' in source or f'"{name}"' in source, name


def _exported_labels() -> dict[str, set[str]]:
    """Every kush_* metric the gateway, admin and worker register, with its labels
    (``pid`` for the per-process gauges of multiprocess mode)."""
    from gateway.metrics import GatewayMetrics, OriginExporter
    from kush.worker import watch_queues
    from origin import S3Origin
    from runtime.jobs import WorkerContext
    from runtime.metrics import Metrics
    from runtime.settings import Settings

    gateway = Metrics("gateway")
    GatewayMetrics(gateway)
    origin = S3Origin(
        endpoint_url="http://127.0.0.1:9", bucket="b", access_key_id="k", secret_access_key="s"
    )
    OriginExporter(origin, gateway.registry)
    worker = WorkerContext(Settings(), None, None)  # type: ignore[arg-type]
    watch_queues(worker)
    labels: dict[str, set[str]] = {}
    for registry in (gateway.registry, worker.metrics.registry):
        for metric in set(registry._names_to_collectors.values()):
            name = getattr(metric, "_name", "")
            if name.startswith("kush_"):
                labels[name] = set(getattr(metric, "_labelnames", ()))
    return labels


def test_dashboard_and_alerts_use_exported_labels() -> None:
    """Each label a selector or a `by (...)` names is one the metrics carry."""
    dashboard = json.loads((DEPLOY / "grafana" / "kush-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    exprs += [r["expr"] for g in rules["groups"] for r in g["rules"]]
    exported = _exported_labels()
    checked = 0
    for expr in exprs:
        names = {n.removesuffix("_total") for n in _metric_names(expr)}
        if not names:
            continue  # Loki, or `up`
        known = set().union(*(exported[n] for n in names))
        for selector in re.findall(r"kush_[a-z_]+\{([^}]*)\}", expr):
            for label in re.findall(r"(\w+)\s*[=!]~?", selector):
                assert label in known, (label, expr)
                checked += 1
        for grouping in re.findall(r"\bby \(([^)]*)\)", expr):
            for label in (x.strip() for x in grouping.split(",")):
                assert label in known | {"le"}, (label, expr)
                checked += 1
    assert checked > 10


def test_every_kush_service_is_scraped() -> None:
    """The static scrape configuration lists the gateway, admin and worker ports, and
    the worker's pod is annotated for scraping on the port it listens on."""
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    for job, port in (("kush-gateway", 8080), ("kush-admin", 8081), ("kush-worker", 8082)):
        assert jobs[job]["static_configs"][0]["targets"] == [f"127.0.0.1:{port}"]
    (worker,) = [
        doc
        for _, doc in _k8s_docs()
        if doc["kind"] == "Deployment" and doc["metadata"]["name"] == "worker"
    ]
    template = worker["spec"]["template"]
    (container,) = template["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    annotations = template["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == ports["metrics"]
    assert int(env["KUSH_WORKER_METRICS_PORT"]) == ports["metrics"]
