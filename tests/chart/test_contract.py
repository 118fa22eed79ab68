"""What the chart promises its users and the processes it starts: the values contract (schema,
guard rails, generated secrets), the settings each container really gets, peering and network
reach."""

from __future__ import annotations

import base64
import json
import os

import pytest

from tests.chart.render import CHART, HELMS, SCENARIOS, by_kind, docs_of, rendered, template
from tests.support.scripts import import_script

pytestmark = pytest.mark.timeout(600)


def test_config_schema_is_generated_from_the_service_settings():
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["properties"]["config"] == import_script("sync-chart-config").config_schema(), (
        "values.schema.json is stale: run scripts/sync-chart-config.py")


def test_every_object_in_the_schema_decides_on_unknown_keys():
    """additionalProperties everywhere; free-form only inside Kubernetes pass-through shapes."""
    passthrough = {"nodeAffinity", "podAffinity", "podAntiAffinity", "podSelector", "namespaceSelector",
                   "ipBlock", "seLinuxOptions", "items"}
    undecided, free = [], []

    def walk(node, path):
        if isinstance(node, dict):
            if node.get("type") == "object":
                if "additionalProperties" not in node:
                    undecided.append(path)
                elif node["additionalProperties"] is True and path.rsplit(".", 1)[-1] not in passthrough:
                    free.append(path)
            for key, value in node.items():
                walk(value, f"{path}.{key}")
        elif isinstance(node, list):
            for value in node:
                walk(value, f"{path}[]")

    walk(json.loads((CHART / "values.schema.json").read_text()), "$")
    assert not undecided and not free, (undecided, free)


@pytest.mark.parametrize("version", HELMS)
@pytest.mark.parametrize("bad, reason", [
    ("config.COMPLIANCE_LOG_LEVLE=DEBUG", "COMPLIANCE_LOG_LEVLE"),             # misspelt setting
    ("config.COMPLIANCE_ADMIN_API_KEYS=x", "COMPLIANCE_ADMIN_API_KEYS"),       # secrets go to the Secret
    ("config.COMPLIANCE_LOG_LEVEL=LOUD", "COMPLIANCE_LOG_LEVEL"),                             # not an enum member
    ("securityContext.readOnlyRootFilesystem=false", "readOnlyRootFilesystem"),  # no unsafe override
    ("api.resources.request.cpu=1", "request"),                                 # typo inside resources
    ("workers.deliveries.concurrency=0", "concurrency"),
    ("api.publicBaseUrl=compliance.example.com", "publicBaseUrl"),             # not an http(s) URL
])
def test_the_schema_refuses(version, bad, reason):
    out = template(bad, version=version, check=False)
    assert out.returncode != 0 and reason in out.stderr, out.stderr


@pytest.mark.parametrize("sets, message", [
    (["workers.deliveries.terminationGracePeriodSeconds=30"], "must exceed COMPLIANCE_WORKER_SOFT_SHUTDOWN_TIMEOUT"),
    (["config.COMPLIANCE_WORKER_SOFT_SHUTDOWN_TIMEOUT=120"], "must exceed COMPLIANCE_WORKER_SOFT_SHUTDOWN_TIMEOUT"),
    (["workers.deliveries.concurrency=256", "config.COMPLIANCE_DELIVERY_ENGINE=threads"],
     "COMPLIANCE_REDIS_MAX_CONNECTIONS >= 264"),
    (["operator.replicas=2", "operator.peering.enabled=false"], "needs operator.peering.enabled"),
    (["autoscaler.enabled=true", "operator.enabled=false"], "needs operator.enabled"),
    (["storage.backend=s3"], "needs storage.s3.bucket"),
    (["config.COMPLIANCE_PUBLIC_BASE_URL=https://x.example"], "set api.publicBaseUrl"),
])
def test_guard_rails_fail_with_a_clear_message(sets, message):
    out = template(*sets, check=False)
    assert out.returncode != 0 and message in out.stderr, out.stderr


def test_guard_rails_accept_the_consistent_version():
    template("config.COMPLIANCE_WORKER_SOFT_SHUTDOWN_TIMEOUT=50")  # below 60 and 90
    template("workers.deliveries.concurrency=256", "config.COMPLIANCE_REDIS_MAX_CONNECTIONS=300",
             "config.COMPLIANCE_DELIVERY_ENGINE=threads")
    template("workers.deliveries.concurrency=1024")  # the asyncio engine needs no pool per delivery
    template("operator.replicas=2")


