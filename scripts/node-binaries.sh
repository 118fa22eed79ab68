#!/usr/bin/env bash
# Build (once) what the node tier (tests/node) runs besides the envtest control plane:
# kubelet, kube-scheduler and kube-proxy from the same Go module as tests/k8s/envtest/vX.Y
# (scripts/envtest-binaries.sh with ENVTEST_CACHE_DIR=node), and CoreDNS from its own Go module.
#
#   scripts/node-binaries.sh [K8S_VERSION]      # default: $NODE_K8S_VERSION or v1.35.4
#
# Output, under ${COMPLIANCE_TOOLS_CACHE:-$HOME/.cache/compliance-reporting}:
#   envtest/<K8S_VERSION>/{kube-apiserver,kube-controller-manager,etcd}
#   node/<K8S_VERSION>/{kubelet,kube-scheduler,kube-proxy}
#   node/coredns-<COREDNS_VERSION>/coredns
# The LAST three lines on stdout are those directories, in that order; logs go to stderr.
# Each is keyed on its inputs (go.mod/go.sum or the module version, and the Go toolchain):
# a warm run is a fast no-op.
set -euo pipefail

K8S_VERSION="${1:-${NODE_K8S_VERSION:-v1.35.4}}"
COREDNS_VERSION="${NODE_COREDNS_VERSION:-v1.12.1}"
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

# CoreDNS: a plain `go install` of its module (no replace directives), keyed on version + Go.
dns_dir="$CACHE/node/coredns-$COREDNS_VERSION"
dns_stamp="$(echo "$COREDNS_VERSION $(go env GOVERSION GOOS GOARCH)" | sha256sum | cut -d' ' -f1)"
if [[ -x "$dns_dir/coredns" && -f "$dns_dir/.stamp" && "$(cat "$dns_dir/.stamp")" == "$dns_stamp" ]]; then
  log "reusing $dns_dir"
else
  mkdir -p "$CACHE/node"
  exec 9>"$CACHE/node/.lock-coredns"
  if command -v flock >/dev/null 2>&1; then flock 9; fi
  tmp="$(mktemp -d "$CACHE/node/.build-coredns.XXXXXX")"
  trap 'rm -rf "$tmp"' EXIT
  t0=$(date +%s)
  log "building coredns $COREDNS_VERSION with $(go env GOVERSION) ..."
  GOBIN="$tmp" CGO_ENABLED=0 GOFLAGS= go install -trimpath -ldflags "-s -w" \
    "github.com/coredns/coredns@$COREDNS_VERSION"
  echo "$dns_stamp" >"$tmp/.stamp"
  chmod 755 "$tmp"
  rm -rf "$dns_dir"
  mv "$tmp" "$dns_dir"
  trap - EXIT
  log "built coredns in $(( $(date +%s) - t0 ))s"
fi

echo "$envtest_dir"
echo "$node_dir"
echo "$dns_dir"
