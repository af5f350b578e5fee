#!/usr/bin/env bash
# Builds the four llmft images from images/Dockerfile for the test cluster, daemonless (buildah,
# chroot isolation), on a local Debian stand-in for the registry bases, and imports them into a
# containerd. Nothing is pulled from an image registry: none can be reached from here.
#
#   build-images.sh [IMAGE...]                   build (default: all four, and the pod sandbox
#                                                image "pause"); print "IMAGE REF" lines
#   build-images.sh --import SOCKET [IMAGE...]   ... and import into the containerd at SOCKET
#                                                (namespace k8s.io, the kubelet's)
#
# The stand-in base is `debootstrap --variant=minbase bookworm` with python3.11 and its venv
# module, `python` on PATH as in the python image, and the build machine's extra certificate
# authorities (pip reaches PyPI through them). It replaces both registry bases through the
# Dockerfile's build arguments (PYTHON_IMAGE, CUDA_IMAGE, PYTHON=python3.11); nothing else
# differs from what images/build.sh builds.
#
# Every image is tagged localhost/llmft/NAME:KEY, KEY being a hash of what goes into it (the
# Dockerfile, pyproject.toml, the package sources, the base, the build arguments; not README.md,
# see context_hash): an unchanged image is neither rebuilt nor re-imported. Within a build,
# buildah's layer cache keeps the shared layers (torch with its CUDA libraries, several GB)
# across source changes.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CACHE="${LLMFT_CACHE:-$HOME/.cache/llmft}"
STORE="$CACHE/images"
IMAGES=(operator datagen trainer evaluator)
TARGETS=(pause "${IMAGES[@]}")
SUITE=bookworm
PYTHON=python3.11
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
# What the base needs beyond minbase: python3.11-venv's dependencies are listed because
# debootstrap does not resolve them.
BASE_PACKAGES=python3.11,python3.11-venv,python3-distutils,python3-pip-whl,python3-setuptools-whl,ca-certificates

log() { printf '[images %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "$*"; exit 1; }

import_sock=
selected=()
while [ $# -gt 0 ]; do
  case "$1" in
    --import) import_sock=${2:?--import needs the containerd socket}; shift 2 ;;
    -h|--help) sed -n '2,21p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) die "unknown option $1" ;;
    *) [[ " ${TARGETS[*]} " == *" $1 "* ]] || die "unknown image '$1' (one of: ${TARGETS[*]})"
       selected+=("$1"); shift ;;
  esac
done
[ ${#selected[@]} -gt 0 ] || selected=("${TARGETS[@]}")

need() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return
  log "apt-get install ${missing[*]}"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}") >&2
}
need buildah debootstrap catatonit
[ -z "$import_sock" ] || need containerd

# overlay keeps layers shared (vfs would copy the multi-GB torch layer for every step).
buildah() { command buildah --root "$STORE/storage" --runroot "$STORE/run" --storage-driver overlay "$@"; }
has_image() { buildah inspect --type image "$1" >/dev/null 2>&1; }
hash_of() { sha256sum | cut -c1-16; }

extra_cas() { find /usr/local/share/ca-certificates -name '*.crt' -type f 2>/dev/null | sort; }

build_base() {
  local key ref
  key=$( { echo "$SUITE $BASE_PACKAGES $MIRROR"; extra_cas | xargs -r cat; } | hash_of)
  ref="localhost/llmft/base:$key"
  if has_image "$ref"; then echo "$ref"; return; fi
  log "stand-in base: debootstrap $SUITE with $PYTHON (a few minutes, once)"
  local rootfs
  rm -rf "$STORE"/rootfs.*  # a build interrupted earlier
  rootfs=$(mktemp -d "$STORE/rootfs.XXXXXX")
  debootstrap --variant=minbase --include="$BASE_PACKAGES" "$SUITE" "$rootfs" "$MIRROR" >&2 ||
    die "debootstrap failed; its log: $rootfs/debootstrap/debootstrap.log"
  # As in the python image: `python` and `python3` on PATH.
  ln -sf "/usr/bin/$PYTHON" "$rootfs/usr/local/bin/python"
  ln -sf "/usr/bin/$PYTHON" "$rootfs/usr/local/bin/python3"
  local ca
  for ca in $(extra_cas); do cp "$ca" "$rootfs/usr/local/share/ca-certificates/"; done
  chroot "$rootfs" update-ca-certificates >/dev/null
  # pip uses its own CA bundle unless told to use the system one (which now has those CAs).
  printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' >"$rootfs/etc/pip.conf"
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs/debootstrap"
  local ctr
  ctr=$(buildah from scratch)
  buildah copy --quiet "$ctr" "$rootfs/" / >/dev/null
  buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env LANG=C.UTF-8 --cmd "$PYTHON" "$ctr"
  buildah commit --quiet --rm "$ctr" "$ref" >/dev/null
  rm -rf "$rootfs"
  echo "$ref"
}

