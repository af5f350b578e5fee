#!/usr/bin/env bash
# The test command: sets up what is missing (Python environment, real servers), then runs pytest.
# Arguments go to pytest, e.g. `bash tests/run.sh -m k8s` for one tier.
#
# Given no selection of tests (no -m, -k, test path or node id among the arguments), it runs the
# `cluster` tier (pods on the real node) and the other tiers side by side, as two pytest
# processes with the same arguments: one pytest process keeps about one of two cores busy, and
# much of each tier waits on servers and pods. The other tiers' output is shown as it comes; the
# `cluster` tier's goes to a log, shown when both are done. The exit status is the other tiers'
# if they failed, else the `cluster` tier's. LLMFT_TEST_SPLIT=0 runs one process instead.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=$(bash "$ROOT/scripts/setup.sh" --servers | tail -n 1)
cd "$ROOT"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 RAGAS_DO_NOT_TRACK=true
export PATH="$VENV/bin:${LLMFT_CACHE:-$HOME/.cache/llmft}/bin:$PATH"
pytest=("$VENV/bin/python" -m pytest)

# Whether the arguments choose tests (or ask pytest for something other than a run).
selects() {
  local arg
  for arg in "$@"; do
    case "$arg" in
      -m | -m* | -k | -k* | --deselect* | --lf | --last-failed | --sw | --stepwise | \
        --co | --collect-only | --fixtures | --markers | -h | --help | --version) return 0 ;;
      -*) ;;
      *) [ ! -e "${arg%%::*}" ] || return 0 ;;
    esac
  done
  return 1
}

if [ "${LLMFT_TEST_SPLIT:-1}" = 0 ] || selects "$@"; then
  exec "${pytest[@]}" "$@"
fi

logs=$(mktemp -d "${TMPDIR:-/tmp}/llmft-tests.XXXXXX")
cluster_log="$logs/cluster.log"
echo "tests/run.sh: the cluster tier (-m cluster) runs beside the others (-m 'not cluster');" \
  "its output: $cluster_log (shown at the end)"
pids=()
# Background jobs of a script ignore SIGINT: an interrupt or a TERM reaches the two pytest
# processes as SIGTERM, which tests/conftest.py turns into an interrupt (fixtures stop servers).
stop() { kill -TERM "${pids[@]}" 2>/dev/null || true; }
trap stop INT TERM
# The exit status of child $1 (`wait` returns early when a trapped signal arrives).
reap() {
  local rc
  while :; do
    rc=0
    wait "$1" || rc=$?
    kill -0 "$1" 2>/dev/null || return "$rc"
  done
}

start=$(date +%s)
"${pytest[@]}" -m cluster "$@" >"$cluster_log" 2>&1 &
cluster=$!
pids+=("$cluster")
"${pytest[@]}" -m "not cluster" "$@" &
rest=$!
pids+=("$rest")
rest_rc=0
reap "$rest" || rest_rc=$?
rest_s=$(($(date +%s) - start))
! kill -0 "$cluster" 2>/dev/null ||
  echo "tests/run.sh: waiting for the cluster tier (tail -f $cluster_log)"
cluster_rc=0
reap "$cluster" || cluster_rc=$?
cluster_s=$(($(date +%s) - start))
trap - INT TERM

echo
echo "=============== the cluster tier (-m cluster), from $cluster_log ==============="
cat "$cluster_log"
echo
echo "tests/run.sh: -m 'not cluster' exited $rest_rc after ${rest_s}s;" \
  "-m cluster exited $cluster_rc after ${cluster_s}s"
[ "$rest_rc" = 0 ] || exit "$rest_rc"
exit "$cluster_rc"
