"""kvyard: disaggregated, KV-aware serving of agent-harness LLM traffic on Ray Serve.

The distribution maps the repository folders onto one import namespace:
``kvyard.deployments`` (deployments/), ``kvyard.router`` (router/), ``kvyard.kvtransfer``
(kvtransfer/), ``kvyard.policies`` (policies/), ``kvyard.cluster`` (cluster/).
"""

__version__ = "0.1.0"
