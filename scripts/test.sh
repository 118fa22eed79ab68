#!/usr/bin/env bash
# Lint, type-check and run every test tier. pytest's exit 5 ("no tests ran") is a failure.
set -uo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
set -e
echo "== ruff"; "$VENV/bin/ruff" check service operator tests bench scripts
echo "== mypy"; "$VENV/bin/mypy"
echo "== import contracts"; "$VENV/bin/lint-imports"
set +e
echo "== pytest"
# Tiers that skip themselves on this machine (tests/node: no container engine) write one line
# here; it is repeated as the last thing `make test` prints.
notes="$(mktemp)"
work="$(mktemp -d)"
trap 'rm -rf "$notes" "$work"' EXIT

# pytest's exit 5 ("no tests ran") is a failure like any other.
verdict() {
  if [[ $1 -eq 5 ]]; then
    echo "pytest collected no tests ($2): failing on purpose" >&2
    return 1
  fi
  return "$1"
}

if [[ $# -gt 0 || ${COMPLIANCE_SKIP_NODE:-} == 1 || ${COMPLIANCE_SERIAL_TESTS:-} == 1 ]]; then
  COMPLIANCE_TIER_NOTES="$notes" "$VENV/bin/pytest" "$@"
  rc=$?
  verdict $rc "pytest $*"; rc=$?
else
  # The whole suite: the node tier (tests/node, a real cluster, mostly waiting on pods) runs
  # beside the rest, in its own pytest, once its builds are done. The Kubernetes binaries both
  # use are built first, one heavy job at a time (all cached; seconds when warm); a build that
  # fails here fails again, with its log, in the tier that needs it.
  for version in v1.34.4 v1.35.4; do
    scripts/envtest-binaries.sh "$version" >/dev/null 2>"$work/envtest-$version.log" ||
      echo "(scripts/envtest-binaries.sh $version failed here; tests/k8s reports it)"
  done
  echo "== pytest tests/node (beside the rest; its output follows theirs)"
  COMPLIANCE_TIER_NOTES="$notes" COMPLIANCE_NODE_READY_FILE="$work/node-ready" \
    "$VENV/bin/pytest" -p no:cacheprovider tests/node >"$work/node.log" 2>&1 &
  node_pid=$!
  while [[ ! -e $work/node-ready ]] && kill -0 "$node_pid" 2>/dev/null; do sleep 2; done
  echo "== pytest (everything but tests/node)"
  COMPLIANCE_TIER_NOTES="$notes" "$VENV/bin/pytest" --ignore=tests/node
  rc=$?
  verdict $rc "everything but tests/node"; rc=$?
  wait "$node_pid"
  node_rc=$?
  echo
  echo "== pytest tests/node: its output"
  cat "$work/node.log"
  verdict $node_rc "tests/node"; node_rc=$?
  [[ $rc -eq 0 ]] && rc=$node_rc
fi
if [[ -s $notes ]]; then
  echo
  sed 's/^/NOTE: /' "$notes"
fi
exit $rc
