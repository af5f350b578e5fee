#!/usr/bin/env bash
# The front door: set up (once per machine), then run the quickstart experiment end to end on this
# machine and write its report. Extra arguments go to `llmft run` (e.g. --force).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=$(bash "$ROOT/scripts/setup.sh" | tail -n 1)
cd "$ROOT"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 RAGAS_DO_NOT_TRACK=true
start=$(date +%s)
"$VENV/bin/llmft" run -f examples/quickstart/ "$@"
"$VENV/bin/llmft" report
echo "quickstart finished in $(( $(date +%s) - start ))s; report in .llmft/report/"
