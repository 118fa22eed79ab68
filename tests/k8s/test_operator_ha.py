"""Two operator replicas with kopf peering on a real kube-apiserver: exactly one acts, and when it
dies without a goodbye (SIGKILL) the other takes over once the peering lifetime has passed.

kopf pauses every operator while two live ones share a priority, so replicas that all kept
kopf's default (0) would leave the cluster unserved; each process draws its own priority.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import pytest
from controlplane import ControlPlane
from k8s_helpers import GROUP, REPLAYS, VERSION, eventually
from kubernetes import client
from operator_proc import running_operator

pytestmark = pytest.mark.k8s

PEERING = "compliance-operator"
LIFETIME = 6  # seconds a vanished replica blocks the other (COMPLIANCE_OPERATOR_PEERING_LIFETIME_SECONDS)


def _replay(name: str) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "DeadLetterReplay", "metadata": {"name": name},
            "spec": {"selector": {"errorType": "http_5xx", "limit": 5},
                     "envFrom": [{"secretRef": {"name": "compliance-env"}}]}}


def _peers(api: client.ApiClient, ns: str) -> dict[str, dict[str, Any]]:
    body = client.CustomObjectsApi(api).get_namespaced_custom_object("kopf.dev", "v1", ns, "kopfpeerings", PEERING)
    return dict(body.get("status") or {})


def _jobs_for(api: client.ApiClient, ns: str, replay: str) -> list[client.V1Job]:
    return [job for job in client.BatchV1Api(api).list_namespaced_job(ns).items
            if any(ref.name == replay for ref in job.metadata.owner_references or [])]


def _paused(log: Path) -> bool:
    return "Pausing operations in favour of" in log.read_text(errors="replace")


def test_one_replica_acts_and_the_other_takes_over(control_plane: ControlPlane, k8s_api_client, crds,
                                                   k8s_namespace: str, tmp_path: Path) -> None:
    ns, api = k8s_namespace, k8s_api_client
    assert control_plane.kubeconfig is not None
    client.CustomObjectsApi(api).create_namespaced_custom_object(
        "kopf.dev", "v1", ns, "kopfpeerings", {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering",
                                               "metadata": {"name": PEERING}})
    settings = {"PEERING_NAME": PEERING, "PEERING_LIFETIME_SECONDS": str(LIFETIME)}
    logs = [tmp_path / "replica-a.log", tmp_path / "replica-b.log"]
    with running_operator(control_plane.kubeconfig, ns, logs[0], settings, standalone=False) as a, \
            running_operator(control_plane.kubeconfig, ns, logs[1], settings, standalone=False) as b:
        peers = eventually(lambda: len(p := _peers(api, ns)) == 2 and p, timeout=60,
                           message="both replicas in the peering")
        priorities = [peer["priority"] for peer in peers.values()]
        assert len(set(priorities)) == 2 and min(priorities) >= 1, peers  # no tie: a tie freezes both

        # exactly one acts: the lower one pauses, the higher one creates the replay's Job
        eventually(lambda: any(_paused(log) for log in logs), timeout=60,
                   message="one replica pauses in favour of the other")
        paused_index = next(i for i, log in enumerate(logs) if _paused(log))
        active, standby = (a, b) if paused_index == 1 else (b, a)
        client.CustomObjectsApi(api).create_namespaced_custom_object(GROUP, VERSION, ns, REPLAYS, _replay("first"))
        eventually(lambda: len(_jobs_for(api, ns, "first")) == 1, timeout=60, message="the active replica's Job")
        assert not _paused(logs[1 - paused_index])

        # the active one dies without leaving the peering; the standby waits out its lifetime, then acts
        active.send_signal(signal.SIGKILL)
        active.wait(timeout=10)
        killed_at = time.time()
        client.CustomObjectsApi(api).create_namespaced_custom_object(GROUP, VERSION, ns, REPLAYS, _replay("second"))
        eventually(lambda: len(_jobs_for(api, ns, "second")) == 1, timeout=LIFETIME + 60,
                   message="the standby takes over")
        assert time.time() >= killed_at + LIFETIME - 1  # it did wait: no overlap with a live peer
        assert standby.poll() is None
        # Taking over, the standby also runs the Job-creating handler for "first", whose Job the dead
        # replica made (as a resume or, if that replica died before recording it, a creation): wait
        # until its log says it ran for both resources; then neither may have a second Job.
        standby_log = logs[paused_index]
        for name in ("first", "second"):
            done = f"[{ns}/{name}] Handler 'replay' succeeded."
            eventually(lambda done=done: done in standby_log.read_text(errors="replace"), timeout=30,
                       message=f"the standby logs {done!r}")
        assert [len(_jobs_for(api, ns, name)) for name in ("first", "second")] == [1, 1]
