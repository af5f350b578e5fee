#!/usr/bin/env bash
# Fetch, on the CPU machine, the wheels the GPU machine lacks into .whl/ (git-ignored through
# .git/info/exclude), for bench/gpu_session.sh; carry ".whl" in the device call. The GPU image
# has Python 3.12, torch, transformers 5.17, peft, accelerate, triton and pytest; nothing can
# be fetched there. About 50 MB: with the repository, under the 64 MiB a call may carry.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >>"$(git rev-parse --git-path info/exclude)"
PY=${PYTHON:-python3}
for pkg in trl==1.16.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 \
  bitsandbytes==0.50.2 liger-kernel==0.8.5 peft==0.21.2 pydantic==2.14.4 pydantic_core==2.50.5 \
  annotated-types==0.8.0 typing-inspection==0.4.5 python-json-logger==4.2.0 gguf==0.19.0; do
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl "$pkg"
done
du -sh .whl
