#!/usr/bin/env bash
# Installs the MLflow tracking server the tracking tests start, from PyPI, into a Python
# environment of its own: the server's GraphQL layer (graphene) caps python-dateutil below 3,
# which the kubernetes client in the project's environment needs, so the two never share one.
# The project's environment holds only the client (mlflow-skinny), as the images do.
# Idempotent: a finished environment (marked .complete) is left alone.
set -euo pipefail

CACHE="${LLMFT_CACHE:-$HOME/.cache/llmft}"
VERSION="${LLMFT_MLFLOW_VERSION:-3.17.2}"
VENV="$CACHE/mlflow-server-$VERSION"
PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"

log() { printf '[install-mlflow] %s\n' "$*" >&2; }

if [ -f "$VENV/.complete" ]; then
  log "MLflow $VERSION server already in $VENV"
  exit 0
fi
rm -rf "$VENV"
mkdir -p "$CACHE"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip >&2
"$VENV/bin/pip" install -q "mlflow==$VERSION" >&2
"$VENV/bin/mlflow" --version >&2
touch "$VENV/.complete"
log "MLflow $VERSION server installed in $VENV"
