"""A throwaway Kubernetes control plane (etcd + kube-apiserver [+ kube-controller-manager]).

envtest-style: real binaries built from Go modules by ``scripts/envtest-binaries.sh``,
no kubelet, no nodes, no containers. Pure stdlib; certificates are made with the
``openssl`` CLI.

    cp = ControlPlane(binary_dir)
    cp.start()
    ...  # cp.kubeconfig is a self-contained admin kubeconfig (CA-verified, client cert)
    cp.stop()

Security model: the apiserver runs with ``--authorization-mode=RBAC``; the admin
identity is a client certificate ``CN=envtest-admin, O=system:masters``. Everything
listens on 127.0.0.1 only, on ports picked free at start.
"""

from __future__ import annotations

import atexit
import base64
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO_ROOT / "scripts" / "envtest-binaries.sh"
DEFAULT_K8S_VERSION = "v1.34.4"
ADMIN_USER = "envtest-admin"


class ControlPlaneError(RuntimeError):
    pass


def build_binaries(k8s_version: str | None = None, timeout: float | None = None) -> Path:
    """Run scripts/envtest-binaries.sh (a fast no-op when cached) and return the bin dir."""
    version = k8s_version or os.environ.get("ENVTEST_K8S_VERSION", DEFAULT_K8S_VERSION)
    proc = subprocess.run(
        ["bash", str(BUILD_SCRIPT), version],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise ControlPlaneError(
            f"{BUILD_SCRIPT.name} {version} failed (exit {proc.returncode}):\n{proc.stderr[-6000:]}"
        )
    lines = proc.stdout.strip().splitlines()
    if not lines:
        raise ControlPlaneError(f"{BUILD_SCRIPT.name} printed no directory:\n{proc.stderr}")
    return Path(lines[-1])


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _openssl(*args: str, cwd: Path) -> None:
    proc = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise ControlPlaneError(f"openssl {' '.join(args)} failed:\n{proc.stderr}")


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


@dataclass
class _Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


@dataclass
class ControlPlane:
    """etcd + kube-apiserver (+ optionally kube-controller-manager) on loopback."""

    binary_dir: Path
    with_controller_manager: bool = False
    extra_apiserver_args: list[str] = field(default_factory=list)
    start_timeout: float = 90.0
    stop_timeout: float = 10.0  # per process, then SIGKILL
    keep_dir: bool = False  # keep the temp dir (logs, data) after stop(), for debugging
    # The node tier (tests/node) serves pods: the apiserver listens on the host's address (pods
    # reach it through the `kubernetes` Service) and the PV binder runs (static hostPath PVs).
    bind_address: str = "127.0.0.1"
    # The aggregation layer (front-proxy client cert, request-header auth): for metrics-server.
    aggregation: bool = False
    kcm_controllers: str = (
        "*,-nodeipam,-nodelifecycle,-cloud-node-lifecycle,-service-lb-controller,"
        "-persistentvolume-binder,-attachdetach"
    )

    workdir: Path | None = field(default=None, init=False)
    etcd_url: str = field(default="", init=False)
    url: str = field(default="", init=False)
    kubeconfig: Path | None = field(default=None, init=False)
    ca_file: Path | None = field(default=None, init=False)
    admin_cert: Path | None = field(default=None, init=False)
    admin_key: Path | None = field(default=None, init=False)
    startup_seconds: float = field(default=0.0, init=False)
    _procs: list[_Proc] = field(default_factory=list, init=False)

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> ControlPlane:
        if self._procs:
            raise ControlPlaneError("already started")
        t0 = time.monotonic()
        self.binary_dir = Path(self.binary_dir)
        for b in ["etcd", "kube-apiserver"] + (
            ["kube-controller-manager"] if self.with_controller_manager else []
        ):
            if not os.access(self.binary_dir / b, os.X_OK):
                raise ControlPlaneError(f"missing binary {self.binary_dir / b}")
        self.workdir = Path(tempfile.mkdtemp(prefix="compliance-envtest-"))
        atexit.register(self.stop)
        try:
            self._make_pki()
            self._start_etcd()
            self._start_apiserver()
            self._write_kubeconfig()
            if self.with_controller_manager:
                self._start_controller_manager()
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - t0
        return self

    def stop(self) -> None:
        # One at a time, in reverse start order (controller-manager, apiserver, etcd):
        # an apiserver whose etcd is already gone hangs ~15s in its shutdown hooks.
        while self._procs:
            p = self._procs.pop()
            if p.popen.poll() is None:
                p.popen.terminate()  # SIGTERM: graceful shutdown, ~1s for the apiserver
                try:
                    p.popen.wait(timeout=self.stop_timeout)
                except subprocess.TimeoutExpired:
                    p.popen.kill()
                    p.popen.wait(timeout=10)
        if self.workdir is not None and not self.keep_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        atexit.unregister(self.stop)

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---------------------------------------------------------------- pieces
    def _make_pki(self) -> None:
        assert self.workdir is not None
        pki = self.workdir / "pki"
        pki.mkdir()
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        _openssl(
            "req",
            "-x509",
            *ec,
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=compliance-envtest-ca",
            cwd=pki,
        )
        # apiserver serving cert: SANs cover loopback + in-cluster names.
        (pki / "serving.ext").write_text(
            f"subjectAltName=IP:127.0.0.1,IP:{self.bind_address},IP:10.0.0.1,DNS:localhost,"
            "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,"
            "DNS:kubernetes.default.svc.cluster.local\n"
            "extendedKeyUsage=serverAuth\n"
        )
        (pki / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
        for name, subj, ext in [
            ("apiserver", "/CN=kube-apiserver", "serving.ext"),
            ("admin", f"/O=system:masters/CN={ADMIN_USER}", "client.ext"),
            ("kcm", "/CN=system:kube-controller-manager", "client.ext"),
            ("front-proxy", "/CN=front-proxy-client", "client.ext"),
        ]:
            _openssl(
                "req",
                "-new",
                *ec,
                "-keyout",
                f"{name}.key",
                "-out",
                f"{name}.csr",
                "-subj",
                subj,
                cwd=pki,
            )
            _openssl(
                "x509",
                "-req",
                "-in",
                f"{name}.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                ext,
                "-out",
                f"{name}.crt",
                cwd=pki,
            )
        # ServiceAccount token signing key (RSA: RS256 is what every client expects).
        _openssl("genrsa", "-out", "sa.key", "2048", cwd=pki)
        _openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=pki)
        self.ca_file = pki / "ca.crt"
        self.admin_cert = pki / "admin.crt"
        self.admin_key = pki / "admin.key"

    def _spawn(self, name: str, args: list[str]) -> _Proc:
        assert self.workdir is not None
        log = self.workdir / f"{name}.log"
        with log.open("wb") as fh:
            popen = subprocess.Popen(
                args,
                stdout=fh,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.workdir,
            )
        proc = _Proc(name, popen, log)
        self._procs.append(proc)
        return proc

    def _wait(self, proc: _Proc, check, what: str) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + self.start_timeout
        last = ""
        while time.monotonic() < deadline:
            if proc.popen.poll() is not None:
                raise ControlPlaneError(
                    f"{proc.name} exited with {proc.popen.returncode} before {what}:\n{proc.tail()}"
                )
            try:
                if check():
                    return
            except (OSError, urllib.error.URLError, ValueError) as e:
                last = repr(e)
            time.sleep(0.2)
        raise ControlPlaneError(
            f"{proc.name} not {what} after {self.start_timeout}s ({last}):\n{proc.tail()}"
        )

    def _start_etcd(self) -> None:
        assert self.workdir is not None
        client, peer = free_port(), free_port()
        self.etcd_url = f"http://127.0.0.1:{client}"
        peer_url = f"http://127.0.0.1:{peer}"
        proc = self._spawn(
            "etcd",
            [
                str(self.binary_dir / "etcd"),
                "--name=envtest",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={self.etcd_url}",
                f"--advertise-client-urls={self.etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=envtest={peer_url}",
                "--unsafe-no-fsync=true",  # throwaway data: skip fsync, much faster
                "--log-level=warn",
            ],
        )

        def healthy() -> bool:
            with urllib.request.urlopen(f"{self.etcd_url}/health", timeout=2) as r:
                return bool(json.load(r).get("health") == "true")

        self._wait(proc, healthy, "healthy")

    def _apiserver_ssl(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        ctx.load_cert_chain(str(self.admin_cert), str(self.admin_key))
        return ctx

    def _start_apiserver(self) -> None:
        assert self.workdir is not None
        port = free_port()
        self.url = f"https://{self.bind_address}:{port}"
        pki = self.workdir / "pki"
        args = [
            str(self.binary_dir / "kube-apiserver"),
            f"--etcd-servers={self.etcd_url}",
            f"--bind-address={self.bind_address}",
            f"--advertise-address={self.bind_address}",
            f"--secure-port={port}",
            f"--cert-dir={self.workdir / 'apiserver-certs'}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            "--authorization-mode=RBAC",
            "--anonymous-auth=true",  # only /readyz,/livez,/version via system:public-info-viewer
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--service-cluster-ip-range=10.0.0.0/24",
            "--allow-privileged=true",
            # For `kubectl logs/exec` through a kubelet (tests/node); unused without one.
            f"--kubelet-client-certificate={pki / 'admin.crt'}",
            f"--kubelet-client-key={pki / 'admin.key'}",
            "--kubelet-preferred-address-types=InternalIP,Hostname",
            "--profiling=false",
            "--v=0",
        ]
        if self.aggregation:
            args += [
                f"--requestheader-client-ca-file={pki / 'ca.crt'}",
                "--requestheader-allowed-names=front-proxy-client",
                "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                "--requestheader-group-headers=X-Remote-Group",
                "--requestheader-username-headers=X-Remote-User",
                f"--proxy-client-cert-file={pki / 'front-proxy.crt'}",
                f"--proxy-client-key-file={pki / 'front-proxy.key'}",
                "--enable-aggregator-routing=true",
            ]
        if not self.with_controller_manager:
            # Without the serviceaccount controller no namespace gets a "default" SA,
            # and the ServiceAccount admission plugin would reject every Pod.
            args.append("--disable-admission-plugins=ServiceAccount")
        args += self.extra_apiserver_args
        proc = self._spawn("kube-apiserver", args)
        ctx = self._apiserver_ssl()

        def ready() -> bool:
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=5, context=ctx) as r:
                    return bool(r.status == 200 and r.read().strip() == b"ok")
            except urllib.error.HTTPError:  # 500 while post-start hooks run
                return False

        self._wait(proc, ready, "ready (/readyz)")

    def _kubeconfig_dict(self, user: str, cert: Path, key: Path) -> dict:  # type: ignore[type-arg]
        assert self.ca_file is not None
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "envtest",
                    "cluster": {
                        "server": self.url,
                        "certificate-authority-data": _b64(self.ca_file),
                    },
                }
            ],
            "users": [
                {
                    "name": user,
                    "user": {"client-certificate-data": _b64(cert), "client-key-data": _b64(key)},
                }
            ],
            "contexts": [{"name": "envtest", "context": {"cluster": "envtest", "user": user}}],
            "current-context": "envtest",
            "preferences": {},
        }

    def _write_kubeconfig(self) -> None:
        assert self.workdir is not None and self.admin_cert and self.admin_key
        # JSON is valid YAML: no PyYAML needed to write it.
        self.kubeconfig = self.workdir / "kubeconfig"
        self.kubeconfig.write_text(
            json.dumps(self._kubeconfig_dict(ADMIN_USER, self.admin_cert, self.admin_key), indent=2)
        )
        self.kubeconfig.chmod(0o600)

    def _start_controller_manager(self) -> None:
        assert self.workdir is not None
        pki = self.workdir / "pki"
        kcm_kubeconfig = self.workdir / "kcm.kubeconfig"
        kcm_kubeconfig.write_text(
            json.dumps(
                self._kubeconfig_dict(
                    "system:kube-controller-manager", pki / "kcm.crt", pki / "kcm.key"
                )
            )
        )
        port = free_port()
        proc = self._spawn(
            "kube-controller-manager",
            [
                str(self.binary_dir / "kube-controller-manager"),
                f"--kubeconfig={kcm_kubeconfig}",
                f"--authentication-kubeconfig={kcm_kubeconfig}",
                f"--authorization-kubeconfig={kcm_kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={port}",
                f"--cert-dir={self.workdir / 'kcm-certs'}",
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--root-ca-file={pki / 'ca.crt'}",
                "--leader-elect=false",
                f"--controllers={self.kcm_controllers}",
                "--v=0",
            ],
        )
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # its self-signed serving cert; /healthz only

        def healthy() -> bool:
            url = f"https://127.0.0.1:{port}/healthz"
            try:
                with urllib.request.urlopen(url, timeout=5, context=ctx) as r:
                    return bool(r.status == 200)
            except urllib.error.HTTPError:
                return False

        self._wait(proc, healthy, "healthy (/healthz)")

    # ---------------------------------------------------------------- helpers
    def env(self) -> dict[str, str]:
        """os.environ plus KUBECONFIG pointing at the admin kubeconfig."""
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig)}

    def logs(self) -> dict[str, str]:
        return {p.name: p.tail(200) for p in self._procs}


def _main() -> None:  # pragma: no cover - manual use: python tests/k8s/controlplane.py
    import argparse

    ap = argparse.ArgumentParser(description="start a throwaway control plane until Ctrl-C")
    ap.add_argument("--version", default=None)
    ap.add_argument("--controller-manager", action="store_true")
    a = ap.parse_args()
    t0 = time.monotonic()
    bins = build_binaries(a.version)
    print(f"binaries: {bins} ({time.monotonic() - t0:.1f}s)")
    cp = ControlPlane(bins, with_controller_manager=a.controller_manager).start()
    print(f"started in {cp.startup_seconds:.2f}s: {cp.url}\nexport KUBECONFIG={cp.kubeconfig}")
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        cp.stop()


if __name__ == "__main__":
    _main()
