"""Offline checks of rendered Kubernetes manifests.

- Core kinds (Deployment, Service, Ingress, pod templates, ...) against the Kubernetes JSON
  schemas shipped by PyPI ``kubernetes-validate``, in their *strict* form (unknown fields are
  errors, as ``kubectl apply --validate=strict`` makes them).
- Custom resources (RayService, HTTPRoute, ServiceMonitor) against their CRD's
  ``openAPIV3Schema`` kept in ``tests/deploy/data`` (see ``crdschema``), closed the same way.
- RayService rules KubeRay's webhook-less validation applies at reconcile time (v1.7.0
  ``ray-operator/controllers/ray/utils/validation.go``), the ones a chart can get wrong.
"""

from __future__ import annotations

import functools
import json
import re
from importlib.resources import files
from typing import Any

import jsonschema
from referencing import Registry, Resource

from tests.deploy.crdschema import closed, load

# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest with schemas.
K8S_VERSIONS = ("1.27.0", "1.37.0")

CRDS = {
    ("ray.io/v1", "RayService"): "ray.io_v1_rayservice",
    ("gateway.networking.k8s.io/v1", "HTTPRoute"): "gateway.networking.k8s.io_v1_httproute",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "monitoring.coreos.com_v1_servicemonitor",
}


def _schema_file(api_version: str, kind: str) -> str:
    # kubernetes-validate's file naming: networking.k8s.io/v1 Ingress -> ingress-networking-v1.json
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    return f"{kind.lower()}-{group_version}.json"


@functools.cache
def core_validator(version: str, filename: str) -> jsonschema.Validator:
    base = files("kubernetes_validate") / "kubernetes-json-schema" / f"v{version}-local-strict"
    schema = json.loads((base / filename).read_text())
    definitions = json.loads((base / "_definitions.json").read_text())
    registry = Resource.from_contents(schema) @ (Resource.from_contents(definitions) @ Registry())
    return jsonschema.Draft202012Validator(schema, registry=registry)


@functools.cache
def crd_validator(api_version: str, kind: str) -> jsonschema.Validator:
    doc = load(CRDS[(api_version, kind)])
    assert f"{doc['group']}/{doc['version']}" == api_version and doc["kind"] == kind
    return jsonschema.Draft7Validator(closed(doc["openAPIV3Schema"]))


def errors(doc: dict[str, Any]) -> list[str]:
    """Every schema violation of one manifest, against every Kubernetes version in K8S_VERSIONS."""
    api_version, kind = doc["apiVersion"], doc["kind"]
    found: list[str] = []

    def collect(validator: jsonschema.Validator, instance: Any, where: str) -> None:
        for e in validator.iter_errors(instance):
            found.append(f"{kind} {where}{'/'.join(map(str, e.absolute_path))}: {e.message}")

    if (api_version, kind) in CRDS:
        collect(crd_validator(api_version, kind), doc, "")
        for version in K8S_VERSIONS:
            # CRD schemas say only `metadata: object`: check it as the API server does.
            meta = core_validator(version, "objectmeta-meta-v1.json")
            collect(meta, doc.get("metadata", {}), "metadata/")
            for where, template in pod_templates(doc):
                collect(core_validator(version, "podtemplatespec-v1.json"), template, where + "/")
    else:
        for version in K8S_VERSIONS:
            collect(core_validator(version, _schema_file(api_version, kind)), doc, "")
    return sorted(set(found))


def pod_templates(doc: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(path, template) of each Ray pod template in a RayService; none for other kinds."""
    if doc.get("kind") != "RayService":
        return []
    cluster = doc["spec"]["rayClusterConfig"]
    out = [("spec/rayClusterConfig/headGroupSpec/template", cluster["headGroupSpec"]["template"])]
    for i, group in enumerate(cluster.get("workerGroupSpecs", [])):
        out.append((f"spec/rayClusterConfig/workerGroupSpecs/{i}/template", group["template"]))
    return out


_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_RESOURCE_PARAMS = ("num-cpus", "num-gpus", "memory", "resources")


def kuberay_errors(rs: dict[str, Any]) -> list[str]:
    """KubeRay v1.7.0's RayService validation rules that a chart controls."""
    found = []
    name = rs["metadata"]["name"]
    if len(name) > 47 or not _DNS1035.match(name):
        found.append(f"RayService name {name!r} must be a DNS-1035 label of at most 47 characters")
    spec = rs["spec"]
    cluster = spec["rayClusterConfig"]
    head = cluster["headGroupSpec"]
    groups = [("Head", head)] + [(g.get("groupName", "?"), g) for g in cluster.get("workerGroupSpecs", [])]
    for gname, group in groups:
        if not group["template"]["spec"].get("containers"):
            found.append(f"{gname}: the pod template needs at least one container")
        params = group.get("rayStartParams", {})
        if group.get("resources") and any(params.get(k) for k in _RESOURCE_PARAMS):
            found.append(f"{gname}: resources set both in rayStartParams and in resources")
        if "labels" in params:
            found.append(f"{gname}: rayStartParams['labels'] is not supported; use the group's labels field")
    autoscaling = cluster.get("enableInTreeAutoscaling", False)
    for group in cluster.get("workerGroupSpecs", []):
        lo, hi, n = group.get("minReplicas"), group.get("maxReplicas"), group.get("replicas")
        if not autoscaling and (lo is None or hi is None):
            found.append(f"{group['groupName']}: minReplicas and maxReplicas are required without autoscaling")
        if lo is not None and hi is not None and lo > hi:
            found.append(f"{group['groupName']}: minReplicas > maxReplicas")
        if n is not None and lo is not None and hi is not None and not lo <= n <= hi:
            found.append(f"{group['groupName']}: replicas outside [minReplicas, maxReplicas]")
    head_env = {e["name"] for e in head["template"]["spec"]["containers"][0].get("env", [])}
    if "RAY_REDIS_ADDRESS" in head_env and not cluster.get("gcsFaultToleranceOptions"):
        found.append("RAY_REDIS_ADDRESS on the head turns on GCS fault tolerance without gcsFaultToleranceOptions")
    ports = {p.get("name"): p["containerPort"] for p in head["template"]["spec"]["containers"][0].get("ports", [])}
    if ports and not any(p == "serve" or str(p).startswith("serve-") for p in ports) and not spec.get("serveService"):
        found.append("the head container lists ports but none named 'serve': KubeRay creates no Serve service")
    return found
