"""CRD schemas as test data: extract them from upstream CRD manifests, and close them for checks.

Test data (``tests/deploy/data/*.json``) is the ``openAPIV3Schema`` of one version of a
CustomResourceDefinition with its ``description`` texts dropped (they do not validate anything),
plus where it came from. Refresh one with::

    python -m tests.deploy.crdschema CRD.yaml VERSION "SOURCE (repo@tag, path)" > tests/deploy/data/NAME.json

``closed`` turns a structural CRD schema into the check a strict API server applies
(``kubectl apply --validate=strict``, the default since Kubernetes 1.27): an object that lists
its ``properties`` and neither allows ``additionalProperties`` nor sets
``x-kubernetes-preserve-unknown-fields`` rejects unknown fields, so a misspelt field fails here
instead of being pruned silently on the cluster.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

DATA = Path(__file__).parent / "data"


def _strip(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _strip(v) for k, v in node.items() if k != "description"}
    if isinstance(node, list):
        return [_strip(v) for v in node]
    return node


def extract(crd: dict[str, Any], version: str, source: str) -> dict[str, Any]:
    """The test-data document for one served version of a CRD."""
    spec = crd["spec"]
    for v in spec["versions"]:
        if v["name"] == version:
            return {
                "source": source,
                "group": spec["group"],
                "version": version,
                "kind": spec["names"]["kind"],
                "openAPIV3Schema": _strip(v["schema"]["openAPIV3Schema"]),
            }
    raise ValueError(f"{spec['names']['kind']} CRD has no version {version!r}")


def closed(schema: Any) -> Any:
    """A copy of ``schema`` where objects with listed properties reject unknown fields."""
    if isinstance(schema, list):
        return [closed(v) for v in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: closed(v) for k, v in schema.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def load(name: str) -> dict[str, Any]:
    """A stored CRD document from ``tests/deploy/data``."""
    return json.loads((DATA / f"{name}.json").read_text())


if __name__ == "__main__":
    path, version, source = sys.argv[1:4]
    doc = extract(yaml.safe_load(Path(path).read_text()), version, source)
    json.dump(doc, sys.stdout, indent=None, separators=(",", ":"), sort_keys=True)
    sys.stdout.write("\n")
