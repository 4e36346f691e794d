"""The Helm chart (helm/kvyard), rendered and linted by the real Helm library.

PyPI ``helm-python-sdk`` embeds Helm v4's Go library (ctypes), so no ``helm`` binary is needed:
rendering applies values.schema.json and the templates exactly as ``helm template`` would.
Every rendered manifest is then checked against the Kubernetes schemas (strict) or its CRD
schema, and the RayService's serveConfigV2 against Ray Serve's schema and kvyard's AppConfig.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml
from ray.serve.schema import (
    HTTPOptionsSchema,
    ServeApplicationSchema,
    ServeDeploySchema,
)

from kvyard.config import AppConfig
from tests.deploy import k8s, values_schema

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "kvyard"
RELEASE, NAMESPACE = "kvyard", "llm"
KUBE_VERSION = "v1.31.0"

EXTERNAL_REDIS = "redis://:secret@redis.shared.svc:6379/2"
OVERRIDE: dict[str, Any] = {
    "redis": {"enabled": False, "externalUrl": EXTERNAL_REDIS},
    "gateway": {"enabled": True},
    "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
    "otel": {
        "enabled": True,
        "resourceAttributes": {"deployment.environment": "prod"},
        "serveTracing": {"exporterImportPath": "my_tracing:span_processors", "samplingRatio": 0.5},
    },
    "ingress": {"tls": {"enabled": True}, "timeoutSeconds": 7200, "annotations": {"cert-manager.io/cluster-issuer": "letsencrypt"}},
    "imagePullSecrets": [{"name": "regcred"}],
    "image": {"repository": "registry.example.com/kvyard", "tag": "abc123"},
    "models": {"volume": {"persistentVolumeClaim": {"claimName": "models"}}, "download": {"hfTokenSecret": "hf"}},
    "head": {"env": [{"name": "KVYARD_EXTRA", "value": "1"}]},
    "app": {"frontend": {"max_request_bytes": 33554432, "api_keys": ["sk-test"], "replicas": 2}},
}
AGGREGATED: dict[str, Any] = {"app": {"mode": "aggregated"}}


def render(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    with helm.Chart.load(str(CHART)) as chart:
        out = chart.render(values=values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    docs = []
    for path, text in sorted(out.items()):
        if path.endswith(".yaml"):
            docs += [d for d in yaml.safe_load_all(text) if d]
    return docs


def notes(values: dict[str, Any] | None = None) -> str:
    with helm.Chart.load(str(CHART)) as chart:
        return chart.render(values=values, name=RELEASE, namespace=NAMESPACE, is_install=True)["kvyard/templates/NOTES.txt"]


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"{len(found)} {kind} {name or ''}"
    return found[0]


def kinds(docs: list[dict[str, Any]]) -> list[str]:
    return sorted(d["kind"] for d in docs)


def serve_config(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return yaml.safe_load(one(docs, "RayService")["spec"]["serveConfigV2"])


def ray_containers(rs: dict[str, Any]) -> list[dict[str, Any]]:
    return [t["spec"]["containers"][0] for _, t in k8s.pod_templates(rs)]


@pytest.fixture(scope="module")
def default_docs():
    return render()


@pytest.fixture(scope="module")
def override_docs():
    return render(OVERRIDE)


@pytest.fixture(scope="module")
def aggregated_docs():
    return render(AGGREGATED)


CASES = ["default_docs", "override_docs", "aggregated_docs"]


# --- rendering, lint, schemas --------------------------------------------------------------


def test_default_render_has_the_expected_objects(default_docs):
    assert kinds(default_docs) == ["ConfigMap", "Deployment", "Ingress", "RayService", "Service"]


def test_override_render_has_the_expected_objects(override_docs):
    # External Redis: no Redis Deployment/Service; gateway and monitoring (its metrics Service) on.
    assert kinds(override_docs) == ["ConfigMap", "HTTPRoute", "Ingress", "RayService", "Service", "ServiceMonitor"]


@pytest.mark.parametrize("values", [None, OVERRIDE, AGGREGATED], ids=["default", "override", "aggregated"])
def test_lint_is_clean(values):
    report = helm.lint(str(CHART), values, strict=True, kube_version=KUBE_VERSION)
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []  # warnings and errors


def test_lint_reports_bad_values():
    report = helm.lint(str(CHART), {"app": {"modle": {}}}, strict=True, kube_version=KUBE_VERSION)
    assert report["errors"] and any(m["severity"] == 3 for m in report["messages"])


@pytest.mark.parametrize("case", CASES)
def test_manifests_validate_against_kubernetes_and_crd_schemas(case, request):
    docs = request.getfixturevalue(case)
    assert [e for d in docs for e in k8s.errors(d)] == []


@pytest.mark.parametrize(
    "breakage",
    [
        lambda docs: one(docs, "Ingress")["spec"]["rules"][0].__setitem__("hots", "x"),
        lambda docs: one(docs, "Service")["spec"]["ports"][0].__setitem__("port", "6379"),
        lambda docs: one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0].__setitem__("args", "--port"),
        lambda docs: one(docs, "RayService")["spec"]["rayClusterConfig"]["workerGroupSpecs"][0].__setitem__("minReplica", 1),
        lambda docs: one(docs, "RayService")["spec"]["rayClusterConfig"]["headGroupSpec"]["rayStartParams"].__setitem__("num-gpus", 0),
        lambda docs: one(docs, "RayService")["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]["containers"][0].__setitem__("imagePullPolicy", 3),
        lambda docs: one(docs, "RayService")["metadata"].__setitem__("lables", {}),
    ],
    ids=["ingress typo", "service port string", "container args string", "worker group typo", "rayStartParams int", "pod field type", "metadata typo"],
)
def test_schema_checks_catch_a_broken_manifest(default_docs, breakage):
    docs = copy.deepcopy(default_docs)
    breakage(docs)
    assert [e for d in docs for e in k8s.errors(d)]


def test_crd_checks_catch_broken_custom_resources(override_docs):
    docs = copy.deepcopy(override_docs)
    one(docs, "HTTPRoute")["spec"]["rules"][0]["backendRefs"][0]["port"] = "8000"
    one(docs, "ServiceMonitor")["spec"]["endpoints"][0]["pathh"] = "/metrics"
    assert len([e for d in docs for e in k8s.errors(d)]) == 2


@pytest.mark.parametrize("case", CASES)
def test_rayservice_passes_kuberay_validation(case, request):
    assert k8s.kuberay_errors(one(request.getfixturevalue(case), "RayService")) == []


def test_kuberay_validation_catches_a_bad_group(default_docs):
    rs = copy.deepcopy(one(default_docs, "RayService"))
    rs["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["resources"] = {"prefill": "8"}
    rs["spec"]["rayClusterConfig"]["workerGroupSpecs"][1]["minReplicas"] = 5
    assert len(k8s.kuberay_errors(rs)) == 3  # both resource forms; min > max; replicas < min


def test_values_schema_is_current():
    # app's part is kvyard's AppConfig: regenerate with `python -m tests.deploy.values_schema`.
    assert json.loads((CHART / "values.schema.json").read_text()) == values_schema.build()


@pytest.mark.parametrize(
    "values, message",
    [
        ({"app": {"modle": {}}}, "additional properties 'modle' not allowed"),
        ({"app": {"engine": {"device": "tpu"}}}, "/app/engine/device"),
        ({"workerGroups": {"prefill": {"gpus": "eight"}}}, "/workerGroups/prefill/gpus"),
        ({"ingres": {"enabled": False}}, "additional properties 'ingres' not allowed"),
        ({"redis": {"enabled": False, "externalUrl": "localhost:6379"}}, "/redis/externalUrl"),
    ],
    ids=["app typo", "app enum", "gpus type", "top-level typo", "redis url"],
)
def test_values_schema_rejects_bad_values(values, message):
    with pytest.raises(helm.HelmValuesError, match=message):
        render(values)


@pytest.mark.parametrize(
    "values, message",
    [
        ({"redis": {"externalUrl": EXTERNAL_REDIS}}, "not both"),
        ({"app": {"prefill": {"replicas": 9}}}, "app.prefill asks for 9 GPUs"),
        ({"workerGroups": {"decode": {"customResources": {"decode": 4}}}}, 'Ray resource "decode"'),
        ({"workerGroups": {"prefill": {"customResources": {"prefill": None}}}}, 'Ray resource "prefill"'),
        ({"app": {"model": {"path": "/data/Qwen3-32B"}}}, "must lie under models.mountPath"),
        ({"app": {"model": {"path": "/models/other"}}}, "models.mountPath/models.download.dir"),
    ],
    ids=["two redis", "gpus", "custom resource short", "custom resource missing", "model outside mount", "model not downloaded"],
)
def test_chart_refuses_values_that_cannot_run(values, message):
    with pytest.raises(helm.HelmRenderError, match=message):
        render(values)


# --- serveConfigV2: the same AppConfig document ---------------------------------------------


@pytest.mark.parametrize("case", CASES)
def test_serve_config_parses_with_ray_serve_and_kvyard(case, request):
    data = serve_config(request.getfixturevalue(case))
    schema = ServeDeploySchema.model_validate(data)
    assert set(data) <= set(ServeDeploySchema.model_fields)
    assert set(data["http_options"]) <= set(HTTPOptionsSchema.model_fields)
    assert set(data["applications"][0]) <= set(ServeApplicationSchema.model_fields)
    (app,) = schema.applications
    assert app.import_path == "kvyard.deployments.builder:build_app"
    assert app.route_prefix == "/"
    assert schema.http_options.port == 8000
    AppConfig.model_validate(app.args)


def test_default_app_is_the_gpu_serve_config_with_in_chart_redis(default_docs):
    args = serve_config(default_docs)["applications"][0]["args"]
    gpu = yaml.safe_load((ROOT / "cluster" / "serve" / "gpu-disaggregated.yaml").read_text())["applications"][0]["args"]
    assert args["redis_url"] == f"redis://{RELEASE}-redis.{NAMESPACE}.svc:6379/0"
    assert AppConfig.model_validate({**args, "redis_url": None}) == AppConfig.model_validate(gpu)
    redis_svc = one(default_docs, "Service", f"{RELEASE}-redis")
    assert redis_svc["spec"]["ports"][0]["port"] == 6379
    deployment = one(default_docs, "Deployment", f"{RELEASE}-redis")
    assert deployment["spec"]["template"]["metadata"]["labels"].items() >= redis_svc["spec"]["selector"].items()


def test_override_app_uses_external_redis_and_tracing(override_docs):
    data = serve_config(override_docs)
    args = data["applications"][0]["args"]
    assert args["redis_url"] == EXTERNAL_REDIS
    assert args["frontend"] == {"max_request_bytes": 33554432, "api_keys": ["sk-test"], "replicas": 2, "num_cpus": 8}
    assert data["tracing_config"] == {"enabled": True, "exporter_import_path": "my_tracing:span_processors", "sampling_ratio": 0.5}
    assert "tracing_config" not in serve_config(render({"otel": {"serveTracing": {"exporterImportPath": "x:y"}}}))


def test_without_chart_redis_the_app_keeps_its_own_redis_url():
    args = serve_config(render({"redis": {"enabled": False}}))["applications"][0]["args"]
    assert AppConfig.model_validate(args).redis_url is None  # Helm drops null values
    own = "redis://redis.elsewhere:6379/0"
    args = serve_config(render({"redis": {"enabled": False}, "app": {"redis_url": own}}))["applications"][0]["args"]
    assert args["redis_url"] == own


def test_aggregated_mode_renders_only_the_decode_group(aggregated_docs):
    rs = one(aggregated_docs, "RayService")
    assert [g["groupName"] for g in rs["spec"]["rayClusterConfig"]["workerGroupSpecs"]] == ["decode"]
    assert AppConfig.model_validate(serve_config(aggregated_docs)["applications"][0]["args"]).mode == "aggregated"


# --- Ray cluster shape ----------------------------------------------------------------------


def test_worker_groups_are_gpu_pools_placed_by_custom_resources(default_docs):
    rs = one(default_docs, "RayService")
    args = AppConfig.model_validate(serve_config(default_docs)["applications"][0]["args"])
    groups = {g["groupName"]: g for g in rs["spec"]["rayClusterConfig"]["workerGroupSpecs"]}
    assert set(groups) == {"prefill", "decode"}
    for role, pool in (("prefill", args.prefill), ("decode", args.decode)):
        group = groups[role]
        advertised = json.loads(group["rayStartParams"]["resources"].strip("'\""))
        assert advertised == {role: 8}
        spec = group["template"]["spec"]
        container = spec["containers"][0]
        assert container["resources"]["limits"]["nvidia.com/gpu"] == 8
        assert spec["nodeSelector"] == {"node.kubernetes.io/instance-type": "p6-b200.48xlarge"}
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
        # Every replica of the pool finds its custom resource and its GPU in this group only.
        assert pool.resources == {role: 1}
        assert pool.replicas * pool.resources[role] <= group["replicas"] * advertised[role]
        assert pool.replicas * pool.num_gpus <= group["replicas"] * 8
    head = rs["spec"]["rayClusterConfig"]["headGroupSpec"]
    assert "resources" not in head["rayStartParams"] and head["rayStartParams"]["num-gpus"] == "0"


def test_every_ray_pod_mounts_the_model_under_app_model_path(default_docs):
    rs = one(default_docs, "RayService")
    model_path = serve_config(default_docs)["applications"][0]["args"]["model"]["path"]
    for where, template in k8s.pod_templates(rs):
        mounts = {m["name"]: m["mountPath"] for m in template["spec"]["containers"][0]["volumeMounts"]}
        assert model_path.startswith(mounts["models"] + "/"), where
        (init,) = template["spec"]["initContainers"]
        env = {e["name"]: e.get("value") for e in init["env"]}
        assert env["KVYARD_MODEL_DIR"] == model_path
        assert ("KVYARD_MODEL_PATTERNS" in env) == where.endswith("headGroupSpec/template"), where


def test_image_and_pull_secrets_apply_to_every_ray_container(override_docs):
    rs = one(override_docs, "RayService")
    for _, template in k8s.pod_templates(rs):
        assert template["spec"]["imagePullSecrets"] == [{"name": "regcred"}]
        for c in template["spec"]["containers"] + template["spec"]["initContainers"]:
            assert c["image"] == "registry.example.com/kvyard:abc123"


# --- traffic: ingress, HTTPRoute, ServiceMonitor -------------------------------------------


def test_ingress_is_fit_for_long_sse_streams_and_targets_the_serve_service(default_docs):
    rs = one(default_docs, "RayService")
    serve_svc = rs["spec"]["serveService"]
    ingress = one(default_docs, "Ingress")
    a = ingress["metadata"]["annotations"]
    assert a["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
    assert a["nginx.ingress.kubernetes.io/proxy-request-buffering"] == "off"
    assert a["nginx.ingress.kubernetes.io/proxy-read-timeout"] == "3600"
    assert a["nginx.ingress.kubernetes.io/proxy-send-timeout"] == "3600"
    max_body = AppConfig.model_validate(serve_config(default_docs)["applications"][0]["args"]).frontend.max_request_bytes
    assert a["nginx.ingress.kubernetes.io/proxy-body-size"] == str(max_body)
    assert ingress["spec"]["ingressClassName"] == "nginx"
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": serve_svc["metadata"]["name"], "port": {"number": 8000}}
    assert serve_svc["spec"]["ports"] == [{"name": "serve", "port": 8000}]
    head_ports = {p["name"]: p["containerPort"] for p in ray_containers(rs)[0]["ports"]}
    assert head_ports["serve"] == 8000


def test_ingress_override_keeps_sse_settings_and_adds_tls(override_docs):
    ingress = one(override_docs, "Ingress")
    a = ingress["metadata"]["annotations"]
    assert a["nginx.ingress.kubernetes.io/proxy-read-timeout"] == "7200"
    assert a["nginx.ingress.kubernetes.io/proxy-body-size"] == "33554432"
    assert a["cert-manager.io/cluster-issuer"] == "letsencrypt"
    assert ingress["spec"]["tls"] == [{"hosts": ["kvyard.example.com"], "secretName": "kvyard-tls"}]
    assert "https://kvyard.example.com/v1" in notes(OVERRIDE)


def test_httproute_targets_the_serve_service(override_docs):
    serve_svc = one(override_docs, "RayService")["spec"]["serveService"]
    route = one(override_docs, "HTTPRoute")
    (rule,) = route["spec"]["rules"]
    assert rule["backendRefs"] == [{"name": serve_svc["metadata"]["name"], "port": 8000}]
    assert rule["timeouts"] == {"request": "3600s"}
    assert route["spec"]["parentRefs"] == [{"name": "gateway", "namespace": "gateway-system"}]


def test_servicemonitor_scrapes_only_the_head_s_serve_port(override_docs):
    """/metrics answers for the whole cluster, so one target: a Service over the head pod alone."""
    monitor = one(override_docs, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    services = [d for d in override_docs if d["kind"] == "Service"]
    (metrics_svc,) = [s for s in services if monitor["spec"]["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()]
    serve_svc = one(override_docs, "RayService")["spec"]["serveService"]
    assert not monitor["spec"]["selector"]["matchLabels"].items() <= serve_svc["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    (port,) = [p for p in metrics_svc["spec"]["ports"] if p["name"] == endpoint["port"]]
    assert endpoint["path"] == "/metrics"
    cluster = one(override_docs, "RayService")["spec"]["rayClusterConfig"]
    head = cluster["headGroupSpec"]["template"]
    assert metrics_svc["spec"]["selector"].items() <= head["metadata"]["labels"].items()
    (container,) = head["spec"]["containers"]
    assert port["targetPort"] in {p["name"] for p in container["ports"] if p["containerPort"] == 8000}
    for group in cluster["workerGroupSpecs"]:
        assert not metrics_svc["spec"]["selector"].items() <= group["template"]["metadata"]["labels"].items()


# --- OpenTelemetry --------------------------------------------------------------------------


def test_otel_settings_reach_every_ray_container(override_docs, default_docs):
    for c in ray_containers(one(override_docs, "RayService")):
        env = {e["name"]: e.get("value") for e in c["env"]}
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://opentelemetry-collector.observability.svc:4317"
        assert env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "grpc"
        assert env["OTEL_SERVICE_NAME"] == "kvyard"
        attrs = dict(kv.split("=", 1) for kv in env["OTEL_RESOURCE_ATTRIBUTES"].split(","))
        assert attrs == {"k8s.namespace.name": NAMESPACE, "k8s.pod.name": "$(KVYARD_POD_NAME)", "deployment.environment": "prod"}
        names = [e["name"] for e in c["env"]]
        assert names.index("KVYARD_POD_NAME") < names.index("OTEL_RESOURCE_ATTRIBUTES")  # $(VAR) needs order
    head_env = {e["name"] for e in ray_containers(one(override_docs, "RayService"))[0]["env"]}
    assert "KVYARD_EXTRA" in head_env
    for c in ray_containers(one(default_docs, "RayService")):
        assert not any(e["name"].startswith("OTEL_") for e in c.get("env", []))


def test_notes_name_the_operator_prerequisite_and_the_base_urls(default_docs):
    text = notes()
    assert "KubeRay operator" in text and "kuberay/kuberay-operator" in text
    assert "ANTHROPIC_BASE_URL=http://kvyard.example.com" in text
    assert "http://kvyard.example.com/v1" in text


# --- Grafana dashboard ----------------------------------------------------------------------


def test_dashboard_file_is_current():
    from tests.deploy import dashboard

    assert dashboard.DASHBOARD_PATH.read_text() == dashboard.render(), "run: python -m tests.deploy.dashboard"


def test_dashboard_configmap_ships_the_dashboard(default_docs):
    import json as _json
    import re

    from kvyard import metrics

    cm = one(default_docs, "ConfigMap", f"{RELEASE}-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    board = _json.loads(cm["data"]["kvyard.json"])
    exprs = [t["expr"] for p in board["panels"] for t in p["targets"]]
    assert len(board["panels"]) >= 12 and exprs
    exported = {m.name for m in metrics.REGISTRY.collect()}  # counters drop their _total in .name
    engine = {series for series, *_ in metrics.ENGINE_SERIES}  # rendered by metrics.render_engines
    for expr in exprs:
        for name in re.findall(r"\b(kvyard_[a-z_]+)", expr):
            base = re.sub(r"_(total|bucket|count|sum)$", "", name)
            assert base in exported or name in engine, f"{name} in {expr!r} is not a metric kvyard exports"


def test_dashboard_can_be_turned_off():
    docs = render({"grafanaDashboard": {"enabled": False}})
    assert not [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-dashboard")]
