"""The chart's Redis modes with the real helm: a single Redis (the default), Redis behind
in-chart sentinels, external sentinels, a single external Redis; and the retention CronJob."""

from __future__ import annotations

import base64
import shutil
import subprocess

import pytest

from compliance.redis_client import RedisTarget
from compliance.settings import Settings
from tests.chart.render import HELMS, by_kind, docs_of, rendered, template

pytestmark = pytest.mark.timeout(600)
PREFIX = "rel-compliance-reporting"


def secret_data(docs) -> dict[str, str]:  # type: ignore[no-untyped-def]
    (secret,) = by_kind(docs, "Secret")
    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


def named(docs, kind: str) -> dict[str, dict]:  # type: ignore[no-untyped-def,type-arg]
    return {d["metadata"]["name"]: d for d in by_kind(docs, kind)}


def redis_objects(docs) -> set[tuple[str, str]]:  # type: ignore[no-untyped-def]
    return {(d["kind"], d["metadata"]["name"]) for d in docs
            if d["metadata"].get("labels", {}).get("app.kubernetes.io/component", "").startswith("redis")}


def test_the_default_stays_one_redis_without_sentinels():
    _, docs = rendered("helm4", "default")
    assert redis_objects(docs) == {("StatefulSet", f"{PREFIX}-redis"), ("Service", f"{PREFIX}-redis")}
    assert named(docs, "StatefulSet")[f"{PREFIX}-redis"]["spec"]["replicas"] == 1
    data = secret_data(docs)
    assert not {k for k in data if "SENTINEL" in k}
    assert not RedisTarget.from_env(data).uses_sentinel
    (config,) = [d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"] == PREFIX]
    assert "COMPLIANCE_REDIS_WAIT_REPLICAS" not in config["data"]  # one Redis: nothing to wait for


@pytest.mark.parametrize("version", HELMS)
def test_in_chart_sentinel_runs_a_primary_replicas_and_three_sentinels(version):
    _, docs = rendered(version, "sentinel-redis-values")
    assert redis_objects(docs) == {
        ("StatefulSet", f"{PREFIX}-redis-node"), ("StatefulSet", f"{PREFIX}-redis-sentinel"),
        ("Service", f"{PREFIX}-redis-node"), ("Service", f"{PREFIX}-redis-sentinel"),
        ("PodDisruptionBudget", f"{PREFIX}-redis-node"), ("PodDisruptionBudget", f"{PREFIX}-redis-sentinel"),
        ("ConfigMap", f"{PREFIX}-redis-scripts")}
    sets = named(docs, "StatefulSet")
    nodes, sentinels = sets[f"{PREFIX}-redis-node"], sets[f"{PREFIX}-redis-sentinel"]
    assert nodes["spec"]["replicas"] == 3 and sentinels["spec"]["replicas"] == 3
    for sts, component in ((nodes, "redis"), (sentinels, "redis-sentinel")):
        # ci values ask for hard anti-affinity: one pod per node
        (term,) = sts["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"][
            "requiredDuringSchedulingIgnoredDuringExecution"]
        assert term["topologyKey"] == "kubernetes.io/hostname"
        assert term["labelSelector"]["matchLabels"]["app.kubernetes.io/component"] == component
        assert term["labelSelector"]["matchLabels"].items() <= sts["spec"]["template"]["metadata"]["labels"].items()
    pdbs = named(docs, "PodDisruptionBudget")
    assert pdbs[f"{PREFIX}-redis-sentinel"]["spec"]["minAvailable"] == 2  # the quorum stays
    assert pdbs[f"{PREFIX}-redis-node"]["spec"]["maxUnavailable"] == 1
    for name, svc in named(docs, "Service").items():
        if name.startswith(f"{PREFIX}-redis-"):
            assert svc["spec"]["clusterIP"] == "None"  # stable pod DNS names
    # every process (and the operator, which reads this Secret) is pointed at the three sentinels
    data = secret_data(docs)
    target = RedisTarget.from_env(data)
    assert target.sentinels == tuple(
        (f"{PREFIX}-redis-sentinel-{i}.{PREFIX}-redis-sentinel.compliance.svc", 26379) for i in range(3))
    assert target.master == "mymaster"
    settings = Settings(redis_url=data["COMPLIANCE_REDIS_URL"],
                        redis_sentinels=data["COMPLIANCE_REDIS_SENTINELS"],
                        redis_sentinel_master=data["COMPLIANCE_REDIS_SENTINEL_MASTER"])
    assert RedisTarget.from_settings(settings) == target
    # behind Sentinel a 202 waits for a replica (docs/durability.md), unless config says otherwise
    (config,) = [d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"] == PREFIX]
    assert config["data"]["COMPLIANCE_REDIS_WAIT_REPLICAS"] == "1"
    off = docs_of(template("redis.mode=sentinel", "config.COMPLIANCE_REDIS_WAIT_REPLICAS=0", version=version).stdout)
    assert [d["data"]["COMPLIANCE_REDIS_WAIT_REPLICAS"] for d in by_kind(off, "ConfigMap")
            if d["metadata"]["name"] == PREFIX] == ["0"]
    (policy,) = by_kind(docs, "NetworkPolicy")
    ports = {p["port"] for rule in policy["spec"]["ingress"] for p in rule.get("ports", [])}
    assert {6379, 26379} <= ports


def test_the_sentinel_start_scripts_are_valid_shell_and_never_start_a_second_primary_blindly():
    _, docs = rendered("helm4", "sentinel-redis-values")
    scripts = named(docs, "ConfigMap")[f"{PREFIX}-redis-scripts"]["data"]
    shell = shutil.which("dash") or shutil.which("sh")
    assert shell
    for name, text in scripts.items():
        out = subprocess.run([shell, "-n"], input=text, capture_output=True, text=True)
        assert out.returncode == 0, (name, out.stderr)
    # a data pod asks the sentinels first; only when none answers is pod 0 the primary
    node = scripts["node.sh"]
    assert node.index("current_primary") < node.index('"$NODES-0.$NODES.$DOMAIN"')
    assert "--replicaof" in node and "noeviction" in node and "--appendonly yes" in node
    assert "sentinel monitor $MASTER_NAME $primary 6379 2" in scripts["sentinel.sh"]


def test_soft_anti_affinity_is_the_default_of_sentinel_mode():
    docs = docs_of(template("redis.mode=sentinel").stdout)
    spec = named(docs, "StatefulSet")[f"{PREFIX}-redis-node"]["spec"]
    assert spec["replicas"] == 2
    assert "preferredDuringSchedulingIgnoredDuringExecution" in spec["template"]["spec"]["affinity"]["podAntiAffinity"]


@pytest.mark.parametrize("version", HELMS)
def test_external_sentinels_render_no_redis_and_reach_every_process(version):
    _, docs = rendered(version, "external-sentinel-values")
    assert not redis_objects(docs)
    data = secret_data(docs)
    target = RedisTarget.from_env(data)
    assert target.uses_sentinel and target.master == "compliance"
    assert target.sentinels[0] == ("sentinel-a.redis.internal", 26379) and len(target.sentinels) == 3
    assert target.sentinel_password == "sentinel-password-0123"
    assert target.data_node_params()["db"] == 2 and target.data_node_params()["password"] == "s3cret-password"
    # the api, the workers and the retention job all read the Secret
    pods = [d["spec"]["template"]["spec"] for d in by_kind(docs, "Deployment") if "operator" not in d["metadata"]["name"]]
    pods += [d["spec"]["jobTemplate"]["spec"]["template"]["spec"] for d in by_kind(docs, "CronJob")]
    for pod in pods:
        refs = {e["secretRef"]["name"] for e in pod["containers"][0]["envFrom"] if "secretRef" in e}
        assert PREFIX in refs


def test_a_single_external_redis_has_no_sentinel_keys():
    _, docs = rendered("helm4", "external-redis-values")
    assert not redis_objects(docs)
    data = secret_data(docs)
    assert data["COMPLIANCE_REDIS_URL"] == "redis://redis.example.internal:6379/0"
    assert not {k for k in data if "SENTINEL" in k}


@pytest.mark.parametrize("bad, reason", [
    ("redis.mode=cluster", "mode"),
    ("redis.sentinel.replicas=1", "replicas"),
    ("redis.sentinel.antiAffinity=always", "antiAffinity"),
    ("redis.external.sentinels=not an address", "sentinels"),
    ("retention.status=gone", "status"),
    ("retention.olderThanDays=-1", "olderThanDays"),
    ("retention.schedule=daily", "schedule"),
])
def test_the_schema_refuses_bad_redis_and_retention_values(bad, reason):
    out = template(bad, check=False)
    assert out.returncode != 0 and reason in out.stderr, out.stderr


def test_external_sentinels_need_the_url_for_database_and_password():
    out = template("redis.enabled=false", "redis.external.sentinels=s1:26379", check=False)
    assert out.returncode != 0 and "redis.external.sentinels needs redis.external.url" in out.stderr


def test_retention_cronjob_runs_compliance_cleanup_with_the_rule_and_storage():
    _, docs = rendered("helm4", "default")
    (cron,) = by_kind(docs, "CronJob")
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"] == ["cleanup", "--documents"]  # defaults: prune and expire, no rule
    assert {m["mountPath"] for m in container["volumeMounts"]} == {"/tmp", "/data/reports"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    ruled = docs_of(template("retention.status=failed", "retention.olderThanDays=30",
                             "retention.documents=false").stdout)
    (cron,) = by_kind(ruled, "CronJob")
    args = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args == ["cleanup", "--status=failed", "--older-than-days=30", "--no-documents"]
    # the args are ones the real CLI accepts (parsed and validated, not run)
    from compliance.cli.cleanup import cleanup

    params = cleanup.make_context("cleanup", args[1:]).params
    assert params == {"status": "failed", "older_than_days": 30.0, "documents": False, "audit": True}
    s3 = docs_of(template("storage.backend=s3", "storage.s3.bucket=b").stdout)
    (cron,) = by_kind(s3, "CronJob")
    env = {e["name"]: e.get("value") for e in cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["COMPLIANCE_STORAGE_BACKEND"] == "s3" and env["COMPLIANCE_S3_BUCKET"] == "b"
    assert not by_kind(docs_of(template("retention.enabled=false").stdout), "CronJob")
