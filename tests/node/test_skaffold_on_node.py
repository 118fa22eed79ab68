"""The repo's ``skaffold.yaml`` for real: skaffold (built from its Go module by
scripts/skaffold-binary.sh) builds the image with a local Docker engine and deploys the chart
onto the node, as a second release (``compliance`` in ``compliance-dev``, beside the tier's
``compliance`` in ``compliance``).

* ``skaffold build -p containerd --file-output``: the Dockerfile through the Docker engine's API
  (FROM the tier's Debian stand-in for the python image); the profile's ``after`` hook imports
  the image into containerd's ``k8s.io`` namespace (no registry here).
* ``skaffold deploy -p containerd,no-crds --build-artifacts``: ``helm install`` (Helm 3: skaffold
  v2.16's ``--post-renderer`` is an executable, which Helm 4 reads as a plugin name) with
  ``manifests/dev-values.yaml`` and the values ``setValueTemplates`` fills in, then skaffold's
  own status check of every Deployment and StatefulSet.
* The pods run exactly the image skaffold built (its tag carries the Docker image id, and
  containerd reports that id for every container), they are Ready, and ``/health`` answers
  through the Service that ``portForward`` names. ``skaffold delete`` removes the release.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from node_helpers import eventually
from nodecluster import NodeCluster

pytestmark = [pytest.mark.node, pytest.mark.timeout(1200)]

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("COMPLIANCE_TOOLS_CACHE", str(Path.home() / ".cache" / "compliance-reporting")))
SKAFFOLD_YAML = yaml.safe_load((REPO / "skaffold.yaml").read_text())
RELEASE = SKAFFOLD_YAML["deploy"]["helm"]["releases"][0]
DEV_NS = RELEASE["namespace"]
FORWARD = SKAFFOLD_YAML["portForward"][0]
# The chart's Redis image: the tier's Debian redis-server image, tagged with that name in
# containerd (no registry here), as node-images.sh tags its python stand-in.
CHART_REDIS = yaml.safe_load((REPO / "charts" / "compliance-reporting" / "values.yaml").read_text())["redis"]["image"]
NODE_REDIS = "compliance-node/redis:bookworm"
DOCKER = "/usr/bin/docker"


def _python_image() -> str:
    m = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", (REPO / "Dockerfile").read_text(), re.M)
    assert m, "no ARG PYTHON_IMAGE= in the Dockerfile"
    return m.group(1)


def _full(ref: str) -> str:
    """How containerd names a short Docker Hub reference."""
    if "/" not in ref.split(":", maxsplit=1)[0]:
        ref = "library/" + ref
    return ref if ref.split("/")[0].count(".") or ref.startswith("localhost") else "docker.io/" + ref


@pytest.fixture(scope="module")
def docker_engine(node_artifacts: dict[str, Path]) -> Iterator[dict[str, str]]:
    """A Docker engine of our own for skaffold's build (as scripts/node-images.sh runs one: data and
    exec roots in a temp dir, no bridge, no iptables rules), with the tier's Debian base imported
    as the Dockerfile's FROM. Stopped by PID; its mounts and cgroups removed."""
    base = node_artifacts["base"]
    assert base.is_file(), f"no base rootfs {base}: scripts/node-images.sh makes it"
    (CACHE / "node").mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".skaffold-docker.", dir=CACHE / "node"))
    cgroups_before = set(Path("/sys/fs/cgroup").glob("*/docker"))
    sock = work / "docker.sock"
    log = (work / "dockerd.log").open("wb")
    proc = subprocess.Popen(
        ["dockerd", "--data-root", str(work / "data"), "--exec-root", str(work / "exec"),
         "--pidfile", str(work / "dockerd.pid"), "-H", f"unix://{sock}",
         "--bridge=none", "--iptables=false", "--ip-masq=false", "--ip6tables=false"],
        stdout=log, stderr=subprocess.STDOUT)
    env = {**os.environ, "DOCKER_HOST": f"unix://{sock}", "DOCKER_BUILDKIT": "0"}
    try:
        eventually(lambda: proc.poll() is None and subprocess.run(
            [DOCKER, "version"], env=env, capture_output=True, check=False).returncode == 0,
            timeout=60, message="dockerd answers", interval=0.3)
        t0 = time.monotonic()
        subprocess.run([DOCKER, "import", "--change", 'CMD ["/bin/bash"]', str(base), _python_image()],
                       env=env, capture_output=True, check=True, timeout=300)
        print(f"\nskaffold test: dockerd up, base imported as {_python_image()} in {time.monotonic() - t0:.1f}s",
              file=sys.stderr)
        yield env
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()
        mounts = [ln.split()[1] for ln in Path("/proc/mounts").read_text().splitlines()
                  if ln.split()[1].startswith(str(work))]
        for m in sorted(mounts, reverse=True):
            subprocess.run(["umount", "-l", m], check=False, capture_output=True)
        for cg in set(Path("/sys/fs/cgroup").glob("*/docker")) - cgroups_before:
            with contextlib.suppress(OSError):
                cg.rmdir()
        shutil.rmtree(work, ignore_errors=True)


