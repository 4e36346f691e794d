"""`ray up` configs (cluster/*.yaml) and `serve deploy` configs (cluster/serve/*.yaml).

The cluster configs are checked the way `ray up` checks them before it launches anything: Ray's
own cluster-launcher JSON schema, then Ray's own config preparation and validation. The Serve
configs are checked by Ray Serve's own schema, and their application args by kvyard's AppConfig.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import ray.autoscaler
import yaml
from pydantic import ValidationError
from ray.autoscaler._private.util import prepare_config, validate_config
from ray.serve.schema import (
    HTTPOptionsSchema,
    ServeApplicationSchema,
    ServeDeploySchema,
)

from kvyard.config import AppConfig

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "cluster"
CLUSTER_CONFIGS = sorted(CLUSTER.glob("*.yaml"))
SERVE_CONFIGS = sorted((CLUSTER / "serve").glob("*.yaml"))
IMPORT_PATH = "kvyard.deployments.builder:build_app"

RAY_SCHEMA = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())


def _load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def _ray_schema_errors(config: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(RAY_SCHEMA)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(config)]


def _serve_app_args(path: Path) -> dict[str, Any]:
    (app,) = _load(path)["applications"]
    return app["args"]


def test_the_expected_files_are_there():
    assert [p.name for p in CLUSTER_CONFIGS] == ["aws-b200.yaml", "onprem.yaml"]
    assert [p.name for p in SERVE_CONFIGS] == ["default.yaml", "gpu-disaggregated.yaml"]


# --- ray up configs ------------------------------------------------------------------------


@pytest.mark.parametrize("path", CLUSTER_CONFIGS, ids=lambda p: p.name)
def test_cluster_config_matches_rays_schema(path):
    assert _ray_schema_errors(_load(path)) == []


@pytest.mark.parametrize("path", CLUSTER_CONFIGS, ids=lambda p: p.name)
def test_cluster_config_passes_ray_ups_own_preparation(path):
    # What `ray up` runs before bootstrapping the provider: defaults, node types, then the schema
    # and cross-field checks (head type exists, sum of min_workers <= max_workers, ...).
    prepared = prepare_config(_load(path))
    validate_config(prepared)
    assert prepared["head_node_type"] in prepared["available_node_types"]


BREAKAGES = {
    "misspelt top-level field": lambda c: c.__setitem__("max_worker", 4),
    "no provider": lambda c: c.pop("provider"),
    "setup command that is not a string": lambda c: c.__setitem__("setup_commands", [["pip", "install"]]),
}


@pytest.mark.parametrize("breakage", BREAKAGES, ids=str)
@pytest.mark.parametrize("path", CLUSTER_CONFIGS, ids=lambda p: p.name)
def test_a_broken_copy_fails_rays_schema(path, breakage):
    config = copy.deepcopy(_load(path))
    BREAKAGES[breakage](config)
    assert _ray_schema_errors(config)
    with pytest.raises(jsonschema.ValidationError):
        validate_config(config)


@pytest.mark.parametrize(
    "breakage",
    [
        lambda t: t["prefill"].__setitem__("resources", {"prefill": "8"}),  # must be an integer
        lambda t: t["decode"].pop("node_config"),
        lambda t: t["head"].__setitem__("min_worker", 0),
    ],
    ids=["string resource", "no node_config", "misspelt node-type field"],
)
def test_a_broken_node_type_fails_rays_schema(breakage):
    config = _load(CLUSTER / "aws-b200.yaml")
    breakage(config["available_node_types"])
    assert _ray_schema_errors(config)


def test_aws_groups_are_placed_by_custom_resources():
    config = _load(CLUSTER / "aws-b200.yaml")
    assert config["provider"]["type"] == "aws"
    types = config["available_node_types"]
    assert set(types) == {"head", "prefill", "decode"}
    assert config["head_node_type"] == "head"
    assert types["head"]["resources"] == {}
    for role in ("prefill", "decode"):
        assert types[role]["node_config"]["InstanceType"].startswith("p6-b200.")
        assert types[role]["resources"] == {role: 8}  # one unit per B200
        assert types[role]["min_workers"] >= 1
    assert config["max_workers"] >= sum(types[r]["max_workers"] for r in ("prefill", "decode"))


def _onprem_roles(config: dict[str, Any]) -> dict[str, dict[str, int]]:
    """The worker role table in onprem.yaml's worker_setup_commands: {ip: ray resources}."""
    (table,) = [c for c in config["worker_setup_commands"] if "ray-resources.json" in c]
    return {ip: json.loads(res) for ip, res in re.findall(r'\*" ([0-9.]+) "\*\) echo \'(\{[^\']*\})\'', table)}


def test_onprem_gives_every_worker_exactly_one_role():
    config = _load(CLUSTER / "onprem.yaml")
    provider = config["provider"]
    assert provider["type"] == "local" and provider["head_ip"]
    roles = _onprem_roles(config)
    assert set(roles) == set(provider["worker_ips"])
    assert {next(iter(r)) for r in roles.values()} == {"prefill", "decode"}
    assert all(len(r) == 1 for r in roles.values())
    # ... and `ray start` on the workers reads what the table wrote.
    assert any("--resources=\"$(cat ~/.kvyard/ray-resources.json)\"" in c for c in config["worker_start_ray_commands"])