def _container_env(doc: dict, configmaps: dict, secrets: dict) -> dict[str, str]:
    """The environment a container of ``doc`` starts with (envFrom, then env)."""
    (container,) = doc["spec"]["template"]["spec"]["containers"]
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env |= configmaps[source["configMapRef"]["name"]]
        elif source["secretRef"]["name"] in secrets:
            env |= secrets[source["secretRef"]["name"]]
    env |= {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
    return env


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_process_accepts_the_settings_the_chart_gives_it(scenario, monkeypatch):
    """The service's and the operator's own settings classes validate each container's env,
    outside dev mode, as the process would at start."""
    from compliance.settings import Settings
    from compliance_operator.settings import OperatorSettings

    _, docs = rendered("helm4", scenario)
    configmaps = {d["metadata"]["name"]: d["data"] for d in by_kind(docs, "ConfigMap")}
    secrets = {d["metadata"]["name"]: {k: base64.b64decode(v).decode() for k, v in d["data"].items()}
               for d in by_kind(docs, "Secret")}
    checked = set()
    for deployment in by_kind(docs, "Deployment"):
        component = deployment["metadata"]["labels"]["app.kubernetes.io/component"]
        env = _container_env(deployment, configmaps, secrets)
        for name in [n for n in os.environ if n.startswith("COMPLIANCE_")]:
            monkeypatch.delenv(name)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        if component == "operator":
            settings = OperatorSettings()
            assert settings.replay_image == deployment["spec"]["template"]["spec"]["containers"][0]["image"]
        else:
            settings = Settings()
            assert not settings.dev_mode
            assert settings.admin_api_keys and settings.webhook_secrets
            if component == "worker-deliveries":
                assert settings.delivery_concurrency == 512
            if component == "worker-reports":
                assert settings.worker_concurrency == 4
        checked.add(component)
    assert {"api", "worker-reports", "worker-deliveries"} <= checked


def test_generated_secrets_without_a_cluster_change_on_every_render():
    """`helm template` has no cluster, so `lookup` returns nothing and keys are generated again.
    Expected: on a real upgrade `lookup` finds the Secret and keeps them (tests/k8s proves that).
    Values given explicitly are stable."""
    def secret(*sets):
        (doc,) = by_kind(docs_of(template(*sets).stdout), "Secret")
        return doc["data"]

    first, second = secret(), secret()
    for key in ("COMPLIANCE_ADMIN_API_KEYS", "COMPLIANCE_PRODUCER_API_KEYS", "COMPLIANCE_WEBHOOK_SECRETS",
                "COMPLIANCE_TENANT_ENCRYPTION_KEYS"):
        assert first[key] != second[key], key
    assert first["COMPLIANCE_REDIS_URL"] == second["COMPLIANCE_REDIS_URL"]
    given = ("secrets.adminApiKeys=admin-key-0123456789", "secrets.producerApiKeys=producer-key-0123456789",
             "secrets.webhookSecrets=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
             "secrets.tenantEncryptionKeys=n0tA7sY9K8fXrQkWm1uJc6VbE3pLdH5gTzR2iOaSyF4=")
    assert secret(*given) == secret(*given)


def test_existing_secret_reaches_the_operator_and_the_autoscalers():
    docs = docs_of(template("secrets.existingSecret=mine").stdout)
    (operator,) = [d for d in by_kind(docs, "Deployment") if d["metadata"]["name"].endswith("-operator")]
    env = {e["name"]: e.get("value") for e in operator["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["COMPLIANCE_OPERATOR_REPLAY_ENV_FROM_SECRETS"] == "mine"
    assert {wa["spec"]["redis"]["secretRef"]["name"] for wa in by_kind(docs, "WorkerAutoscaler")} == {"mine"}


def test_peering_object_is_the_one_the_operator_uses():
    _, docs = rendered("helm4", "default")
    (operator,) = [d for d in by_kind(docs, "Deployment") if d["metadata"]["name"].endswith("-operator")]
    env = {e["name"]: e.get("value") for e in operator["spec"]["template"]["spec"]["containers"][0]["env"]}
    (peering,) = by_kind(docs, "KopfPeering")
    assert peering["metadata"]["name"] == env["COMPLIANCE_OPERATOR_PEERING_NAME"] == "compliance-operator"
    assert env["COMPLIANCE_OPERATOR_STANDALONE"] == "false"
    _, cluster = rendered("helm4", "hpa-values")
    assert [p["metadata"]["name"] for p in by_kind(cluster, "ClusterKopfPeering")] == ["compliance-operator"]

    off = docs_of(template("operator.peering.enabled=false").stdout)
    assert not by_kind(off, "KopfPeering")
    (operator,) = [d for d in by_kind(off, "Deployment") if d["metadata"]["name"].endswith("-operator")]
    env = {e["name"]: e.get("value") for e in operator["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["COMPLIANCE_OPERATOR_STANDALONE"] == "true"
    (role,) = by_kind(off, "Role")
    assert not any("kopf.dev" in rule["apiGroups"] for rule in role["rules"])


def _admits(policy: dict, labels: dict, port: int) -> bool:
    """Whether ``policy`` lets a pod of this namespace with ``labels`` connect to ``port``."""
    for rule in policy["spec"]["ingress"]:
        if not any(p["port"] == port for p in rule.get("ports", [])):
            continue
        peers = rule.get("from")
        if not peers or any(set(peer.get("podSelector", {}).get("matchLabels", {}).items()) <= set(labels.items())
                            and "namespaceSelector" not in peer for peer in peers):
            return True
    return False


def test_network_policy_admits_exactly_the_clients_that_need_each_port():
    from compliance_operator.jobs import build_job
    from compliance_operator.settings import OperatorSettings

    _, docs = rendered("helm4", "default")
    (policy,) = by_kind(docs, "NetworkPolicy")
    # the replay Job's pod, as the operator builds it, must reach the in-chart Redis
    job = build_job(body={"metadata": {"name": "r", "uid": "u", "namespace": "compliance"}, "spec": {}},
                    settings=OperatorSettings())
    assert _admits(policy, job["spec"]["template"]["metadata"]["labels"], 6379)
    pods = {d["metadata"]["labels"]["app.kubernetes.io/component"]: d["spec"]["template"]["metadata"]["labels"]
            for d in by_kind(docs, "Deployment")}
    assert all(_admits(policy, labels, 6379) for labels in pods.values())
    assert not _admits(policy, {"app": "someone-else"}, 6379)

    restricted = docs_of(template("networkPolicy.apiIngressFrom[0].namespaceSelector.matchLabels.ingress=yes",
                                  "networkPolicy.metricsIngressFrom[0].namespaceSelector.matchLabels.mon=yes").stdout)
    (policy,) = by_kind(restricted, "NetworkPolicy")
    (test_pod,) = by_kind(restricted, "Pod")
    assert _admits(policy, test_pod["metadata"]["labels"], 8000)  # `helm test` still reaches the API
    assert not _admits(policy, {"app": "someone-else"}, 8000)
    assert not _admits(policy, {"app": "someone-else"}, 9808)
    external = docs_of(template("redis.enabled=false", "redis.external.url=redis://r:6379/0").stdout)
    assert not any(p["port"] == 6379 for r in by_kind(external, "NetworkPolicy")[0]["spec"]["ingress"]
                   for p in r["ports"])


def _base_urls(docs) -> dict[str, str]:
    """COMPLIANCE_PUBLIC_BASE_URL of every service container (api and both workers)."""
    out = {}
    for deployment in by_kind(docs, "Deployment"):
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            env = {e["name"]: e.get("value") for e in container.get("env", [])}
            if "COMPLIANCE_PUBLIC_BASE_URL" in env:
                out[deployment["metadata"]["name"]] = env["COMPLIANCE_PUBLIC_BASE_URL"]
    return out


def test_links_in_webhooks_point_at_the_api_service_or_the_configured_url():
    """Report webhooks carry links built from COMPLIANCE_PUBLIC_BASE_URL: never localhost."""
    docs = docs_of(template().stdout)
    (service,) = [s for s in by_kind(docs, "Service") if s["metadata"]["name"].endswith("-api")]
    (port,) = service["spec"]["ports"]
    urls = _base_urls(docs)
    assert {name.rsplit("-", 1)[-1] for name in urls} >= {"api", "reports", "deliveries"}, urls
    assert set(urls.values()) == {f"http://{service['metadata']['name']}.compliance.svc:{port['port']}"}
    custom = _base_urls(docs_of(template("api.publicBaseUrl=https://compliance.example.com/").stdout))
    assert set(custom.values()) == {"https://compliance.example.com"}
