#!/usr/bin/env bash
# Installs the real agent-harness CLIs the end-to-end tests (tests/harness) drive, at pinned
# versions, into the project-local npm prefix ./.harnesses (gitignored):
#   .harnesses/node_modules/.bin/claude   @anthropic-ai/claude-code (native binary, Node-free)
#   .harnesses/node_modules/.bin/codex    @openai/codex (Node launcher + native Rust binary)
# Idempotent: when both report the pinned versions it returns at once. Needs node + npm and
# the npm registry (first run: ~420 MB download, ~20 s on a fast link). Override the pins with
# KVYARD_CLAUDE_CODE_VERSION / KVYARD_CODEX_VERSION, the prefix with KVYARD_HARNESSES.
set -euo pipefail
cd "$(dirname "$0")/.."

CLAUDE_CODE_VERSION=${KVYARD_CLAUDE_CODE_VERSION:-2.1.332}
CODEX_VERSION=${KVYARD_CODEX_VERSION:-0.171.0}
PREFIX=${KVYARD_HARNESSES:-.harnesses}
BIN="$PREFIX/node_modules/.bin"
step() { printf '[harnesses %s/3] %s\n' "$1" "$2"; }
fail() { printf 'harness install failed: %s\n' "$1" >&2; exit 1; }

# `claude --version` prints "2.1.332 (Claude Code)"; `codex --version` prints "codex-cli 0.171.0".
claude_ok() { [ -x "$BIN/claude" ] && "$BIN/claude" --version 2>/dev/null | grep -qx "$CLAUDE_CODE_VERSION (Claude Code)"; }
codex_ok() { [ -x "$BIN/codex" ] && "$BIN/codex" --version 2>/dev/null | grep -qx "codex-cli $CODEX_VERSION"; }

step 1 "checking node and npm"
command -v node >/dev/null 2>&1 || fail "node is missing (Node >= 18 runs both CLIs); install nodejs and npm"
command -v npm >/dev/null 2>&1 || fail "npm is missing; install npm"
echo "node $(node --version), npm $(npm --version), prefix $PREFIX"

if claude_ok && codex_ok; then
  step 2 "already installed: claude-code $CLAUDE_CODE_VERSION, codex $CODEX_VERSION"
  step 3 "nothing to do"
  exit 0
fi

step 2 "npm install @anthropic-ai/claude-code@$CLAUDE_CODE_VERSION @openai/codex@$CODEX_VERSION (first run: ~420 MB)"
mkdir -p "$PREFIX"
[ -f "$PREFIX/package.json" ] || printf '{"name": "kvyard-harnesses", "private": true}\n' > "$PREFIX/package.json"
# --engine-strict=false: claude-code >= 2.1.2xx declares node >= 22, but its bin is a native
# binary that Node never runs; the engines field only matters to its postinstall copy step.
npm install --prefix "$PREFIX" --no-audit --no-fund --no-update-notifier --engine-strict=false \
  --loglevel=error "@anthropic-ai/claude-code@$CLAUDE_CODE_VERSION" "@openai/codex@$CODEX_VERSION" \
  || fail "npm install failed (is the npm registry reachable? npm config get registry: $(npm config get registry))"

step 3 "verifying the binaries"
if ! claude_ok; then
  # npm versions that hold back install scripts leave bin/claude.exe as a placeholder stub;
  # the package's own postinstall copies the platform binary over it.
  echo "claude: running the package's postinstall (copies the native binary into place)"
  (cd "$PREFIX/node_modules/@anthropic-ai/claude-code" && node install.cjs) || true
fi
claude_ok || fail "claude --version did not print '$CLAUDE_CODE_VERSION (Claude Code)': $("$BIN/claude" --version 2>&1 | head -n 3)"
codex_ok || fail "codex --version did not print 'codex-cli $CODEX_VERSION': $("$BIN/codex" --version 2>&1 | head -n 3)"
echo "claude: $("$BIN/claude" --version)  codex: $("$BIN/codex" --version)"
echo "harnesses ready in $PREFIX"