class Skaffold:
    """The skaffold binary with the node's kubeconfig, the engine's DOCKER_HOST, the node's
    containerd (for the profile's hook), Helm 3 as ``helm`` and a private HOME (global config:
    no update check, no metrics)."""

    def __init__(self, binary: Path, cluster: NodeCluster, docker_env: dict[str, str], home: Path) -> None:
        self.binary = binary
        self.cluster = cluster
        self.bin_dir = bin_dir = home / "bin"
        bin_dir.mkdir(parents=True)
        (bin_dir / "helm").symlink_to(cluster.tools_dir / "helm3")
        (bin_dir / "kubectl").symlink_to(cluster.tools_dir / "kubectl")
        (home / ".skaffold").mkdir()
        (home / ".skaffold" / "config").write_text(yaml.safe_dump({"global": {
            "update-check": False, "collect-metrics": False, "survey": {"disable-prompt": True}}}))
        self.env = {**docker_env, **cluster.env(), "HOME": str(home),
                    "PATH": f"{bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}",
                    "CONTAINERD_ADDRESS": str(cluster.containerd_sock),
                    "HELM_CACHE_HOME": str(home / "helm-cache"), "HELM_CONFIG_HOME": str(home / "helm-config"),
                    "HELM_DATA_HOME": str(home / "helm-data"),
                    "SKAFFOLD_UPDATE_CHECK": "false", "SKAFFOLD_INTERACTIVE": "false"}

    def helm_releases(self) -> list[str]:
        out = subprocess.run([str(self.bin_dir / "helm"), "list", "-n", DEV_NS, "-q"], env=self.env, capture_output=True, text=True,
                             check=True, timeout=60)
        return out.stdout.split()

    def __call__(self, *args: str, timeout: float = 600) -> tuple[subprocess.CompletedProcess[str], float]:
        t0 = time.monotonic()
        proc = subprocess.run([str(self.binary), *args], cwd=REPO, env=self.env, capture_output=True, text=True,
                              timeout=timeout, check=False)
        took = time.monotonic() - t0
        assert proc.returncode == 0, (f"skaffold {' '.join(args)} -> exit {proc.returncode} after {took:.0f}s\n"
                                      f"{proc.stdout[-5000:]}\n{proc.stderr[-5000:]}\n"
                                      f"{self.cluster.describe(DEV_NS)}")
        return proc, took


def _pods(cluster: NodeCluster) -> list[dict[str, Any]]:
    out = cluster.kubectl("get", "pods", "-n", DEV_NS, "-o", "json")
    return json.loads(out.stdout)["items"]  # type: ignore[no-any-return]


def _ready(pod: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod.get("status", {}).get("conditions", []))


