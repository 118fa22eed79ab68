#!/usr/bin/env bash
# Build (once) the container images the node tier (tests/node) runs, with a real Docker engine,
# and keep them as one `docker save` archive that `ctr -n k8s.io images import` loads.
#
#   scripts/node-images.sh [K8S_VERSION]       # default: $NODE_K8S_VERSION or v1.35.4
#
# Images (no registry is reachable, so everything is made here):
#   * a Debian bookworm base from `debootstrap --variant=minbase` (python3, venv, redis-server,
#     CA certificates incl. the host's extra ones in /usr/local/share/ca-certificates), tagged as
#     the Dockerfile's `FROM` (the PYTHON_IMAGE default) and as $NODE_REDIS_IMAGE;
#   * the project's image: `DOCKER_BUILDKIT=0 docker build` of the Dockerfile, unchanged, tagged
#     $NODE_IMAGE (default compliance-reporting:node);
#   * registry.k8s.io/pause:<version>: pause.c from the k8s.io/kubernetes module, `gcc -static`.
#
# Output: ${COMPLIANCE_TOOLS_CACHE:-$HOME/.cache/compliance-reporting}/node/images/images-<key>.tar
# (the LAST stdout line; the line before it is the base rootfs tarball, which the skaffold test
# imports into its own Docker engine as the Dockerfile's FROM), keyed on: the Dockerfile and every file it copies (.dockerignore's
# list), this script, the Debian suite/mirror, the host's extra CA certificates and the pause
# version. The debootstrap rootfs is cached separately (base-<key>.tar.gz), so a code change
# rebuilds only the project's image (~2 min), not the base (~3.5 min).
#
# dockerd runs only while building, with its data and exec roots in a temp dir under the cache,
# no bridge and no iptables rules (builds use --network host); it is stopped by PID at exit.
# Exit 3 means the container engine could not start here (the tier then skips).
set -euo pipefail

K8S_VERSION="${1:-${NODE_K8S_VERSION:-v1.35.4}}"
PAUSE_VERSION="${NODE_PAUSE_VERSION:-3.10.1}"
IMAGE="${NODE_IMAGE:-compliance-reporting:node}"
REDIS_IMAGE="${NODE_REDIS_IMAGE:-compliance-node/redis:bookworm}"
SUITE=bookworm
MIRROR="${NODE_DEBIAN_MIRROR:-$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
BASE_PACKAGES="python3,python3-venv,python-is-python3,ca-certificates,redis-server,redis-tools"
repo="$(cd "$(dirname "$0")/.." && pwd)"
CACHE="${COMPLIANCE_TOOLS_CACHE:-$HOME/.cache/compliance-reporting}"
out_dir="$CACHE/node/images"
python_image="$(sed -nE 's/^ARG PYTHON_IMAGE=(.*)$/\1/p' "$repo/Dockerfile" | head -n1)"
[[ -n $python_image ]] || { echo "node-images: no 'ARG PYTHON_IMAGE=' in the Dockerfile" >&2; exit 2; }

log() { echo "node-images: $*" >&2; }
sha() { sha256sum | cut -c1-16; }

