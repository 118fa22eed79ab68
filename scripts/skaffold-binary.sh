#!/usr/bin/env bash
# Build (once) skaffold from its Go module, for the node tier's skaffold test
# (tests/node/test_skaffold_on_node.py) and for anyone who wants the repo's skaffold.yaml
# without a downloaded binary.
#
#   scripts/skaffold-binary.sh [VERSION]       # default: $NODE_SKAFFOLD_VERSION or v2.16.1
#
# Output: ${COMPLIANCE_TOOLS_CACHE:-$HOME/.cache/compliance-reporting}/node/skaffold-<VERSION>-<go version>/skaffold
# (the directory is the LAST stdout line; logs go to stderr). Keyed on the version, the Go
# toolchain and the build flags: a warm run is a fast no-op. (Not SKAFFOLD_VERSION: skaffold reads
# SKAFFOLD_* variables as its own flags.)
#
# `go install github.com/GoogleContainerTools/skaffold/v2/cmd/skaffold@VERSION` refuses the module
# (its go.mod has `replace` directives: docker/docker, docker/cli, viper, ...), so the module's
# source is fetched with `go mod download -json` (the Go module proxy, checked against go.sum) and
# built inside a copy of it, with its own go.mod/go.sum and so its own replaces: exactly the
# dependency set upstream releases. As cheap as it gets: CGO_ENABLED=0, -trimpath, -s -w,
# upstream's Linux tags (osusergo netgo release timetzdata). No vendor directory ships in the module
# zip, so -mod=readonly with the module cache.
set -euo pipefail

VERSION="${1:-${NODE_SKAFFOLD_VERSION:-v2.16.1}}"
MODULE=github.com/GoogleContainerTools/skaffold/v2
CACHE="${COMPLIANCE_TOOLS_CACHE:-$HOME/.cache/compliance-reporting}"

log() { echo "skaffold-binary: $*" >&2; }

if ! command -v go >/dev/null 2>&1 && [[ -x /usr/local/go/bin/go ]]; then
  export PATH="/usr/local/go/bin:$PATH"
fi
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"

goversion="$(go env GOVERSION)"
dir="$CACHE/node/skaffold-$VERSION-$goversion"
tags="timetzdata osusergo netgo release"
ldflags="-s -w -X $MODULE/pkg/skaffold/version.version=$VERSION"
stamp="$(echo "$MODULE@$VERSION $(go env GOVERSION GOOS GOARCH) CGO_ENABLED=0 -trimpath -tags $tags -ldflags $ldflags" \
  | sha256sum | cut -d' ' -f1)"
if [[ -x $dir/skaffold && -f $dir/.stamp && "$(cat "$dir/.stamp")" == "$stamp" ]]; then
  log "reusing $dir"
  echo "$dir"
  exit 0
fi

mkdir -p "$CACHE/node"
exec 9>"$CACHE/node/.lock-skaffold"
if command -v flock >/dev/null 2>&1; then flock 9; fi
if [[ -x $dir/skaffold && -f $dir/.stamp && "$(cat "$dir/.stamp")" == "$stamp" ]]; then
  log "reusing $dir"; echo "$dir"; exit 0
fi

tmp="$(mktemp -d "$CACHE/node/.build-skaffold.XXXXXX")"
trap 'chmod -R u+w "$tmp" 2>/dev/null; rm -rf "$tmp"' EXIT
t0=$(date +%s)

# The module's source (zip verified against the checksum database by the go command).
src_dir="$(cd "$tmp" && GOFLAGS=-mod=mod go mod download -json "$MODULE@$VERSION" \
  | sed -nE 's/^[[:space:]]*"Dir": "(.*)",?$/\1/p')"
[[ -n $src_dir && -f $src_dir/go.mod ]] || { log "go mod download $MODULE@$VERSION gave no source"; exit 1; }
# A writable copy: the module cache is read-only and the go command must be able to lock go.mod.
cp -r "$src_dir" "$tmp/src"
chmod -R u+w "$tmp/src"
t1=$(date +%s)
log "source of $MODULE@$VERSION in $(( t1 - t0 ))s; building cmd/skaffold with $goversion ..."

(cd "$tmp/src" && CGO_ENABLED=0 GOFLAGS=-mod=readonly go build -trimpath \
  -tags "$tags" -ldflags "$ldflags" -o "$tmp/out/skaffold" ./cmd/skaffold) >&2
"$tmp/out/skaffold" version >/dev/null
echo "$stamp" >"$tmp/out/.stamp"
chmod 755 "$tmp/out"
rm -rf "$dir"
mv "$tmp/out" "$dir"
# Older builds (another version or Go) are stale.
find "$CACHE/node" -maxdepth 1 -name 'skaffold-*' ! -path "$dir" -exec rm -rf {} +
log "built skaffold $VERSION in $(( $(date +%s) - t0 ))s (compile $(( $(date +%s) - t1 ))s): $dir ($(du -h "$dir/skaffold" | cut -f1))"
echo "$dir"
