#!/usr/bin/env bash
# The test command: sets up what is missing (Python environment, real servers), then runs pytest.
# Arguments go to pytest, e.g. `bash tests/run.sh -m k8s` for one tier.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=$(bash "$ROOT/scripts/setup.sh" --servers | tail -n 1)
cd "$ROOT"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 RAGAS_DO_NOT_TRACK=true
export PATH="$VENV/bin:${LLMFT_CACHE:-$HOME/.cache/llmft}/bin:$PATH"
exec "$VENV/bin/python" -m pytest "$@"