def test_skaffold_builds_with_docker_and_deploys_the_chart_onto_the_node(
        node_cluster: NodeCluster, node_release: str, docker_engine: dict[str, str],
        node_artifacts: dict[str, Path], tmp_path: Path) -> None:
    # node_release first: it owns the chart's CRDs, so the dev release runs with no-crds.
    art = node_artifacts
    assert "skaffold" in art, "scripts/skaffold-binary.sh was not run (conftest builds it for this file)"
    skaffold = Skaffold(art["skaffold"] / "skaffold", node_cluster, docker_engine, tmp_path / "home")
    version, _ = skaffold("version")
    times: dict[str, float] = {}

    # The chart's default Redis image, as a name containerd has (nothing is pulled on this node).
    node_cluster.ctr("images", "tag", "--force", _full(NODE_REDIS), _full(CHART_REDIS))

    # ---- skaffold build: Docker builds the Dockerfile; the profile's hook imports it into containerd
    artifacts = tmp_path / "artifacts.json"
    _, times["build"] = skaffold("build", "-p", "containerd", "--file-output", str(artifacts), timeout=900)
    builds = json.loads(artifacts.read_text())["builds"]
    assert [b["imageName"] for b in builds] == ["compliance-reporting"], builds
    built = builds[0]["tag"]
    image_id = subprocess.run([DOCKER, "image", "inspect", "-f", "{{.Id}}", built], env=docker_engine,
                              capture_output=True, text=True, check=True).stdout.strip()
    # A local build (push: false) is tagged with its image id: no registry digest exists.
    assert built == f"compliance-reporting:{image_id.removeprefix('sha256:')}", (built, image_id)
    listed = {f[0]: f[2] for f in (ln.split() for ln in node_cluster.ctr("images", "ls").stdout.splitlines()[1:])}
    assert _full(built) in listed, f"{built} not in containerd's k8s.io namespace: {sorted(listed)}"
    manifest = listed[_full(built)]

    # ---- skaffold deploy of what was built: helm install + skaffold's status check
    try:
        deploy, times["deploy"] = skaffold("deploy", "-p", "containerd,no-crds", "--build-artifacts", str(artifacts),
                                           "--status-check=true", timeout=600)
        assert "Deployments stabilized" in deploy.stdout + deploy.stderr, deploy.stdout[-3000:]

        pods = _pods(node_cluster)
        components = {p["metadata"]["labels"].get("app.kubernetes.io/component") for p in pods}
        assert {"api", "redis", "operator", "worker-deliveries", "worker-reports"} <= components, components
        ours = [p for p in pods if p["metadata"]["labels"].get("app.kubernetes.io/component") != "redis"]
        for pod in ours:
            name = pod["metadata"]["name"]
            for c in pod["spec"]["containers"]:
                assert c["image"] == built, f"{name}/{c['name']} runs {c['image']}, skaffold built {built}"
                assert c["imagePullPolicy"] == "Never", (name, c["imagePullPolicy"])
            # containerd names the image by its config digest (= Docker's image id) or its manifest's.
            statuses = pod["status"].get("containerStatuses", [])
            assert statuses and all(s["imageID"].endswith((image_id, manifest)) for s in statuses), (
                name, [s["imageID"] for s in statuses], image_id, manifest)
        eventually(lambda: all(_ready(p) for p in _pods(node_cluster)), timeout=120, message="every dev pod Ready")

        # ---- the API through the Service that skaffold.yaml's portForward names
        svc = json.loads(node_cluster.kubectl("get", FORWARD["resourceType"], FORWARD["resourceName"], "-n",
                                              FORWARD["namespace"], "-o", "json").stdout)
        port = next(p["port"] for p in svc["spec"]["ports"] if p["port"] == FORWARD["port"])
        url = f"http://{svc['spec']['clusterIP']}:{port}/health"

        def health() -> dict[str, Any] | None:
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    return json.loads(r.read()) if r.status == 200 else None  # type: ignore[no-any-return]
            except OSError:
                return None

        body = eventually(health, timeout=60, message=f"GET {url} through the Service")
        print(f"\nskaffold {version.stdout.strip()}: build {times['build']:.0f}s, deploy {times['deploy']:.0f}s; "
              f"{built}; {len(ours)} pods of it Ready; /health {body}", file=sys.stderr)
    finally:
        # ---- skaffold delete: the release goes (its PVCs and namespace with it)
        t0 = time.monotonic()
        skaffold("delete", "-p", "containerd,no-crds", timeout=300)
        assert "compliance" not in skaffold.helm_releases(), "skaffold delete left the release"
        # The workers' grace periods (60-90 s) are for real deliveries; this namespace has none.
        node_cluster.kubectl("delete", "pods", "--all", "-n", DEV_NS, "--grace-period=0", "--force", check=False)
        gone = node_cluster.kubectl("delete", "namespace", DEV_NS, "--wait=true", "--timeout=120s", check=False,
                                    timeout=150)
        print(f"skaffold delete + namespace: {time.monotonic() - t0:.0f}s", file=sys.stderr)
    left = node_cluster.kubectl("get", "all,pvc", "-n", DEV_NS, "-o", "name", check=False).stdout.strip()
    assert gone.returncode == 0 and not left, f"namespace {DEV_NS} not gone: {gone.stderr}\n{left}"