def _supply(path: Path) -> dict[str, float]:
    """Custom Ray resources a cluster config can offer at most, summed over its workers."""
    config = _load(path)
    total: dict[str, float] = {}
    if config["provider"]["type"] == "local":
        for resources in _onprem_roles(config).values():
            for k, v in resources.items():
                total[k] = total.get(k, 0) + v
    else:
        for node in config["available_node_types"].values():
            for k, v in node["resources"].items():
                total[k] = total.get(k, 0) + v * node.get("max_workers", 0)
    return total


@pytest.mark.parametrize("path", CLUSTER_CONFIGS, ids=lambda p: p.name)
def test_cluster_can_place_every_gpu_replica(path):
    cfg = AppConfig.model_validate(_serve_app_args(CLUSTER / "serve" / "gpu-disaggregated.yaml"))
    supply = _supply(path)
    for pool in (cfg.prefill, cfg.decode):
        assert pool.resources, "GPU pools are placed by custom resources"
        for name, per_replica in pool.resources.items():
            assert per_replica * pool.replicas <= supply.get(name, 0), (name, supply)


@pytest.mark.parametrize("path", CLUSTER_CONFIGS, ids=lambda p: p.name)
def test_cluster_installs_kvyard_gpu_and_fetches_the_served_model(path):
    config = _load(path)
    commands = "\n".join(config["setup_commands"])
    assert re.search(r'pip install "\$HOME/kvyard\[gpu\]"', commands)
    assert config["file_mounts"] == {"~/kvyard": "./"}
    model_path = AppConfig.model_validate(_serve_app_args(CLUSTER / "serve" / "gpu-disaggregated.yaml")).model.path
    for key in ("head_setup_commands", "worker_setup_commands"):
        assert any(f"local_dir='{model_path}'" in c for c in config[key]), key


# --- serve deploy configs ------------------------------------------------------------------


def _strict_keys(model: type, data: dict[str, Any]) -> set[str]:
    return set(data) - set(model.model_fields)


@pytest.mark.parametrize("path", SERVE_CONFIGS, ids=lambda p: p.name)
def test_serve_config_parses_with_ray_serve_and_kvyard(path):
    data = _load(path)
    schema = ServeDeploySchema.model_validate(data)
    # Ray's schema lets unknown keys through; Serve would ignore a misspelt one silently.
    assert _strict_keys(ServeDeploySchema, data) == set()
    assert _strict_keys(HTTPOptionsSchema, data.get("http_options", {})) == set()
    (app,) = schema.applications
    assert _strict_keys(ServeApplicationSchema, data["applications"][0]) == set()
    assert app.import_path == IMPORT_PATH
    assert app.route_prefix == "/"
    AppConfig.model_validate(app.args)


@pytest.mark.parametrize(
    "breakage, error",
    [
        (lambda d: d["applications"][0].pop("import_path"), ValidationError),
        (lambda d: d.__setitem__("proxy_location", "Everywhere"), ValidationError),
        (lambda d: d["applications"][0]["args"].__setitem__("modle", {}), ValidationError),
        (lambda d: d["applications"][0]["args"]["engine"].__setitem__("device", "tpu"), ValidationError),
    ],
    ids=["no import_path", "bad proxy_location", "unknown AppConfig field", "bad engine.device"],
)
def test_a_broken_serve_config_fails(breakage, error):
    data = _load(CLUSTER / "serve" / "gpu-disaggregated.yaml")
    breakage(data)
    with pytest.raises(error):
        schema = ServeDeploySchema.model_validate(data)
        AppConfig.model_validate(schema.applications[0].args)


def test_default_serve_config_is_the_cpu_default():
    assert AppConfig.model_validate(_serve_app_args(CLUSTER / "serve" / "default.yaml")) == AppConfig()


def test_gpu_serve_config_builds_pools_placed_by_custom_resources():
    # Ray Serve's own application builder (what `serve deploy` runs in the controller): it
    # imports build_app, calls it with the args and checks every deployment's options.
    from ray.serve._private.build_app import build_app as serve_build
    from ray.serve._private.utils import import_attr

    args = _serve_app_args(CLUSTER / "serve" / "gpu-disaggregated.yaml")
    cfg = AppConfig.model_validate(args)
    assert cfg.mode == "disaggregated" and cfg.engine.device == "cuda"
    built = serve_build(import_attr(IMPORT_PATH)(args), name="kvyard")
    options = {d.name: (d.num_replicas, d.ray_actor_options) for d in built.deployments}
    assert options["Prefill"] == (8, {"num_cpus": 8.0, "num_gpus": 1.0, "resources": {"prefill": 1.0}})
    assert options["Decode"] == (8, {"num_cpus": 8.0, "num_gpus": 1.0, "resources": {"decode": 1.0}})
    assert "resources" not in options["Frontend"][1]
