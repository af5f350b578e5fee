#!/usr/bin/env bash
# Issue 17's GPU checks as one command on the device machine, from the repository root, with
# the wheels of bench/gpu_wheels.sh carried in .whl/:
#   1. the fast paths' loss and gradients against the plain path on tiny models of the four
#      seed families, in bf16 with Liger's kernels (tests/families/test_speed.py -k gpu);
#   2. bench/gpu_speed.py: llmft vs the plain trl script, 1B Llama and the seed architectures
#      at full size, 24 GiB cap, both orders, tokens/s ratio, peak memory, MFU.
# Everything is written under $OUT (gpu_tests.log, gpu_speed.log, gpu_speed.jsonl).
# BENCH_BUDGET_S (default 330): no new bench case starts after it; BENCH_ARGS: more arguments.
# Device call: run(command="bash bench/gpu_session.sh", carry=[".whl"], timeout_s=600).
set -uo pipefail
OUT=${OUT:-/tmp/llmft-gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
export TOKENIZERS_PARALLELISM=false RAGAS_DO_NOT_TRACK=true
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
python3 - <<'PY' 2>&1 | tee "$OUT/versions.log"
import importlib.metadata as md, torch
print(torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU")
for name in ("transformers", "trl", "peft", "bitsandbytes", "liger-kernel", "datasets", "flash-attn"):
    try:
        print(name, md.version(name))
    except md.PackageNotFoundError:
        print(name, "not installed")
PY
timeout 200 python3 -m pytest -q -s -p no:cacheprovider tests/families/test_speed.py -k gpu \
  2>&1 | tee "$OUT/gpu_tests.log"
timeout "${BENCH_TIMEOUT_S:-370}" python3 bench/gpu_speed.py --out "$OUT/gpu_speed.jsonl" \
  --budget-s "${BENCH_BUDGET_S:-330}" ${BENCH_ARGS:-} 2>&1 | tee "$OUT/gpu_speed.log"
