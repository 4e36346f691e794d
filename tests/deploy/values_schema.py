"""The chart's ``values.schema.json``: chart settings written here, ``app`` from kvyard's AppConfig.

Helm validates values against this schema on install, upgrade, template and lint, so a typo in
``app`` (kvyard's config) or in the chart's own settings fails before anything reaches the
cluster. The ``app`` part is pydantic's JSON schema of ``kvyard.config.AppConfig`` (its ``$defs``
sit at the root, where its ``$ref``s point). ``tests/deploy/test_chart.py`` fails when the file
differs from ``build()``; rewrite it with::

    python -m tests.deploy.values_schema
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kvyard.config import AppConfig

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "helm" / "kvyard" / "values.schema.json"

_STR = {"type": "string"}
_BOOL = {"type": "boolean"}
_OBJ = {"type": "object"}
_LIST = {"type": "array"}
_STR_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_POS_INT = {"type": "integer", "minimum": 0}
_QUANTITY = {"anyOf": [{"type": "string"}, {"type": "number"}]}


def _closed(properties: dict[str, Any], required: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "additionalProperties": False, "properties": properties}
    if required:
        out["required"] = required
    out.update(extra)
    return out


def _pod_group() -> dict[str, Any]:
    return {
        "rayStartParams": {**_STR_MAP, "description": "Extra `ray start` flags (values are strings)."},
        "resources": {**_OBJ, "description": "Container resources (requests/limits)."},
        "nodeSelector": _STR_MAP,
        "tolerations": _LIST,
        "affinity": _OBJ,
        "env": {**_LIST, "description": "Extra container environment variables."},
        "annotations": _STR_MAP,
    }


def _worker_group() -> dict[str, Any]:
    props = _pod_group()
    props |= {
        "replicas": {**_POS_INT, "description": "Pods in this group."},
        "minReplicas": _POS_INT,
        "maxReplicas": _POS_INT,
        "gpus": {**_POS_INT, "description": "nvidia.com/gpu per pod; Ray reads its GPU count from it."},
        "customResources": {
            "type": "object",
            "additionalProperties": {"type": "number", "minimum": 0},
            "description": "Custom Ray resources every pod of the group advertises (ray start --resources).",
        },
        "shmSize": {"anyOf": [{"type": "string"}, {"type": "null"}], "description": "Size of the in-memory /dev/shm; empty for none."},
    }
    return _closed(props, ["replicas", "minReplicas", "maxReplicas", "gpus"])


def _drop(node: Any, keys: frozenset[str] = frozenset({"default", "title"})) -> Any:
    """Without pydantic's defaults (one of them is the user's home) and titles: only rules stay."""
    if isinstance(node, dict):
        return {k: _drop(v, keys) for k, v in node.items() if not (k in keys and not isinstance(v, dict))}
    if isinstance(node, list):
        return [_drop(v, keys) for v in node]
    return node


def build() -> dict[str, Any]:
    """The whole values.schema.json document."""
    app = _drop(AppConfig.model_json_schema())
    defs = app.pop("$defs", {})
    app["description"] = "kvyard's AppConfig (kvyard/config.py): the args of kvyard.deployments.builder:build_app in serveConfigV2."
    image = _closed({"repository": _STR, "tag": _STR, "pullPolicy": {"enum": ["Always", "IfNotPresent", "Never"]}}, ["repository"])
    properties = {
        "app": app,
        "serve": _closed({"keepAliveTimeoutS": {"type": "integer", "minimum": 1}}),
        "image": image,
        "imagePullSecrets": _LIST,
        "models": _closed(
            {
                "mountPath": {"type": "string", "pattern": "^/"},
                "volume": {**_OBJ, "description": "A pod volume source (emptyDir, persistentVolumeClaim, hostPath, ...)."},
                "download": _closed(
                    {"enabled": _BOOL, "repo": _STR, "dir": {"type": "string", "minLength": 1}, "hfTokenSecret": _STR}
                ),
            },
            ["mountPath", "volume"],
        ),
        "rayVersion": _STR,
        "head": _closed(_pod_group()),
        "workerGroups": _closed({"prefill": _worker_group(), "decode": _worker_group()}, ["decode"]),
        "redis": _closed(
            {
                "enabled": _BOOL,
                "externalUrl": {"type": "string", "pattern": "^$|^rediss?://"},
                "image": image,
                "port": {"type": "integer", "minimum": 1, "maximum": 65535},
                "maxMemory": _STR,
                "resources": _OBJ,
                "nodeSelector": _STR_MAP,
                "tolerations": _LIST,
            }
        ),
        "ingress": _closed(
            {
                "enabled": _BOOL,
                "className": _STR,
                "host": _STR,
                "path": {"type": "string", "pattern": "^/"},
                "timeoutSeconds": {"type": "integer", "minimum": 1},
                "tls": _closed({"enabled": _BOOL, "secretName": _STR}),
                "annotations": _STR_MAP,
            }
        ),
        "gateway": _closed(
            {
                "enabled": _BOOL,
                "parentRefs": {"type": "array", "items": {"type": "object", "required": ["name"]}},
                "hostnames": {"type": "array", "items": _STR},
                "requestTimeout": _STR,
                "annotations": _STR_MAP,
            }
        ),
        "otel": _closed(
            {
                "enabled": _BOOL,
                "endpoint": _STR,
                "protocol": {"enum": ["grpc", "http/protobuf", "http/json"]},
                "serviceName": _STR,
                "tracesSampler": _STR,
                "tracesSamplerArg": _STR,
                "resourceAttributes": _STR_MAP,
                "serveTracing": _closed(
                    {"exporterImportPath": _STR, "samplingRatio": {"type": "number", "minimum": 0, "maximum": 1}}
                ),
            }
        ),
        "serviceMonitor": _closed(
            {"enabled": _BOOL, "interval": _STR, "scrapeTimeout": _STR, "labels": _STR_MAP}
        ),
        "grafanaDashboard": _closed({"enabled": _BOOL, "labels": _STR_MAP}),
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "kvyard chart values",
        "type": "object",
        "additionalProperties": False,
        "properties": properties,
        "required": ["app", "image", "models", "head", "workerGroups"],
        "$defs": defs,
    }


def render() -> str:
    return json.dumps(build(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    SCHEMA_PATH.write_text(render())
    print(f"wrote {SCHEMA_PATH}")
