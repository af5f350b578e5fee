#!/usr/bin/env bash
# Builds the four llmft images (operator, datagen, trainer, evaluator) from the repository root
# and tags them all with one version: the package version in pyproject.toml, which is also the
# Helm chart's appVersion, so `helm install` pulls exactly what this script built.
#
#   images/build.sh                      build all four as $REGISTRY/<name>:<version>
#   images/build.sh --push               ... and push them
#   images/build.sh --dry-run            print the commands instead of running them
#   images/build.sh trainer evaluator    build only these
#
# Environment: REGISTRY (default ghcr.io/llmft, the chart's images.registry), VERSION (default
# from pyproject.toml), DOCKER (default docker; podman and nerdctl take the same arguments),
# PLATFORM (e.g. linux/amd64; default the engine's own), EXTRA_TAGS (space-separated, e.g.
# "latest").
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
IMAGES=(operator datagen trainer evaluator)
REGISTRY="${REGISTRY:-ghcr.io/llmft}"
DOCKER="${DOCKER:-docker}"
PUSH=false
DRY_RUN=false
selected=()

usage() { sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

for arg in "$@"; do
  case "$arg" in
    --push) PUSH=true ;;
    --dry-run) DRY_RUN=true ;;
    -h|--help) usage; exit 0 ;;
    -*) echo "build.sh: unknown option $arg" >&2; usage >&2; exit 2 ;;
    *)
      if [[ ! " ${IMAGES[*]} " == *" $arg "* ]]; then
        echo "build.sh: unknown image '$arg' (expected one of: ${IMAGES[*]})" >&2
        exit 2
      fi
      selected+=("$arg") ;;
  esac
done
[ ${#selected[@]} -gt 0 ] || selected=("${IMAGES[@]}")

if [ -z "${VERSION:-}" ]; then
  # The [project] table's version line; no TOML parser needed for one key.
  VERSION="$(sed -n 's/^version *= *"\([^"]*\)".*/\1/p' "$ROOT/pyproject.toml" | head -n 1)"
fi
if [ -z "$VERSION" ]; then
  echo "build.sh: no version in $ROOT/pyproject.toml; set VERSION" >&2
  exit 1
fi
REVISION="$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)"
CREATED="$(date -u +%Y-%m-%dT%H:%M:%SZ)"

run() {
  if $DRY_RUN; then
    printf '%q ' "$@"; printf '\n'
  else
    "$@"
  fi
}

for name in "${selected[@]}"; do
  ref="$REGISTRY/$name:$VERSION"
  args=(build --file "$ROOT/images/Dockerfile" --target "$name" --tag "$ref"
        --build-arg "VERSION=$VERSION" --build-arg "REVISION=$REVISION"
        --build-arg "CREATED=$CREATED")
  for extra in ${EXTRA_TAGS:-}; do args+=(--tag "$REGISTRY/$name:$extra"); done
  [ -z "${PLATFORM:-}" ] || args+=(--platform "$PLATFORM")
  run "$DOCKER" "${args[@]}" "$ROOT"
  if $PUSH; then
    run "$DOCKER" push "$ref"
    for extra in ${EXTRA_TAGS:-}; do run "$DOCKER" push "$REGISTRY/$name:$extra"; done
  fi
done
