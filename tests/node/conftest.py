"""Fixtures for the node tier (tests/node, marker ``node``): a real one-node cluster running the
chart as pods.

* Before the first test (``pytest_collection_finish``, outside any per-test timeout, only when a
  selected test is in tests/node): ``scripts/system-deps.sh node`` (Debian's docker.io, containerd,
  runc, CNI plugins, iptables, debootstrap, gcc), ``scripts/node-binaries.sh`` (the envtest
  control plane plus kubelet, kube-scheduler, kube-proxy and CoreDNS, from Go modules),
  ``scripts/k8s-tools.sh`` (kubectl, helm) and ``scripts/node-images.sh`` (the project's image
  from its Dockerfile, a Redis image, the pause image, as one cached ``docker save`` archive).
  Everything is cached under ~/.cache/compliance-reporting/ keyed on its inputs.
* ``node_cluster`` (session): the cluster (tests/node/cluster.py), torn down at the end.
* ``node_release`` (session): ``helm install`` of the chart with its defaults (images pointed at
  the local build, ``pullPolicy: Never``), every pod Ready; shared by the tier's tests.
* ``scripts/skaffold-binary.sh`` (skaffold from its Go module) only when
  ``test_skaffold_on_node.py`` is selected; ``test_scaling_hpa_on_node.py`` always runs last.

Where the machine cannot run a container engine (not root, no overlay, no br_netfilter, or
dockerd does not start) every test here is skipped with one line naming the reason, and the end
of the pytest run (so of ``make test``) repeats it. A failed build is an error, not a skip.
COMPLIANCE_SKIP_NODE=1 skips the tier on purpose; COMPLIANCE_NODE_KEEP=1 keeps its work dir.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from node_helpers import NAMESPACE, RELEASE, RELEASE_VALUES, Helm
from nodecluster import NodeCluster, NodeError, preflight

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
K8S_VERSION = os.environ.get("NODE_K8S_VERSION", "v1.35.4")

_SKIP = pytest.StashKey[str]()
_ERR = pytest.StashKey[str]()
_ART = pytest.StashKey[dict[str, Path]]()
# Runs after every other test of the tier, whatever its file name: it leaves the API scaled up.
LAST = "test_scaling_hpa_on_node.py"


def _script(name: str, *args: str, timeout: float = 3600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(REPO / "scripts" / name), *args], capture_output=True, text=True,
                          timeout=timeout, check=False)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.node)
    ours = [i for i in items if HERE in i.path.resolve().parents]
    last = [i for i in ours if i.path.name == LAST]
    if last and len(last) < len(ours):  # the HPA test moves behind the tier's other tests
        rest = [i for i in items if i not in last]
        end = max(k for k, i in enumerate(rest) if i in ours) + 1
        items[:] = rest[:end] + last + rest[end:]


def _prepare(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Install, build and cache what the tier needs; record a skip reason or an error."""
    reason = preflight()
    if reason:
        config.stash[_SKIP] = f"this machine cannot run a container engine: {reason}"
        return
    t0 = time.monotonic()
    deps = _script("system-deps.sh", "node", timeout=900)
    if deps.returncode != 0:
        config.stash[_SKIP] = ("this machine cannot run a container engine: Debian's Docker engine, "
                               f"containerd and CNI plugins are missing ({deps.stderr.strip()[-300:]})")
        return
    art: dict[str, Path] = {}
    bins = _script("node-binaries.sh", K8S_VERSION)
    if bins.returncode != 0:
        config.stash[_ERR] = f"scripts/node-binaries.sh failed ({bins.returncode}):\n{bins.stderr[-6000:]}"
        return
    art["envtest"], art["node"], art["coredns"], art["metrics"] = (
        Path(p) for p in bins.stdout.strip().splitlines()[-4:])
    tools = _script("k8s-tools.sh", timeout=600)
    if tools.returncode != 0:
        config.stash[_ERR] = f"scripts/k8s-tools.sh failed ({tools.returncode}):\n{tools.stderr[-4000:]}"
        return
    art["tools"] = Path(tools.stdout.strip().splitlines()[-1])
    images = _script("node-images.sh", K8S_VERSION)
    if images.returncode == 3:
        last = images.stderr.strip().splitlines()[-1:] or ["?"]
        config.stash[_SKIP] = f"this machine cannot run a container engine: dockerd did not start ({last[0]})"
        return
    if images.returncode != 0:
        config.stash[_ERR] = f"scripts/node-images.sh failed ({images.returncode}):\n{images.stderr[-6000:]}"
        return
    art["base"], art["images"] = (Path(p) for p in images.stdout.strip().splitlines()[-2:])
    # skaffold from its Go module, only when its test is selected.
    if any(item.path.name == "test_skaffold_on_node.py" for item in items):  # selected ones only
        sk = _script("skaffold-binary.sh")
        if sk.returncode != 0:
            config.stash[_ERR] = f"scripts/skaffold-binary.sh failed ({sk.returncode}):\n{sk.stderr[-6000:]}"
            return
        art["skaffold"] = Path(sk.stdout.strip().splitlines()[-1])
    config.stash[_ART] = art
    print(f"\nnode tier: binaries and images ready in {time.monotonic() - t0:.1f}s", file=sys.stderr)


