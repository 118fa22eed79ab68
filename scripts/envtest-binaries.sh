#!/usr/bin/env bash
# Build (once) a real kube-apiserver, kube-controller-manager and etcd from Go
# modules for the envtest-style control plane used by tests/k8s.
#
#   scripts/envtest-binaries.sh [K8S_VERSION]     # default: $ENVTEST_K8S_VERSION or v1.34.4
#
# Output: ${COMPLIANCE_TOOLS_CACHE:-$HOME/.cache/compliance-reporting}/envtest/<K8S_VERSION>/
#         {kube-apiserver,kube-controller-manager,etcd}
# The LAST line on stdout is that directory; everything else goes to stderr.
# Idempotent: when the binaries exist and were built from the same go.mod/go.sum
# and Go toolchain, this is a fast no-op. Concurrent runs are serialised (flock).
#
# Knobs: ENVTEST_BUILD_JOBS (go build -p, default 2), ENVTEST_COMPONENTS
# (default "kube-apiserver etcd kube-controller-manager"; the node tier also builds
# "kubelet kube-scheduler kube-proxy" from the same module), ENVTEST_CACHE_DIR (the
# cache subdirectory, default "envtest"; the node tier uses "node" so the two sets keep
# their own stamps), GOTOOLCHAIN (default local).
set -euo pipefail

K8S_VERSION="${1:-${ENVTEST_K8S_VERSION:-v1.34.4}}"
repo="$(cd "$(dirname "$0")/.." && pwd)"
minor="$(echo "$K8S_VERSION" | sed -E 's/^v([0-9]+)\.([0-9]+)\..*/v\1.\2/')"
moddir="$repo/tests/k8s/envtest/$minor"
CACHE="${COMPLIANCE_TOOLS_CACHE:-$HOME/.cache/compliance-reporting}"
SUB="${ENVTEST_CACHE_DIR:-envtest}"
out="$CACHE/$SUB/$K8S_VERSION"
COMPONENTS="${ENVTEST_COMPONENTS:-kube-apiserver etcd kube-controller-manager}"
JOBS="${ENVTEST_BUILD_JOBS:-2}"

log() { echo "envtest-binaries: $*" >&2; }

if [[ ! -f "$moddir/go.mod" ]]; then
  log "no Go module for $K8S_VERSION at $moddir (generate it with tests/k8s/envtest/gen-gomod.sh $K8S_VERSION)"
  exit 2
fi
if ! grep -qE "^\s*k8s\.io/kubernetes $K8S_VERSION\$" "$moddir/go.mod"; then
  log "$moddir/go.mod does not pin k8s.io/kubernetes $K8S_VERSION:"
  grep -E 'k8s\.io/kubernetes v' "$moddir/go.mod" >&2 || true
  exit 2
fi

if ! command -v go >/dev/null 2>&1 && [[ -x /usr/local/go/bin/go ]]; then
  export PATH="/usr/local/go/bin:$PATH"
fi
if ! command -v go >/dev/null 2>&1; then
  log "Go toolchain not found (need go >= $(awk '/^go /{print $2}' "$moddir/go.mod"))"
  exit 2
fi
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"
export GOFLAGS="${GOFLAGS:-} -mod=mod"
export CGO_ENABLED="${CGO_ENABLED:-0}"

# Key = requested components + go.mod + go.sum + toolchain; a change rebuilds.
stamp_value() {
  {
    echo "$K8S_VERSION $COMPONENTS"
    cat "$moddir/go.mod" "$moddir/go.sum"
    go env GOVERSION GOOS GOARCH CGO_ENABLED
  } | sha256sum | cut -d' ' -f1
}

is_fresh() {
  local c
  [[ -f "$out/.stamp" && "$(cat "$out/.stamp")" == "$(stamp_value)" ]] || return 1
  for c in $COMPONENTS; do [[ -x "$out/$c" ]] || return 1; done
}

if is_fresh; then
  log "reusing $out"
  echo "$out"
  exit 0
fi

mkdir -p "$CACHE/$SUB"
exec 9>"$CACHE/$SUB/.lock-$K8S_VERSION"
if command -v flock >/dev/null 2>&1; then flock 9; fi
if is_fresh; then # someone else built it while we waited for the lock
  log "reusing $out"
  echo "$out"
  exit 0
fi

major="${minor#v}"; major="${major%%.*}"
minor_num="${minor#*.}"
pkgs=(k8s.io/component-base/version k8s.io/client-go/pkg/version)
ldflags="-s -w"
for p in "${pkgs[@]}"; do
  ldflags+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=$major -X $p.gitMinor=$minor_num"
  ldflags+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
done

tmp="$(mktemp -d "$CACHE/$SUB/.build-$K8S_VERSION.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
start=$(date +%s)
cd "$moddir"
for c in $COMPONENTS; do
  case "$c" in
    etcd) pkg=go.etcd.io/etcd/server/v3 ;;
    kube-apiserver | kube-controller-manager | kube-scheduler | kubelet | kube-proxy)
      pkg="k8s.io/kubernetes/cmd/$c" ;;
    *) log "unknown component $c"; exit 2 ;;
  esac
  log "building $c ($pkg) for $K8S_VERSION with $(go env GOVERSION), -p $JOBS ..."
  t0=$(date +%s)
  go build -trimpath -p "$JOBS" -ldflags "$ldflags" -o "$tmp/$c" "$pkg"
  log "built $c in $(( $(date +%s) - t0 ))s"
done
for c in $COMPONENTS; do [[ $c == etcd ]] || { "$tmp/$c" --version >&2 2>/dev/null || true; }; done
stamp_value >"$tmp/.stamp"
chmod 755 "$tmp"

# Swap the finished directory in; never leave a half-built one at $out.
rm -rf "$out.old"
[[ -e "$out" ]] && mv "$out" "$out.old"
mv "$tmp" "$out"
rm -rf "$out.old"
trap - EXIT
log "done in $(( $(date +%s) - start ))s: $out"
echo "$out"
