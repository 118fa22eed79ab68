"""Render the chart once per Helm version and scenario (the real helm 3 and 4 binaries)."""

from __future__ import annotations

import subprocess
from functools import cache
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts/compliance-reporting"
SCENARIOS = ["default", *sorted(p.stem for p in (CHART / "ci").glob("*-values.yaml"))]
HELMS = ["helm3", "helm4"]


class StrictLoader(yaml.SafeLoader):
    """A YAML loader that refuses a key repeated in one mapping. PyYAML and Helm keep the last
    one silently; skaffold's post-renderer (and kubectl's strict decoding) refuse the manifest."""


def _strict_mapping(loader: StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:  # type: ignore[type-arg]
    seen: set[object] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"key {key!r} repeated", key_node.start_mark)
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep)


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _strict_mapping)


def load_all(text: str) -> list[dict]:  # type: ignore[type-arg]
    """Every object of a multi-document YAML text, no key repeated in any mapping."""
    return [d for d in yaml.load_all(text, Loader=StrictLoader) if d]


@cache
def tools_bin() -> Path:
    """Directory with helm3 and helm4 (scripts/k8s-tools.sh extracts them once into a cache)."""
    out = subprocess.run([str(ROOT / "scripts/k8s-tools.sh")], capture_output=True, text=True, check=True)
    return Path(out.stdout.strip().splitlines()[-1])


@cache
def monitoring_crds_dir() -> Path:
    """The Prometheus operator's own CRDs (scripts/monitoring-crds.sh fetches them once, via Go modules)."""
    out = subprocess.run([str(ROOT / "scripts/monitoring-crds.sh")], capture_output=True, text=True, check=True)
    return Path(out.stdout.strip().splitlines()[-1])


def helm(version: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run one helm binary; with ``check``, a failure fails the test with helm's stderr."""
    out = subprocess.run([str(tools_bin() / version), *args], capture_output=True, text=True)
    if check:
        assert out.returncode == 0, out.stderr
    return out


@cache
def rendered(version: str, scenario: str) -> tuple[str, tuple[dict, ...]]:
    """`helm template` of one ci scenario (or the defaults): the text and its objects."""
    args = ["template", "rel", str(CHART), "--namespace", "compliance"]
    if scenario != "default":
        args += ["-f", str(CHART / "ci" / f"{scenario}.yaml")]
    text = helm(version, *args).stdout
    return text, tuple(load_all(text))


def template(*sets: str, version: str = "helm4", check: bool = True) -> subprocess.CompletedProcess[str]:
    """`helm template` of the defaults plus ``--set`` overrides."""
    args = ["template", "rel", str(CHART), "--namespace", "compliance"]
    for item in sets:
        args += ["--set", item]
    return helm(version, *args, check=check)


def docs_of(text: str) -> list[dict]:
    return load_all(text)


def by_kind(docs, kind):
    return [d for d in docs if d["kind"] == kind]
