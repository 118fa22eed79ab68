#!/usr/bin/env bash
# The Prometheus operator's real CRDs (ServiceMonitor, PodMonitor, PrometheusRule), for the tests
# that check what the chart renders for monitoring.
#
# They ship inside the prometheus-operator Go module (example/prometheus-operator-crd/), so the Go
# module proxy serves them, checksummed against sum.golang.org like any module. We
# `go mod download` the pinned version and copy the three files into
# ${COMPLIANCE_TOOLS_CACHE:-$HOME/.cache/compliance-reporting}/monitoring-crds/<version>/.
# Idempotent: when the three files are there, nothing is downloaded.
# The last line printed on stdout is that directory.
#
# Usage: DIR=$(scripts/monitoring-crds.sh | tail -n1)
set -euo pipefail

# v0.85.0 is the newest version the module proxy serves here (newer ones answer 403).
VERSION="${PROMETHEUS_OPERATOR_VERSION:-v0.85.0}"
MODULE=github.com/prometheus-operator/prometheus-operator
KINDS=(servicemonitors podmonitors prometheusrules)

CACHE="${COMPLIANCE_TOOLS_CACHE:-$HOME/.cache/compliance-reporting}"
OUT="$CACHE/monitoring-crds/$VERSION"

have_all() {
  local kind
  for kind in "${KINDS[@]}"; do
    [[ -s "$OUT/monitoring.coreos.com_$kind.yaml" ]] || return 1
  done
}

if ! have_all; then
  command -v go >/dev/null || { echo "error: go is needed to fetch $MODULE@$VERSION" >&2; exit 1; }
  mkdir -p "$CACHE"
  exec 9>"$CACHE/.monitoring-crds.lock"
  if command -v flock >/dev/null 2>&1; then flock 9; fi
  if ! have_all; then
    # GOFLAGS=-mod=mod: run outside any module; the download lands in the module cache (read-only).
    dir=$(cd "$CACHE" && GOFLAGS=-mod=mod go mod download -json "$MODULE@$VERSION" |
          "${PYTHON:-python3}" -c 'import json,sys; d=json.load(sys.stdin); sys.exit(d["Error"]) if d.get("Error") else print(d["Dir"])')
    mkdir -p "$OUT.tmp"
    for kind in "${KINDS[@]}"; do
      cp "$dir/example/prometheus-operator-crd/monitoring.coreos.com_$kind.yaml" "$OUT.tmp/"
    done
    chmod 0644 "$OUT.tmp"/*.yaml
    rm -rf "$OUT" && mv "$OUT.tmp" "$OUT"
  fi
fi
echo "$OUT"