# The pod sandbox ("pause") image the kubelet's containerd starts first in every pod: Debian's
# static catatonit in its pause mode, instead of registry.k8s.io/pause.
build_pause() {
  local ref
  ref="localhost/llmft/pause:$(sha256sum /usr/bin/catatonit | hash_of)"
  if ! has_image "$ref"; then
    local ctr
    ctr=$(buildah from scratch)
    buildah copy --quiet "$ctr" /usr/bin/catatonit /catatonit >/dev/null
    buildah config --entrypoint '["/catatonit", "-P"]' --user 65535:65535 "$ctr"
    buildah commit --quiet --rm "$ctr" "$ref" >/dev/null
  fi
  echo "$ref"
}

# The files the Dockerfile copies, as the build context sees them (.dockerignore's exclusions),
# less README.md: it goes into the llmft wheel only as its long description (pyproject's
# `readme`), which nothing in an image reads, and every commit that touches the docs would
# otherwise rebuild and re-import the four images (minutes on the node). An image built before a
# README-only change is reused; the next change to what runs rebuilds it with the new README.
context_hash() {
  (cd "$ROOT" && find pyproject.toml src operator -type f \
    ! -path '*/__pycache__/*' ! -name '*.pyc' ! -path '*.egg-info/*' -print0 |
    sort -z | xargs -0 sha256sum) | hash_of
}

mkdir -p "$STORE"
base=
[ "${selected[*]}" = pause ] || base=$(build_base)
build_args=(--build-arg "PYTHON_IMAGE=$base" --build-arg "CUDA_IMAGE=$base"
  --build-arg "PYTHON=$PYTHON")
key=$( { cat "$ROOT/images/Dockerfile"; context_hash; echo "$base ${build_args[*]}";
  command buildah --version; } | hash_of)

refs=()
for name in "${selected[@]}"; do
  ref="localhost/llmft/$name:$key"
  if [ "$name" = pause ]; then
    ref=$(build_pause)
  elif ! has_image "$ref"; then
    log "building $name"
    start=$(date +%s)
    buildah build --isolation chroot --layers --target "$name" --file "$ROOT/images/Dockerfile" \
      "${build_args[@]}" --tag "$ref" "$ROOT" >&2
    log "$name built in $(($(date +%s) - start))s"
  fi
  if [ -n "$import_sock" ]; then
    ctr=(ctr --address "$import_sock" --namespace k8s.io)
    # The list first: `grep -q` stops reading early, and pipefail would count ctr's SIGPIPE.
    listed=$("${ctr[@]}" images ls -q)
    if ! grep -qxF "$ref" <<<"$listed"; then
      log "importing $name into containerd"
      start=$(date +%s)
      archive="$STORE/$name-$key.tar"
      # Uncompressed: compressing the torch layer takes minutes of a busy two-core machine,
      # and an uncompressed layer's digest is the same at every push, so containerd keeps the
      # layers it has.
      buildah push --quiet --disable-compression "$ref" "oci-archive:$archive:$ref" >/dev/null
      "${ctr[@]}" images import --base-name "localhost/llmft/$name" "$archive" >/dev/null
      rm -f "$archive"
      log "$name imported in $(($(date +%s) - start))s"
    fi
    # Older builds of this image leave the node (containerd collects their layers).
    "${ctr[@]}" images ls -q | while read -r old; do
      [[ "$old" == "localhost/llmft/$name:"* && "$old" != "$ref" ]] || continue
      "${ctr[@]}" images rm "$old" >/dev/null
    done
  fi
  refs+=("$ref")
  echo "$name $ref"
done

# The kubelet's containerd also names each image it runs by its ID (sha256:...). Such a name
# outlives the image's tag, and keeps an old build's layers alive: an ID whose manifest no tagged
# image has any more goes too.
if [ -n "$import_sock" ]; then
  ctr=(ctr --address "$import_sock" --namespace k8s.io)
  listed=$("${ctr[@]}" images ls)
  tagged=$(awk 'NR > 1 && $1 !~ /^sha256:/ {print $3}' <<<"$listed")
  awk '$1 ~ /^sha256:/ {print $1, $3}' <<<"$listed" | while read -r id digest; do
    grep -qxF "$digest" <<<"$tagged" || "${ctr[@]}" images rm "$id" >/dev/null
  done
fi

# Older builds of these images leave buildah's store too, then the layers no image uses any
# more (the layer cache of the current builds stays).
buildah images --format '{{.Name}}:{{.Tag}}' | while read -r old; do
  name=${old#localhost/llmft/}
  name=${name%%:*}
  [[ " ${selected[*]} " == *" $name "* && " ${refs[*]} " != *" $old "* ]] || continue
  buildah rmi "$old" >/dev/null
done
buildah rmi --prune >/dev/null 2>&1 || true
