#!/usr/bin/env bash
# Build (once) what the node tier (tests/node) runs besides the envtest control plane:
# kubelet, kube-scheduler and kube-proxy from the same Go module as tests/k8s/envtest/vX.Y
# (scripts/envtest-binaries.sh with ENVTEST_CACHE_DIR=node), CoreDNS and metrics-server from their
# own Go modules.
#
#   scripts/node-binaries.sh [K8S_VERSION]      # default: $NODE_K8S_VERSION or v1.35.4
#
# Output, under ${COMPLIANCE_TOOLS_CACHE:-$HOME/.cache/compliance-reporting}:
#   envtest/<K8S_VERSION>/{kube-apiserver,kube-controller-manager,etcd}
#   node/<K8S_VERSION>/{kubelet,kube-scheduler,kube-proxy}
#   node/coredns-<COREDNS_VERSION>/coredns
#   node/metrics-server-<METRICS_SERVER_VERSION>/metrics-server
# The LAST four lines on stdout are those directories, in that order; logs go to stderr.
# Each is keyed on its inputs (go.mod/go.sum or the module version, and the Go toolchain):
# a warm run is a fast no-op.
set -euo pipefail

K8S_VERSION="${1:-${NODE_K8S_VERSION:-v1.35.4}}"
COREDNS_VERSION="${NODE_COREDNS_VERSION:-v1.12.1}"
METRICS_SERVER_VERSION="${NODE_METRICS_SERVER_VERSION:-v0.8.0}"
repo="$(cd "$(dirname "$0")/.." && pwd)"
CACHE="${COMPLIANCE_TOOLS_CACHE:-$HOME/.cache/compliance-reporting}"

log() { echo "node-binaries: $*" >&2; }

if ! command -v go >/dev/null 2>&1 && [[ -x /usr/local/go/bin/go ]]; then
  export PATH="/usr/local/go/bin:$PATH"
fi
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"

envtest_dir="$(bash "$repo/scripts/envtest-binaries.sh" "$K8S_VERSION" | tail -n1)"
node_dir="$(ENVTEST_CACHE_DIR=node ENVTEST_COMPONENTS="kubelet kube-scheduler kube-proxy" \
  bash "$repo/scripts/envtest-binaries.sh" "$K8S_VERSION" | tail -n1)"

# CoreDNS and metrics-server: a plain `go install` of each module (no replace directives),
# keyed on version + Go.
go_install() {  # <name> <module path of the command>@<version> -> prints the directory
  local name="$1" pkg="$2" version="${2##*@}"
  local dir="$CACHE/node/$name-$version"
  local stamp
  stamp="$(echo "$pkg $(go env GOVERSION GOOS GOARCH)" | sha256sum | cut -d' ' -f1)"
  if [[ -x "$dir/$name" && -f "$dir/.stamp" && "$(cat "$dir/.stamp")" == "$stamp" ]]; then
    log "reusing $dir"
    echo "$dir"
    return
  fi
  mkdir -p "$CACHE/node"
  (
    exec 9>"$CACHE/node/.lock-$name"
    if command -v flock >/dev/null 2>&1; then flock 9; fi
    tmp="$(mktemp -d "$CACHE/node/.build-$name.XXXXXX")"
    trap 'rm -rf "$tmp"' EXIT
    t0=$(date +%s)
    log "building $pkg with $(go env GOVERSION) ..."
    GOBIN="$tmp" CGO_ENABLED=0 GOFLAGS= go install -trimpath -ldflags "-s -w" "$pkg" >&2
    echo "$stamp" >"$tmp/.stamp"
    chmod 755 "$tmp"
    rm -rf "$dir"
    mv "$tmp" "$dir"
    trap - EXIT
    log "built $name in $(( $(date +%s) - t0 ))s"
  )
  echo "$dir"
}
dns_dir="$(go_install coredns "github.com/coredns/coredns@$COREDNS_VERSION")"
metrics_dir="$(go_install metrics-server "sigs.k8s.io/metrics-server/cmd/metrics-server@$METRICS_SERVER_VERSION")"

echo "$envtest_dir"
echo "$node_dir"
echo "$dns_dir"
echo "$metrics_dir"
