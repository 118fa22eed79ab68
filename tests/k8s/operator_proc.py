"""The compliance operator as a real ``kopf run`` subprocess against a control plane."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

KOPF = Path(sys.executable).parent / "kopf"
COMPLIANCE = Path(sys.executable).parent / "compliance"  # the image's entrypoint
# Fast, deterministic settings for tests; everything else is the operator's default.
TEST_SETTINGS = {
    "LIVENESS_ENDPOINT": "",
    "REPLAY_IMAGE": "registry.test/compliance:1.0",
    "REPLAY_ENV_FROM_SECRETS": "compliance-env",
}


@contextmanager
def running_operator(kubeconfig: Path, namespace: str, log_path: Path, settings: Mapping[str, str] | None = None,
                     *, standalone: bool = True, cli_args: list[str] | None = None,
                     ) -> Iterator[subprocess.Popen[bytes]]:
    """``kopf run -m compliance_operator.main --namespace NS [--standalone]``, or with ``cli_args``
    the ``compliance`` CLI as the chart's container runs it; SIGTERM at the end.

    The log goes to ``log_path``; its tail is printed at exit so a failing test shows it.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPLIANCE_OPERATOR_")}
    env.update({f"COMPLIANCE_OPERATOR_{k}": v for k, v in {**TEST_SETTINGS, **(settings or {})}.items()})
    env["COMPLIANCE_OPERATOR_STANDALONE"] = "true" if standalone else "false"
    env["KUBECONFIG"] = str(kubeconfig)
    env["PYTHONUNBUFFERED"] = "1"
    with log_path.open("ab") as log:
        cmd = [str(COMPLIANCE), *cli_args] if cli_args else [
            str(KOPF), "run", *(["--standalone"] if standalone else []), "--namespace", namespace,
            "-m", "compliance_operator.main"]
        proc = subprocess.Popen(cmd,
            stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        yield proc
        # still running, unless the test itself SIGKILLed it (a replica dying without a goodbye)
        assert proc.poll() is None or proc.returncode == -signal.SIGKILL, (
            f"operator exited early ({proc.returncode}):\n{tail(log_path)}")
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        print(f"--- operator log ({log_path}):\n{tail(log_path)}")


def tail(path: Path, lines: int = 60) -> str:
    """The last lines of a log file."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