def pytest_collection_finish(session: pytest.Session) -> None:
    config = session.config
    if config.option.collectonly or not any(i.get_closest_marker("node") for i in session.items):
        return
    if os.environ.get("COMPLIANCE_SKIP_NODE") == "1":
        config.stash[_SKIP] = "COMPLIANCE_SKIP_NODE=1"
        return
    try:
        _prepare(config, session.items)
    finally:
        # scripts/test.sh starts the rest of the suite once this tier's builds are done (or
        # failed, or skipped): two heavy jobs at once on 2 cores cost more than they overlap.
        ready = os.environ.get("COMPLIANCE_NODE_READY_FILE")
        if ready:
            Path(ready).touch()


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:  # type: ignore[no-untyped-def]
    if _SKIP in config.stash:
        line = f"node tier SKIPPED: {config.stash[_SKIP]}"
        terminalreporter.write_sep("=", line, yellow=True, bold=True)
        notes = os.environ.get("COMPLIANCE_TIER_NOTES")  # scripts/test.sh repeats it at the very end
        if notes:
            with open(notes, "a") as fh:
                fh.write(line + "\n")


@pytest.fixture(scope="session")
def node_cluster(request: pytest.FixtureRequest) -> Iterator[NodeCluster]:
    stash = request.config.stash
    if _SKIP in stash:
        pytest.skip(f"node tier: {stash[_SKIP]}")
    if _ERR in stash:
        pytest.fail(stash[_ERR], pytrace=False)
    if _ART not in stash:
        _prepare(request.config, request.session.items)  # a test selected in an unusual way (e.g. by fixture only)
        if _SKIP in stash:
            pytest.skip(f"node tier: {stash[_SKIP]}")
        if _ERR in stash:
            pytest.fail(stash[_ERR], pytrace=False)
    art = stash[_ART]
    cluster = NodeCluster(art["envtest"], art["node"], art["coredns"], art["metrics"], art["images"], art["tools"],
                          keep_dir=os.environ.get("COMPLIANCE_NODE_KEEP") == "1")
    try:
        cluster.start()
    except NodeError as e:
        pytest.fail(f"the node did not start:\n{e}\n{cluster.logs()}", pytrace=False)
    print(f"\nnode {cluster.ip} Ready in {cluster.startup_seconds:.1f}s {cluster.timings}", file=sys.stderr)
    try:
        yield cluster
    finally:
        t0 = time.monotonic()
        cluster.stop()
        print(f"\nnode torn down in {time.monotonic() - t0:.1f}s {cluster.stop_timings}", file=sys.stderr)


@pytest.fixture(scope="session")
def node_artifacts(node_cluster: NodeCluster, request: pytest.FixtureRequest) -> dict[str, Path]:
    """What _prepare built: directories of binaries, the images archive, the base rootfs tarball
    ("base") and, when its test is selected, skaffold ("skaffold")."""
    return request.config.stash[_ART]


@pytest.fixture(scope="session")
def helm(node_cluster: NodeCluster, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return Helm(node_cluster, tmp_path_factory.mktemp("helm"))


@pytest.fixture(scope="session")
def node_release(node_cluster: NodeCluster, helm: Helm) -> str:
    """The chart installed with its defaults (``--wait``: every pod Ready through its probes)."""
    t0 = time.monotonic()
    helm("install", RELEASE, str(REPO / "charts" / "compliance-reporting"), "-n", NAMESPACE,
         "--create-namespace", *RELEASE_VALUES, "--wait", "--timeout", "4m")
    print(f"\nhelm install --wait: {time.monotonic() - t0:.1f}s", file=sys.stderr)
    return RELEASE
