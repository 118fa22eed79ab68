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
  # - tests/node (a real cluster), started first; the others start once its builds (Go
  #   binaries, images) are done, so those never run beside a test;
  # - the tiers with a heavy session of their own (tests/k8s, tests/console, tests/chart,
  #   tests/image);
  # - everything else (tests/integration, operator, reports, unit, and any new directory).
  # The cached Kubernetes binaries and images are built first, one heavy job at a time (seconds
  # when warm); a build that fails here fails again, with its log, in its tier. (Two tests still
  # build at test time: the skaffold test's `docker build` and tests/image's venv.)
  if [[ ${COMPLIANCE_SKIP_K8S:-} != 1 ]]; then
    IFS=, read -r -a versions <<<"${ENVTEST_K8S_VERSIONS:-${ENVTEST_K8S_VERSION:-v1.34.4,v1.35.4}}"
    for version in "${versions[@]}"; do
      scripts/envtest-binaries.sh "$version" >/dev/null 2>"$work/envtest-$version.log" ||
        echo "(scripts/envtest-binaries.sh $version failed here; tests/k8s reports it)"
    done
  fi
  side=(tests/k8s tests/console tests/chart tests/image)
  # Ctrl-C or SIGTERM: the side processes get SIGINT (pytest then tears its clusters down), their
  # output is shown, then the run ends. They run in process groups of their own (set -m), where
  # SIGINT is not ignored as it is for a script's background jobs.
  interrupted() {
    trap - INT TERM
    echo "== interrupted: stopping the side pytest processes (they tear down what they started)" >&2
    for pid in ${side_pid:-} ${node_pid:-}; do kill -INT -- "-$pid" 2>/dev/null; done
    wait
    for log in side node; do
      [[ -s $work/$log.log ]] && { echo "== pytest ($log): its output"; cat "$work/$log.log"; }
    done
    exit 130
  }
  trap interrupted INT TERM
  echo "== pytest tests/node, then ${side[*]}, beside the rest (their output follows the rest's)"
  set -m
  COMPLIANCE_TIER_NOTES="$notes" COMPLIANCE_NODE_READY_FILE="$work/node-ready" \
    "$VENV/bin/pytest" -p no:cacheprovider tests/node >"$work/node.log" 2>&1 &
  node_pid=$!
  set +m
  while [[ ! -e $work/node-ready ]] && kill -0 "$node_pid" 2>/dev/null; do sleep 2; done
  set -m
  COMPLIANCE_TIER_NOTES="$notes" "$VENV/bin/pytest" -p no:cacheprovider "${side[@]}" \
    >"$work/side.log" 2>&1 &
  side_pid=$!
  set +m
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
  trap - INT TERM
  for each in $side_rc $node_rc; do
    [[ $rc -eq 0 ]] && rc=$each
  done
fi
if [[ -s $notes ]]; then
  echo
  sed 's/^/NOTE: /' "$notes"
fi
exit $rc
