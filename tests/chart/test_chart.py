"""The Helm chart with the real helm binaries (3 and 4): lint, render, schema, policy, monitoring."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from tests.chart.render import (
    CHART,
    HELMS,
    ROOT,
    SCENARIOS,
    by_kind,
    docs_of,
    helm,
    monitoring_crds_dir,
    rendered,
    template,
    tools_bin,
)
from tests.support.scripts import import_script

KUBE_VERSIONS = ["1.29.0", "1.32.0", "1.35.0"]
CUSTOM_GROUPS = ("reporting.compliance.io", "kopf.dev", "monitoring.coreos.com")

pytestmark = pytest.mark.timeout(600)


@pytest.mark.parametrize("version", HELMS)
def test_lint(version):
    helm(version, "lint", str(CHART), "--strict")
    for scenario in SCENARIOS[1:]:
        helm(version, "lint", str(CHART), "--strict", "-f", str(CHART / "ci" / f"{scenario}.yaml"))


@pytest.mark.parametrize("version", HELMS)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_renders_valid_objects_for_three_kubernetes_versions(version, scenario, tmp_path):
    text, docs = rendered(version, scenario)
    assert docs
    manifest = tmp_path / "out.yaml"
    manifest.write_text(text)
    validate = Path(sys.executable).parent / "kubernetes-validate"
    for kube in KUBE_VERSIONS:
        out = subprocess.run([str(validate), "--strict", "--quiet", "-k", kube, str(manifest)],
                             capture_output=True, text=True)
        problems = [line for line in (out.stdout + out.stderr).splitlines()
                    if line.strip() and not any(g in line for g in CUSTOM_GROUPS)]
        assert out.returncode == 0 and not problems, (kube, problems)


def custom_resource_schemas(directory: Path = ROOT / "manifests/crds"):
    schemas = {}
    for path in directory.glob("*.yaml"):
        for crd in yaml.safe_load_all(path.read_text()):
            for version in crd["spec"]["versions"]:
                key = (f'{crd["spec"]["group"]}/{version["name"]}', crd["spec"]["names"]["kind"])
                schemas[key] = version["schema"]["openAPIV3Schema"]
    return schemas


def test_custom_resources_match_their_crd_schemas():
    """kubernetes-validate skips custom resources: check samples and chart CRs with jsonschema."""
    schemas = custom_resource_schemas()
    docs = [d for p in (ROOT / "manifests/samples").glob("*.yaml") for d in yaml.safe_load_all(p.read_text()) if d]
    for version in HELMS:
        docs += [d for d in rendered(version, "default")[1] if "compliance.io" in d["apiVersion"] or "kopf.dev" in d["apiVersion"]]
    checked = 0
    for doc in docs:
        schema = schemas.get((doc["apiVersion"], doc["kind"]))
        assert schema is not None, (doc["apiVersion"], doc["kind"])
        # x-kubernetes-* keys are ignored by jsonschema; additionalProperties is enforced if set
        jsonschema.validate({k: v for k, v in doc.items() if k != "status"}, schema)
        checked += 1
    assert checked >= 5
    bad = yaml.safe_load((ROOT / "manifests/samples/workerautoscaler.yaml").read_text())
    bad["spec"]["minReplicas"] = "one"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schemas[(bad["apiVersion"], bad["kind"])])


def _python_patterns(node):
    """Go's RE2 takes inline flags anywhere (``^(?i)warn$``); Python's re only at the start."""
    if isinstance(node, dict):
        return {k: (v.replace("^(?i)", "(?i)^") if k == "pattern" and isinstance(v, str) else _python_patterns(v))
                for k, v in node.items()}
    if isinstance(node, list):
        return [_python_patterns(v) for v in node]
    return node


@pytest.mark.parametrize("version", HELMS)
def test_monitoring_objects_match_the_prometheus_operators_crds(version):
    """ServiceMonitor, PodMonitor and PrometheusRule against the Prometheus operator's real schemas
    (its published CRDs, v0.85.0): a wrong type or a bad duration fails here, not in a cluster.
    Unknown fields are the real API server's job (tests/k8s, strict field validation)."""
    schemas = {key: _python_patterns(schema) for key, schema in custom_resource_schemas(monitoring_crds_dir()).items()}
    assert {kind for _, kind in schemas} >= {"ServiceMonitor", "PodMonitor", "PrometheusRule"}
    seen = set()
    for scenario in SCENARIOS:
        for doc in rendered(version, scenario)[1]:
            if doc["apiVersion"].startswith("monitoring.coreos.com/"):
                jsonschema.validate(doc, schemas[(doc["apiVersion"], doc["kind"])])
                seen.add(doc["kind"])
    assert seen == {"ServiceMonitor", "PodMonitor", "PrometheusRule"}
    # the check bites: the operator's schema refuses a duration it cannot parse
    (monitor,) = by_kind(rendered(version, "monitoring-values")[1], "ServiceMonitor")
    bad = json.loads(json.dumps(monitor))
    bad["spec"]["endpoints"][0]["interval"] = "30 seconds"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schemas[("monitoring.coreos.com/v1", "ServiceMonitor")])


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_selectors_ports_and_probes_line_up(scenario):
    _, docs = rendered("helm4", scenario)
    workloads = by_kind(docs, "Deployment") + by_kind(docs, "StatefulSet")
    for w in workloads:
        selector = w["spec"]["selector"]["matchLabels"]
        labels = w["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items(), w["metadata"]["name"]
        for c in w["spec"]["template"]["spec"]["containers"]:
            names = {p["name"] for p in c.get("ports", [])}
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                port = (c.get(probe, {}).get("httpGet") or c.get(probe, {}).get("tcpSocket") or {}).get("port")
                if isinstance(port, str):
                    assert port in names, (w["metadata"]["name"], probe, port)
    pods = [w["spec"]["template"]["metadata"]["labels"] for w in workloads]
    for svc in by_kind(docs, "Service"):
        sel = svc["spec"]["selector"]
        matches = [p for p in pods if sel.items() <= p.items()]
        assert matches, f"service {svc['metadata']['name']} selects no pod"
        for port in svc["spec"]["ports"]:
            target = port["targetPort"]
            assert any(target in {p["name"] for p in c.get("ports", [])}
                       for w in workloads if sel.items() <= w["spec"]["template"]["metadata"]["labels"].items()
                       for c in w["spec"]["template"]["spec"]["containers"]), (svc["metadata"]["name"], target)
    for pdb in by_kind(docs, "PodDisruptionBudget"):
        assert any(pdb["spec"]["selector"]["matchLabels"].items() <= p.items() for p in pods)
    deployments = {d["metadata"]["name"] for d in by_kind(docs, "Deployment")}
    for hpa in by_kind(docs, "HorizontalPodAutoscaler"):
        assert hpa["spec"]["scaleTargetRef"]["name"] in deployments
        assert "behavior" in hpa["spec"]
    for wa in by_kind(docs, "WorkerAutoscaler"):
        assert wa["spec"]["scaleTargetRef"]["name"] in deployments


def test_api_probes_answer_on_the_real_app(api):
    """Readiness is /health/ready (Redis: what accepting work needs), so a storage or facade
    outage keeps the API in its Service; liveness and startup are /health/live (the process)."""
    _, docs = rendered("helm4", "default")
    (deployment,) = [d for d in by_kind(docs, "Deployment") if d["metadata"]["name"].endswith("-api")]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    paths = {probe: container[probe]["httpGet"]["path"]
             for probe in ("startupProbe", "livenessProbe", "readinessProbe")}
    assert paths == {"startupProbe": "/health/live", "livenessProbe": "/health/live",
                     "readinessProbe": "/health/ready"}
    for probe, path in paths.items():
        answer = api.get(path)
        assert answer.status_code == 200, (probe, path, answer.status_code, answer.text)


def test_the_notes_curl_commands_work_against_the_real_app(api, admin_headers):
    """Each `curl` NOTES.txt prints, sent as written (headers, method, body) to the real app."""
    import shlex

    out = helm("helm4", "install", "rel", str(CHART), "--dry-run=client", "-n", "compliance").stdout
    notes = out[out.index("NOTES:"):]
    commands = [shlex.split(line.strip()) for line in notes.splitlines() if line.strip().startswith("curl ")]
    assert len(commands) >= 2, notes
    for argv in commands:
        method, headers, body, url = "GET", {}, None, None
        args = iter(argv[1:])
        for arg in args:
            if arg == "-X":
                method = next(args)
            elif arg == "-H":
                name, value = next(args).split(":", 1)
                headers[name.strip()] = value.strip().replace("$ADMIN_KEY", admin_headers["X-API-Key"])
            elif arg == "-d":
                body, method = next(args), "POST" if method == "GET" else method
            else:
                url = arg
        assert url and url.startswith("localhost:8000/"), argv
        answer = api.request(method, url.removeprefix("localhost:8000"), headers=headers, content=body)
        assert answer.status_code == 200, (argv, answer.status_code, answer.text)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_container_is_non_root_and_read_only(scenario):
    _, docs = rendered("helm4", scenario)
    pods = [d["spec"]["template"]["spec"] for d in docs if d["kind"] in ("Deployment", "StatefulSet")]
    pods += [d["spec"] for d in by_kind(docs, "Pod")]
    pods += [d["spec"]["jobTemplate"]["spec"]["template"]["spec"] for d in by_kind(docs, "CronJob")]
    assert pods
    for pod in pods:
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        for c in pod["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"]["drop"] == ["ALL"]
            assert "resources" in c and c["resources"].get("requests")


def test_workers_fit_soft_shutdown_and_expose_metrics():
    _, docs = rendered("helm4", "default")
    workers = [d for d in by_kind(docs, "Deployment") if "worker" in d["metadata"]["name"]]
    assert len(workers) == 2
    for w in workers:
        spec = w["spec"]["template"]["spec"]
        assert spec["terminationGracePeriodSeconds"] > 30  # COMPLIANCE_WORKER_SOFT_SHUTDOWN_TIMEOUT
        (c,) = spec["containers"]
        assert any(p["name"] == "metrics" for p in c["ports"])
        env = {e["name"]: e.get("value") for e in c["env"]}
        assert env["PROMETHEUS_MULTIPROC_DIR"].startswith("/tmp")
        assert {m["mountPath"] for m in c["volumeMounts"]} >= {"/tmp"}
    args = {w["metadata"]["name"]: w["spec"]["template"]["spec"]["containers"][0]["args"] for w in workers}
    assert args["rel-compliance-reporting-worker-reports"][:3] == ["worker", "--kind", "reports"]
    assert args["rel-compliance-reporting-worker-deliveries"][:3] == ["worker", "--kind", "deliveries"]


@pytest.mark.parametrize("version", HELMS)
def test_a_values_typo_fails(version):
    out = helm(version, "template", "rel", str(CHART), "--set", "api.replicaz=3", check=False)
    assert out.returncode != 0 and "replicaz" in out.stderr
    out = helm(version, "template", "rel", str(CHART), "--set", "storage.backend=nfs", check=False)
    assert out.returncode != 0


@pytest.mark.parametrize("version", HELMS)
def test_worker_hpa_and_operator_autoscaler_are_exclusive(version):
    out = helm(version, "template", "rel", str(CHART), "--set", "workers.deliveries.hpa.enabled=true", check=False)
    assert out.returncode != 0 and "enable one of them" in out.stderr
    ok = helm(version, "template", "rel", str(CHART), "--set", "workers.deliveries.hpa.enabled=true",
              "--set", "autoscaler.enabled=false")
    assert "HorizontalPodAutoscaler" in ok.stdout


def test_redis_is_required_one_way_or_another():
    out = helm("helm4", "template", "rel", str(CHART), "--set", "redis.enabled=false", check=False)
    assert out.returncode != 0 and "redis.external.url" in out.stderr


def test_secrets_are_generated_valid_and_existing_secret_is_honoured():
    import base64

    from compliance.settings import Settings

    _, docs = rendered("helm4", "default")
    (secret,) = by_kind(docs, "Secret")
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    # the generated values pass the service's own validation (no placeholders, whsec form)
    Settings(admin_api_keys=data["COMPLIANCE_ADMIN_API_KEYS"], producer_api_keys=data["COMPLIANCE_PRODUCER_API_KEYS"],
             webhook_secrets=data["COMPLIANCE_WEBHOOK_SECRETS"], redis_url=data["COMPLIANCE_REDIS_URL"],
             tenant_encryption_keys=data["COMPLIANCE_TENANT_ENCRYPTION_KEYS"])
    # ... and the generated tenant encryption key really encrypts (a Fernet key of 32 bytes)
    from cryptography.fernet import Fernet
    fernet = Fernet(data["COMPLIANCE_TENANT_ENCRYPTION_KEYS"].encode())
    assert fernet.decrypt(fernet.encrypt(b"whsec_x")) == b"whsec_x"
    assert data["COMPLIANCE_REDIS_URL"] == "redis://rel-compliance-reporting-redis:6379/0"
    ext = helm("helm4", "template", "rel", str(CHART), "--set", "secrets.existingSecret=mine").stdout
    docs = [d for d in yaml.safe_load_all(ext) if d]
    assert not by_kind(docs, "Secret")
    refs = {e["secretRef"]["name"] for d in by_kind(docs, "Deployment") if "operator" not in d["metadata"]["name"]
            for e in d["spec"]["template"]["spec"]["containers"][0]["envFrom"] if "secretRef" in e}
    assert refs == {"mine"}


def test_crds_are_gated_kept_and_in_sync():
    sync = import_script("sync-crds")
    target = CHART / "templates/crds"
    for name, content in sync.expected().items():
        assert (target / name).read_text() == content, f"{name} is stale: run scripts/sync-crds.py"
    assert {p.name for p in target.glob("*.yaml")} == set(sync.expected())
    _, docs = rendered("helm4", "default")
    crds = by_kind(docs, "CustomResourceDefinition")
    assert len(crds) == 4 and all(c["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep" for c in crds)
    off = helm("helm4", "template", "rel", str(CHART), "--set", "crds.install=false").stdout
    assert "kind: CustomResourceDefinition" not in off


def test_operator_rbac_is_least_privilege():
    _, docs = rendered("helm4", "default")
    (role,) = by_kind(docs, "Role")
    verbs = {(g, r): set(rule["verbs"]) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]}
    assert verbs[("apps", "deployments/scale")] == {"get", "patch"}
    assert verbs[("batch", "jobs")] == {"create", "get", "list", "watch"}
    assert verbs[("", "secrets")] == {"get"}
    assert all("*" not in v and "delete" not in v for v in verbs.values())
    assert not any(r == "*" for (_, r) in verbs)
    _, cluster = rendered("helm4", "hpa-values")
    assert by_kind(cluster, "ClusterRole") and not by_kind(cluster, "Role")


def test_promtool_checks_and_unit_tests_the_alerts():
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: scripts/system-deps.sh installs Debian's prometheus package"
    rules = CHART / "files/alerts.yaml"
    out = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    out = subprocess.run([promtool, "test", "rules", "alerts_test.yaml"], cwd=Path(__file__).parent,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    names = {r["alert"] for g in yaml.safe_load(rules.read_text())["groups"] for r in g["rules"]}
    assert {"ComplianceRedisDown", "ComplianceCircuitBreakerOpen", "ComplianceHealthCheckFailing",
            "ComplianceDeadLetterQueueGrowing", "ComplianceHighRetryRate", "ComplianceWebhookDeliveryFailures",
            "ComplianceCircuitBreakerHalfOpen", "ComplianceApiErrorSpike", "ComplianceDeliveryFailureSpike"} <= names
    # the PrometheusRule carries exactly this file
    _, docs = rendered("helm4", "monitoring-values")
    (rule,) = by_kind(docs, "PrometheusRule")
    assert rule["spec"] == yaml.safe_load(rules.read_text())


METRIC = re.compile(r"\b([a-z_][a-z0-9_]*)(?=\s*[{\[])")
FUNCTIONS = {"sum", "max", "min", "rate", "increase", "histogram_quantile", "clamp_min", "by", "avg", "absent", "offset"}


def scraped_metric_names(text: str) -> set[str]:
    from prometheus_client.parser import text_string_to_metric_families

    names = set()
    for family in text_string_to_metric_families(text):
        names |= {s.name for s in family.samples}
        if family.type == "gauge":
            names.add(family.name)  # a family with no series now (no open breaker) still exists
    return names


def test_dashboard_queries_use_metrics_the_service_exports(api, receiver, start_worker):
    dashboard = json.loads((CHART / "files/dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert len(exprs) >= 10
    # real scrapes, as Prometheus would do them: the API (Redis-derived gauges, HTTP metrics) and
    # a worker's own endpoint after it delivered once
    import httpx

    from compliance.localredis import free_port

    port = free_port()
    start_worker(extra_env={"COMPLIANCE_WORKER_METRICS_PORT": str(port)})
    assert api.post("/webhooks", json={"url": receiver.url(), "event": "e", "payload": {}}).status_code == 202
    receiver.wait_for(1)
    from tests.support.services import wait_until

    wait_until(lambda: api.get("/webhook-statuses?status=delivered").json()["items"], timeout=30)
    api.get("/health")
    api_scrape = api.get("/metrics").text
    # the health alert selects route="/health", status="503": the API labels by route template
    # and numeric status, so a /health answer shows up under exactly those label names
    assert re.search(r'http_requests_total\{[^}]*route="/health"[^}]*status="\d{3}"', api_scrape), api_scrape
    exported = scraped_metric_names(api_scrape)
    exported |= scraped_metric_names(httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text)
    # counters that only move on other paths still exist as families in the registry
    from compliance.observability import metrics as m

    for family in (m.REPORTS, m.WEBHOOK_RETRIES, m.WEBHOOK_DEFERRALS):
        exported |= {f"{family._name}_total", family._name}
    used = {name for expr in exprs for name in METRIC.findall(expr)} - FUNCTIONS
    missing = {name for name in used if name not in exported}
    assert not missing, f"dashboard queries unknown metrics: {missing}"
    rules = yaml.safe_load((CHART / "files/alerts.yaml").read_text())
    alert_metrics = {n for g in rules["groups"] for r in g["rules"] for n in METRIC.findall(r["expr"])} - FUNCTIONS
    assert not (alert_metrics - exported), alert_metrics - exported


def test_skaffold_and_kustomization_point_at_real_files():
    skaffold = yaml.safe_load((ROOT / "skaffold.yaml").read_text())
    assert skaffold["apiVersion"].startswith("skaffold/v4")
    (release,) = skaffold["deploy"]["helm"]["releases"]
    assert (ROOT / release["chartPath"] / "Chart.yaml").exists()
    for values in release["valuesFiles"]:
        helm("helm4", "template", "compliance", str(CHART), "-f", str(ROOT / values))
    assert (ROOT / skaffold["build"]["artifacts"][0]["docker"]["dockerfile"]).exists()
    assert skaffold["portForward"][0]["resourceName"] == "compliance-compliance-reporting-api"
    # two applies: the CRDs, then (once Established) the samples; one apply of both fails on a
    # fresh cluster ("no matches for kind")
    crds = yaml.safe_load((ROOT / "manifests/kustomization.yaml").read_text())["resources"]
    assert {Path(r).name for r in crds} == {p.name for p in (ROOT / "manifests/crds").glob("*.yaml")}
    out = subprocess.run([str(tools_bin() / "kubectl"), "kustomize", str(ROOT / "manifests")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert {d["kind"] for d in yaml.safe_load_all(out.stdout) if d} == {"CustomResourceDefinition"}
    samples = {d["kind"] for p in (ROOT / "manifests/samples").glob("*.yaml") for d in yaml.safe_load_all(p.read_text()) if d}
    assert samples == {"WorkerAutoscaler", "DeadLetterReplay", "KopfPeering"}  # `kubectl apply -f` of the directory


def test_samples_name_what_the_chart_creates():
    """For the release `compliance` (autoscaler.enabled=false, so the sample is the Deployment's only
    autoscaler): the sample autoscaler targets the chart's Deployment, Secret and queue, the
    replay's env is the release's, the peering name is the chart's; the replay is a dry run, so
    `kubectl apply` replays nothing."""
    default = [d for d in yaml.safe_load_all(
        helm("helm4", "template", "compliance", str(CHART), "-n", "compliance").stdout) if d]
    docs = [d for d in yaml.safe_load_all(helm("helm4", "template", "compliance", str(CHART), "-n", "compliance",
                                                "--set", "autoscaler.enabled=false").stdout) if d]
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    samples = {d["kind"]: d for p in (ROOT / "manifests/samples").glob("*.yaml")
               for d in yaml.safe_load_all(p.read_text()) if d}
    wa = samples["WorkerAutoscaler"]
    assert ("Deployment", wa["spec"]["scaleTargetRef"]["name"]) in names
    assert not by_kind(docs, "WorkerAutoscaler")
    secret_ref = wa["spec"]["redis"]["secretRef"]
    (secret,) = [d for d in by_kind(docs, "Secret") if d["metadata"]["name"] == secret_ref["name"]]
    assert secret_ref["key"] in (secret.get("data") or secret.get("stringData") or {})
    (chart_wa,) = [d for d in by_kind(default, "WorkerAutoscaler")
                   if d["spec"]["scaleTargetRef"]["name"] == wa["spec"]["scaleTargetRef"]["name"]]
    assert chart_wa["spec"]["queue"] == wa["spec"]["queue"] and chart_wa["spec"]["redis"] == wa["spec"]["redis"]
    replay = samples["DeadLetterReplay"]
    assert replay["spec"]["dryRun"] is True
    for source in replay["spec"]["envFrom"]:
        ((ref_kind, ref),) = source.items()
        assert ({"secretRef": "Secret", "configMapRef": "ConfigMap"}[ref_kind], ref["name"]) in names
    assert ("KopfPeering", samples["KopfPeering"]["metadata"]["name"]) in names


def test_every_value_has_a_doc_comment():
    """Every leaf value is documented by a `# --` comment on itself or on an enclosing key."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    stack: list[tuple[int, bool]] = []
    missing = []
    previous = ""
    for i, line in enumerate(lines):
        stripped = line.strip()
        m = re.match(r"^(\s*)([A-Za-z][\w]*):\s*(\S.*)?$", line)
        if m and not stripped.startswith("#"):
            indent = len(m.group(1))
            while stack and stack[-1][0] >= indent:
                stack.pop()
            covered = previous.startswith("# --") or any(doc for _, doc in stack)
            nxt = next((x for x in lines[i + 1:] if x.strip()), "")
            is_leaf = m.group(3) is not None or len(nxt) - len(nxt.lstrip()) <= indent
            if is_leaf and not covered:
                missing.append(stripped)
            stack.append((indent, covered))
        if stripped:
            previous = stripped
    assert not missing, missing


def test_config_schema_follows_the_service_settings():
    """A misspelt setting fails install (the schema is generated from Settings: test_contract.py)."""
    out = helm("helm4", "template", "rel", str(CHART), "--set", "config.COMPLIANCE_MAX_RETRIEZ=2", check=False)
    assert out.returncode != 0 and "COMPLIANCE_MAX_RETRIEZ" in out.stderr
    # the chart's own values cover these; setting them in `config` would fight the chart
    out = helm("helm4", "template", "rel", str(CHART), "--set", "config.COMPLIANCE_REDIS_URL=redis://x", check=False)
    assert out.returncode != 0


@pytest.mark.parametrize("version", HELMS)
def test_unsafe_combinations_are_refused(version):
    def fails(*sets: str) -> str:
        args = [a for s in sets for a in ("--set", s)]
        out = helm(version, "template", "rel", str(CHART), *args, check=False)
        assert out.returncode != 0, sets
        return out.stderr

    assert "terminationGracePeriodSeconds" in fails("workers.deliveries.terminationGracePeriodSeconds=20")
    assert "peering" in fails("operator.replicas=2", "operator.peering.enabled=false")
    assert "COMPLIANCE_REDIS_MAX_CONNECTIONS" in fails("workers.deliveries.concurrency=300",
                                                       "config.COMPLIANCE_DELIVERY_ENGINE=threads")
    ok = helm(version, "template", "rel", str(CHART), "--set", "operator.peering.enabled=false").stdout
    docs = [d for d in yaml.safe_load_all(ok) if d]
    assert not [d for d in docs if d["kind"] in ("KopfPeering", "ClusterKopfPeering")]
    (op,) = [d for d in by_kind(docs, "Deployment") if d["metadata"]["name"].endswith("-operator")]
    env = {e["name"]: e.get("value") for e in op["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["COMPLIANCE_OPERATOR_STANDALONE"] == "true"


@pytest.mark.parametrize("version", HELMS)
def test_worker_liveness_runs_the_heartbeat_check(version):
    """Workers are probed by `compliance worker-alive`, which fails on a stale heartbeat."""
    docs = [d for d in yaml.safe_load_all(helm(version, "template", "rel", str(CHART)).stdout) if d]
    workers = [d for d in docs if d["kind"] == "Deployment" and "worker" in d["metadata"]["name"]]
    assert len(workers) == 2
    for worker in workers:
        (container,) = worker["spec"]["template"]["spec"]["containers"]
        assert container["livenessProbe"]["exec"]["command"] == ["compliance", "worker-alive"]


def test_ingress_serves_the_api_and_its_console_under_its_path():
    docs = docs_of(template("api.ingress.enabled=true", "api.ingress.path=/compliance",
                            "api.ingress.host=c.example.com").stdout)
    ingress = by_kind(docs, "Ingress")[0]
    rule = ingress["spec"]["rules"][0]
    assert rule["host"] == "c.example.com"
    path = rule["http"]["paths"][0]
    assert path["path"] == "/compliance" and path["pathType"] == "Prefix"
    service = by_kind(docs, "Service")
    api = next(s for s in service if s["metadata"]["name"] == path["backend"]["service"]["name"])
    assert path["backend"]["service"]["port"]["name"] in {p["name"] for p in api["spec"]["ports"]}
    config = next(c for c in by_kind(docs, "ConfigMap") if "COMPLIANCE_QUEUE_NAME" in c["data"])
    assert config["data"]["COMPLIANCE_ROOT_PATH"] == "/compliance"  # the console's links carry it
    plain = docs_of(template("api.ingress.enabled=true").stdout)
    config = next(c for c in by_kind(plain, "ConfigMap") if "COMPLIANCE_QUEUE_NAME" in c["data"])
    assert "COMPLIANCE_ROOT_PATH" not in config["data"]
    assert not by_kind(docs_of(template().stdout), "Ingress")  # off by default
    refused = template("api.ingress.enabled=true", "api.ingress.path=compliance", check=False)
    assert refused.returncode != 0  # a path must start with /


@pytest.mark.parametrize("version", HELMS)
def test_skaffold_yaml_points_at_what_the_chart_renders(version: str) -> None:
    """skaffold.yaml's release (chart path, values files, namespace) lints and renders, with no key
    repeated (skaffold's post-renderer refuses that); its portForward names the API Service; the
    dev values leave no WorkerAutoscaler behind `skaffold delete`. tests/node runs it for real."""
    sk = yaml.safe_load((ROOT / "skaffold.yaml").read_text())
    release = sk["deploy"]["helm"]["releases"][0]
    values = [str(ROOT / f) for f in release["valuesFiles"]]
    assert all(Path(v).is_file() for v in values), values
    args = [str(ROOT / release["chartPath"]), *(a for v in values for a in ("-f", v)),
            "--set", "image.repository=compliance-reporting", "--set", "image.tag=0123abcd"]
    lint = helm(version, "lint", "--strict", *args, check=False)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    docs = docs_of(helm(version, "template", release["name"], *args, "-n", release["namespace"]).stdout)
    services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    for fwd in sk["portForward"]:
        assert fwd["resourceType"] == "service" and fwd["namespace"] == release["namespace"]
        svc = services[fwd["resourceName"]]
        assert svc["spec"]["selector"]["app.kubernetes.io/component"] == "api"
        assert fwd["port"] in [p["port"] for p in svc["spec"]["ports"]]
    assert not [d for d in docs if d["kind"] == "WorkerAutoscaler"]
    images = {c["image"] for d in docs if d["kind"] in ("Deployment", "StatefulSet")
              for c in d["spec"]["template"]["spec"]["containers"]}
    assert "compliance-reporting:0123abcd" in images, images
