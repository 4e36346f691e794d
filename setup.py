"""Maps the repository folders onto the one ``kvyard`` import namespace (metadata: pyproject.toml)."""

from setuptools import find_packages, setup

NAMESPACE = {
    "kvyard": "kvyard",
    "kvyard.deployments": "deployments",
    "kvyard.router": "router",
    "kvyard.kvtransfer": "kvtransfer",
    "kvyard.policies": "policies",
    "kvyard.cluster": "cluster",
}

packages = []
for name, folder in NAMESPACE.items():
    packages += [name] + [f"{name}.{sub}" for sub in find_packages(folder)]

setup(packages=packages, package_dir=NAMESPACE)
