#!/usr/bin/env bash
# Builds the real servers the test tiers talk to (Kubernetes control plane, etcd, kwok, Ollama,
# Weaviate; the real node's kubelet, kube-proxy and CoreDNS) from their Go modules into a cache
# outside the repo; skips what is built. `build.sh NAME...` builds only those.
set -euo pipefail

CACHE="${LLMFT_CACHE:-$HOME/.cache/llmft}"
BIN="$CACHE/bin"
WORK="$CACHE/build"
mkdir -p "$BIN" "$WORK"

K8S_VERSION="${K8S_VERSION:-v1.37.2}"
ETCD_VERSION="${ETCD_VERSION:-v3.7.0}"
KWOK_VERSION="${KWOK_VERSION:-v0.8.0}"
OLLAMA_VERSION="${OLLAMA_VERSION:-v0.17.4}"
WEAVIATE_VERSION="${WEAVIATE_VERSION:-v1.35.2}"
MINIAUDIO_VERSION="${MINIAUDIO_VERSION:-1.71}"
COREDNS_VERSION="${COREDNS_VERSION:-v1.15.0}"

export GOFLAGS="${GOFLAGS:--buildvcs=false} -trimpath"
LDFLAGS="-s -w"

log() { printf '[build %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# A stamp file beside each binary records the version it was built from.
is_built() { [ -x "$BIN/$1" ] && [ "$(cat "$BIN/$1.version" 2>/dev/null)" = "$2" ]; }
stamp() { printf '%s\n' "$2" >"$BIN/$1.version"; }

# Binaries of k8s.io/kubernetes at $K8S_VERSION, built through one wrapper module per set (the
# same module versions, so the second set reuses the Go build cache of the first).
build_k8s_cmds() { # set-name cmd...
  local set=$1 v="$K8S_VERSION" staging="v0.${K8S_VERSION#v1.}"
  shift
  local built=1 c
  for c in "$@"; do is_built "$c" "$v+stamped" || built=0; done
  [ "$built" = 1 ] && return
  log "kubernetes $v ($*)"
  local dir="$WORK/$set-$v"
  mkdir -p "$dir"
  local gomod
  gomod=$(go mod download -json "k8s.io/kubernetes@$v" | sed -n 's/.*"GoMod": "\(.*\)",*/\1/p')
  {
    echo "module llmft.local/kubebin"
    echo
    echo "go $(sed -n 's/^go //p' "$gomod")"
    echo
    echo "require k8s.io/kubernetes $v"
    echo
    echo "replace ("
    # Each staging module k8s.io/kubernetes replaces with ./staging is published as v0.X.Y.
    sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\t\1 => \1 '"$staging"'#p' "$gomod"
    echo ")"
  } >"$dir/go.mod"
  {
    printf '//go:build tools\n\npackage tools\n\nimport (\n'
    for c in "$@"; do printf '\t_ "k8s.io/kubernetes/cmd/%s"\n' "$c"; done
    printf ')\n'
  } >"$dir/tools.go"
  # Stamp the release into the binaries, or /version says v0.0.0-master and clients that check
  # kubeVersion (helm's Chart.yaml constraint among them) refuse the server.
  local minor="${v#v1.}"
  minor="${minor%%.*}"
  local pkg=k8s.io/component-base/version
  local ver="-X $pkg.gitVersion=$v -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  ver="$ver -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  local pkgs=()
  for c in "$@"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
  (cd "$dir" && go mod tidy && go build -ldflags "$LDFLAGS $ver" -o "$BIN/" "${pkgs[@]}")
  for c in "$@"; do stamp "$c" "$v+stamped"; done
}

build_kubernetes() {
  build_k8s_cmds kubernetes kube-apiserver kube-controller-manager kube-scheduler
}
# The real node of the `cluster` tier: the kubelet and kube-proxy of the same release as the
# control plane; containerd, runc, the CNI plugins and the image tools come from Debian.
NODE_PACKAGES=(containerd runc containernetworking-plugins iptables conntrack catatonit buildah
  debootstrap)
build_kubelet() {
  local missing=() pkg
  for pkg in "${NODE_PACKAGES[@]}"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  if [ ${#missing[@]} -gt 0 ]; then
    log "apt-get install ${missing[*]}"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}") >&2
  fi
  build_k8s_cmds kubelet kubelet kube-proxy
}

build_etcd() {
  is_built etcd "$ETCD_VERSION" && return
  log "etcd $ETCD_VERSION"
  local dir="$WORK/etcd-$ETCD_VERSION"
  mkdir -p "$dir"
  cat >"$dir/go.mod" <<GOMOD
module llmft.local/etcdbin

go 1.25

require go.etcd.io/etcd/server/v3 $ETCD_VERSION
GOMOD
  cat >"$dir/main.go" <<'GO'
// Command etcd runs etcd's own server entrypoint.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  (cd "$dir" && go mod tidy && go build -ldflags "$LDFLAGS" -o "$BIN/etcd" .)
  stamp etcd "$ETCD_VERSION"
}

go_install() { # name module/pkg version [env...]
  local name=$1 pkg=$2 v=$3
  shift 3
  is_built "$name" "$v" && return
  log "$name $v"
  env GOBIN="$BIN" "$@" go install -ldflags "$LDFLAGS" "$pkg@$v"
  stamp "$name" "$v"
}

build_kwok() { go_install kwok sigs.k8s.io/kwok/cmd/kwok "$KWOK_VERSION"; }
# Go module zips leave out every vendor/ directory, so llama.cpp's vendored single-header
# libraries are missing from Ollama's module: nlohmann/json and stb come from Debian, and
# miniaudio.h from the PyPI sdist of the miniaudio bindings, which ships it.
ollama_headers() {
  local missing=()
  [ -f /usr/include/nlohmann/json_fwd.hpp ] || missing+=(nlohmann-json3-dev)
  [ -f /usr/include/stb/stb_image.h ] || missing+=(libstb-dev)
  if [ ${#missing[@]} -gt 0 ]; then
    log "apt-get install ${missing[*]}"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}") >&2
  fi
  local inc="$WORK/headers"
  if [ ! -f "$inc/miniaudio/miniaudio.h" ]; then
    local tmp
    tmp=$(mktemp -d)
    python3 -m pip download -q --no-deps --no-binary :all: "miniaudio==$MINIAUDIO_VERSION" -d "$tmp"
    tar xzf "$tmp"/miniaudio-*.tar.gz -C "$tmp"
    mkdir -p "$inc/miniaudio"
    cp "$tmp"/miniaudio-*/miniaudio/miniaudio.h "$inc/miniaudio/"
    rm -rf "$tmp"
  fi
  echo "$inc"
}

build_ollama() {
  is_built ollama "$OLLAMA_VERSION" && return
  local inc
  inc=$(ollama_headers)
  go_install ollama github.com/ollama/ollama "$OLLAMA_VERSION" CGO_ENABLED=1 \
    CGO_CPPFLAGS="-I$inc" CGO_CFLAGS="-O2" CGO_CXXFLAGS="-O2"
}
# The real node's cluster DNS (cluster.local for its pods), as kubeadm clusters run it.
build_coredns() { go_install coredns github.com/coredns/coredns "$COREDNS_VERSION"; }
build_weaviate() {
  go_install weaviate-server github.com/weaviate/weaviate/cmd/weaviate-server "$WEAVIATE_VERSION"
}

targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(kubernetes kubelet coredns etcd kwok ollama weaviate)
for t in "${targets[@]}"; do
  start=$(date +%s)
  "build_$t"
  log "$t ready ($(($(date +%s) - start))s)"
done
ls -la "$BIN" >&2
