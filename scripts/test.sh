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
trap 'rm -f "$notes"' EXIT
COMPLIANCE_TIER_NOTES="$notes" "$VENV/bin/pytest" "$@"
rc=$?
if [[ -s $notes ]]; then
  echo
  sed 's/^/NOTE: /' "$notes"
fi
if [[ $rc -eq 5 ]]; then
  echo "pytest collected no tests: failing on purpose" >&2
  exit 1
fi
exit $rc
