"""The container image: hadolint, its shape, and its commands proven in a venv built the same way.

There is no Docker engine here, so the final stage's install (`pip install -c constraints.txt .`
into a fresh venv, non-editable) is reproduced outside Docker and every command the chart and the
operator run is started from it.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from compliance.localredis import free_port
from tests.support.services import FAST_ENV, wait_until

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
PIP_LINE = "/opt/venv/bin/pip install --no-cache-dir --no-compile -c constraints.txt ."

pytestmark = pytest.mark.timeout(600)


def test_hadolint_passes():
    hadolint = Path(sys.executable).parent / "hadolint"
    out = subprocess.run([str(hadolint), "--failure-threshold", "info", str(ROOT / "Dockerfile")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def final_stage() -> str:
    return DOCKERFILE[DOCKERFILE.rindex("\nFROM "):]


def test_final_stage_is_non_root_slim_and_labelled():
    stage = final_stage()
    user = re.findall(r"^USER\s+(\S+)", stage, re.MULTILINE)
    assert user and user[-1].split(":")[0].isdigit() and user[-1].split(":")[0] != "0"
    assert "apt-get" not in stage and "gcc" not in stage and "pip install" not in stage
    assert "COPY --from=build /opt/venv /opt/venv" in stage
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)", DOCKERFILE, re.MULTILINE).group(1)
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", base), base
    for label in ("title", "version", "revision", "source", "licenses"):
        assert f"org.opencontainers.image.{label}" in stage
    assert 'ENTRYPOINT ["compliance"]' in stage


def test_dockerignore_keeps_the_context_small():
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert ignore[0 if ignore[0] == "*" else 1] == "*" or "*" in ignore
    assert {"!service/", "!operator/", "!pyproject.toml", "!constraints.txt"} <= set(ignore)


@pytest.fixture(scope="session")
def image_venv() -> Path:
    """A venv installed exactly like the Dockerfile's build stage, cached by input hash."""
    assert PIP_LINE in DOCKERFILE, "the Dockerfile's install line changed: update this test"
    digest = hashlib.sha256()
    for path in sorted([ROOT / "pyproject.toml", ROOT / "constraints.txt",
                        *ROOT.glob("service/**/*.py"), *ROOT.glob("service/**/*.yaml"),
                        *ROOT.glob("operator/**/*.py")]):
        digest.update(path.relative_to(ROOT).as_posix().encode())
        digest.update(path.read_bytes())
    cache = Path(os.environ.get("COMPLIANCE_TOOLS_CACHE", Path.home() / ".cache/compliance-reporting"))
    venv = cache / f"image-venv-{digest.hexdigest()[:16]}"
    if not (venv / ".complete").exists():
        shutil.rmtree(venv, ignore_errors=True)
        for stale in cache.glob("image-venv-*"):
            shutil.rmtree(stale, ignore_errors=True)
        src = venv.parent / f"{venv.name}-src"
        shutil.rmtree(src, ignore_errors=True)
        src.mkdir(parents=True)
        # the build context, as .dockerignore lets it through
        for name in ("pyproject.toml", "README.md", "constraints.txt"):
            shutil.copy(ROOT / name, src / name)
        for tree in ("service", "operator"):
            shutil.copytree(ROOT / tree, src / tree,
                            ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc"))
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = PIP_LINE.replace("/opt/venv/bin/pip", str(venv / "bin/pip")).split()
        subprocess.run(pip, cwd=src, check=True, capture_output=True)
        shutil.rmtree(src, ignore_errors=True)
        (venv / ".complete").write_text("ok")
    return venv


def run(venv: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 60):
    return subprocess.run([str(venv / "bin" / args[0]), *args[1:]], capture_output=True, text=True,
                          timeout=timeout, env={"PATH": f"{venv}/bin:/usr/bin:/bin", **(env or {})},
                          cwd=venv)


def test_installed_package_is_not_the_checkout(image_venv):
    out = run(image_venv, "python", "-c", "import compliance, compliance_operator; "
              "print(compliance.__file__); print(compliance_operator.__file__)")
    assert out.returncode == 0, out.stderr
    assert all(str(image_venv) in line for line in out.stdout.splitlines())


def test_every_command_starts(image_venv, redis_url, tmp_path):
    env = {**FAST_ENV, "COMPLIANCE_REDIS_URL": redis_url, "COMPLIANCE_STORAGE_DIR": str(tmp_path / "r"),
           "HOME": str(tmp_path)}
    for args in (("compliance", "--help"), ("compliance", "dlq", "--help"),
                 ("compliance", "report", "--help"), ("compliance", "operator", "--help"),
                 ("kopf", "--help")):
        out = run(image_venv, *args, env=env)
        assert out.returncode == 0, (args, out.stderr)
    assert run(image_venv, "compliance", "dlq", "list", env=env).returncode == 0

    port = free_port()
    procs = [
        subprocess.Popen([str(image_venv / "bin/compliance"), "api", "--host", "127.0.0.1", "--port", str(port)],
                         env={"PATH": f"{image_venv}/bin:/usr/bin:/bin", **env}, cwd=tmp_path,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        subprocess.Popen([str(image_venv / "bin/compliance"), "worker", "--kind", "deliveries", "-c", "4",
                          "--hostname=img@%h"],
                         env={"PATH": f"{image_venv}/bin:/usr/bin:/bin", **env}, cwd=tmp_path,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
    ]
    try:
        def health():
            try:
                body = httpx.get(f"http://127.0.0.1:{port}/health", timeout=3).json()
            except httpx.HTTPError:
                return None
            return body if body["components"]["celery"]["status"] == "up" else None

        body = wait_until(health, timeout=90, interval=0.5)
        # the control packs shipped as package data load from the installed package
        assert body["components"]["facade"]["status"] == "up"
        assert httpx.get(f"http://127.0.0.1:{port}/health/live").status_code == 200
        status = run(image_venv, "celery", "-A", "compliance.worker.celery_app", "status", env=env)
        assert status.returncode == 0 and "img@" in status.stdout
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                proc.kill()


def test_constraints_match_the_pinned_dependencies():
    import tomllib

    pins = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    locked = dict(line.split("==", 1) for line in (ROOT / "constraints.txt").read_text().splitlines()
                  if "==" in line and not line.startswith("#"))
    locked = {k.lower().replace("_", "-"): v for k, v in locked.items()}
    for pin in pins:
        name, version = re.split(r"==", re.sub(r"\[.*?\]", "", pin))
        assert locked.get(name.lower()) == version, f"{pin}: run scripts/lock.sh"
