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

if [[ $# -gt 0 || ${COMPLIANCE_SERIAL_TESTS:-} == 1 ]]; then
  COMPLIANCE_TIER_NOTES="$notes" "$VENV/bin/pytest" "$@"
  rc=$?
  verdict $rc "pytest $*"; rc=$?
else
  # The whole suite, in three pytest processes side by side. Most of its time is waiting (on
  # worker processes, pods, a kube-apiserver; the machine's load stays under one), so they
  # overlap well on 2 cores:
  # - tests/node (a real cluster), started first; the others start once its builds are done,
  #   so no Go or image build ever runs beside a test;
  # - the tiers with a heavy session of their own (tests/k8s, tests/console, tests/chart,
  #   tests/image);
  # - everything else (tests/integration, operator, reports, unit, and any new directory).
  # The Kubernetes binaries both cluster tiers use are built first, one heavy job at a time
  # (cached: seconds when warm); a build that fails here fails again, with its log, in its tier.
  for version in v1.34.4 v1.35.4; do
    scripts/envtest-binaries.sh "$version" >/dev/null 2>"$work/envtest-$version.log" ||
      echo "(scripts/envtest-binaries.sh $version failed here; tests/k8s reports it)"
  done
  side=(tests/k8s tests/console tests/chart tests/image)
  echo "== pytest tests/node, then ${side[*]}, beside the rest (their output follows the rest's)"
  COMPLIANCE_TIER_NOTES="$notes" COMPLIANCE_NODE_READY_FILE="$work/node-ready" \
    "$VENV/bin/pytest" -p no:cacheprovider tests/node >"$work/node.log" 2>&1 &
  node_pid=$!
  while [[ ! -e $work/node-ready ]] && kill -0 "$node_pid" 2>/dev/null; do sleep 2; done
  COMPLIANCE_TIER_NOTES="$notes" "$VENV/bin/pytest" -p no:cacheprovider "${side[@]}" \
    >"$work/side.log" 2>&1 &
  side_pid=$!
  ignores=(--ignore=tests/node)
  for dir in "${side[@]}"; do ignores+=("--ignore=$dir"); done
  echo "== pytest (everything but tests/node and ${side[*]})"
  COMPLIANCE_TIER_NOTES="$notes" "$VENV/bin/pytest" "${ignores[@]}"
  rc=$?
  verdict $rc "the rest"; rc=$?
  wait "$side_pid"
  side_rc=$?
  echo
  echo "== pytest ${side[*]}: its output"
  cat "$work/side.log"
  verdict $side_rc "${side[*]}"; side_rc=$?
  wait "$node_pid"
  node_rc=$?
  echo
  echo "== pytest tests/node: its output"
  cat "$work/node.log"
  verdict $node_rc "tests/node"; node_rc=$?
  for each in $side_rc $node_rc; do
    [[ $rc -eq 0 ]] && rc=$each
  done
fi
if [[ -s $notes ]]; then
  echo
  sed 's/^/NOTE: /' "$notes"
fi
exit $rc