extra_cas() { ls /usr/local/share/ca-certificates/*.crt 2>/dev/null | sort || true; }
base_key="$( { echo "$SUITE $MIRROR $BASE_PACKAGES"; for f in $(extra_cas); do cat "$f"; done; } | sha)"
# The build context exactly as .dockerignore lets it through (pyproject, README, constraints, code).
context_files() {
  cd "$repo"
  { ls pyproject.toml README.md constraints.txt
    find service operator -type f ! -path '*/__pycache__/*' ! -name '*.pyc' ! -path '*.egg-info/*'; } | LC_ALL=C sort
}
images_key="$( {
  echo "$base_key $K8S_VERSION $PAUSE_VERSION $IMAGE $REDIS_IMAGE $python_image"
  cat "$repo/Dockerfile" "$repo/.dockerignore" "$0"
  (cd "$repo" && context_files | xargs -d '\n' sha256sum)
} | sha)"
base_tar="$out_dir/base-$SUITE-$base_key.tar.gz"
images_tar="$out_dir/images-$images_key.tar"

if [[ -s $images_tar && -s $base_tar ]]; then
  log "reusing $images_tar"
  echo "$base_tar"
  echo "$images_tar"
  exit 0
fi

mkdir -p "$out_dir"
exec 9>"$out_dir/.lock"
if command -v flock >/dev/null 2>&1; then flock 9; fi
if [[ -s $images_tar && -s $base_tar ]]; then log "reusing $images_tar"; echo "$base_tar"; echo "$images_tar"; exit 0; fi

for c in dockerd debootstrap gcc; do
  command -v "$c" >/dev/null || { log "$c is missing (scripts/system-deps.sh node installs it)"; exit 3; }
done
docker_cli=/usr/bin/docker  # the client that ships with Debian's dockerd (same API version)
[[ -x $docker_cli ]] || docker_cli="$(command -v docker)"

work="$(mktemp -d "$out_dir/.work.XXXXXX")"
cgroups_before="$(echo /sys/fs/cgroup/*/docker)"
dockerd_pid=""
cleanup() {
  local rc=$?
  if [[ -n $dockerd_pid ]] && kill -0 "$dockerd_pid" 2>/dev/null; then
    kill -TERM "$dockerd_pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$dockerd_pid" 2>/dev/null || true
  fi
  # The cgroups dockerd made (cgroupfs driver), when it made them and they are empty.
  for d in /sys/fs/cgroup/*/docker; do
    [[ -d $d && " $cgroups_before " != *" $d "* ]] && rmdir "$d" 2>/dev/null || true
  done
  # Anything dockerd or debootstrap left mounted under the work dir, deepest first.
  awk -v w="$work" 'index($2, w) == 1 {print $2}' /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
t_start=$(date +%s)

# ---- 1. the Debian base rootfs (debootstrap), cached on its own key
if [[ ! -s $base_tar ]]; then
  t0=$(date +%s)
  log "debootstrap --variant=minbase $SUITE from $MIRROR (+ $BASE_PACKAGES) ..."
  rootfs="$work/rootfs"
  debootstrap --variant=minbase --include="$BASE_PACKAGES" "$SUITE" "$rootfs" "$MIRROR" >"$work/debootstrap.log" 2>&1 \
    || { tail -n 30 "$work/debootstrap.log" >&2; log "debootstrap failed"; exit 1; }
  for f in $(extra_cas); do cp "$f" "$rootfs/usr/local/share/ca-certificates/"; done
  chroot "$rootfs" update-ca-certificates >/dev/null 2>&1
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb
  tar -C "$rootfs" --numeric-owner -czf "$base_tar.tmp" .
  mv "$base_tar.tmp" "$base_tar"
  rm -rf "$rootfs"
  log "base rootfs in $(( $(date +%s) - t0 ))s: $base_tar ($(du -h "$base_tar" | cut -f1))"
else
  log "reusing base rootfs $base_tar"
fi

# ---- 2. the pause binary from the k8s.io/kubernetes module
gomodcache="$(PATH="/usr/local/go/bin:$PATH" go env GOMODCACHE 2>/dev/null || echo "$HOME/go/pkg/mod")"
pause_c="$gomodcache/k8s.io/kubernetes@$K8S_VERSION/build/pause/linux/pause.c"
if [[ ! -f $pause_c ]]; then
  log "no $pause_c: scripts/envtest-binaries.sh $K8S_VERSION downloads the module"
  exit 1
fi
mkdir -p "$work/pause"
gcc -Os -static -DVERSION="v$PAUSE_VERSION-compliance" -o "$work/pause/pause" "$pause_c"
strip "$work/pause/pause" 2>/dev/null || true

# ---- 3. a Docker engine of our own, only for these builds
mkdir -p "$work/docker/data" "$work/docker/exec"
sock="$work/docker/docker.sock"
dockerd --data-root "$work/docker/data" --exec-root "$work/docker/exec" \
  --pidfile "$work/docker/dockerd.pid" -H "unix://$sock" \
  --bridge=none --iptables=false --ip-masq=false --ip6tables=false \
  >"$work/dockerd.log" 2>&1 &
dockerd_pid=$!
export DOCKER_HOST="unix://$sock"
for _ in $(seq 1 150); do
  "$docker_cli" version >/dev/null 2>&1 && break
  kill -0 "$dockerd_pid" 2>/dev/null || break
  sleep 0.2
done
if ! "$docker_cli" version >/dev/null 2>&1; then
  log "the Docker engine could not start here:"
  tail -n 15 "$work/dockerd.log" >&2
  exit 3
fi
log "dockerd $("$docker_cli" version --format '{{.Server.Version}}') up (pid $dockerd_pid)"

# ---- 4. images
t0=$(date +%s)
"$docker_cli" import --change 'CMD ["/bin/bash"]' "$base_tar" "$python_image" >/dev/null
"$docker_cli" tag "$python_image" "$REDIS_IMAGE"
tar -C "$work/pause" -c pause | "$docker_cli" import --change 'ENTRYPOINT ["/pause"]' - "registry.k8s.io/pause:$PAUSE_VERSION" >/dev/null
log "base + pause imported in $(( $(date +%s) - t0 ))s"

t0=$(date +%s)
log "DOCKER_BUILDKIT=0 docker build -t $IMAGE (FROM $python_image) ..."
if ! DOCKER_BUILDKIT=0 "$docker_cli" build --network host -t "$IMAGE" "$repo" >"$work/build.log" 2>&1; then
  tail -n 40 "$work/build.log" >&2
  log "docker build failed"
  exit 1
fi
log "built $IMAGE in $(( $(date +%s) - t0 ))s"

"$docker_cli" save -o "$images_tar.tmp" "$IMAGE" "$REDIS_IMAGE" "registry.k8s.io/pause:$PAUSE_VERSION"
mv "$images_tar.tmp" "$images_tar"
# Older archives of the project image are stale: keep only this one (and the base).
find "$out_dir" -maxdepth 1 -name 'images-*.tar' ! -path "$images_tar" -delete
log "done in $(( $(date +%s) - t_start ))s: $images_tar ($(du -h "$images_tar" | cut -f1))"
echo "$base_tar"
echo "$images_tar"
