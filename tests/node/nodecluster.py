"""A real one-node Kubernetes cluster for the node tier (tests/node).

The envtest control plane of tests/k8s (etcd, kube-apiserver, kube-controller-manager, here on the
host's address so pods reach it through the ``kubernetes`` Service) plus kube-scheduler, a kubelet
on Debian's containerd and runc, kube-proxy (iptables mode) and CoreDNS as host processes. Images
come from one ``docker save`` archive (scripts/node-images.sh) imported into containerd. Pods get
addresses from Debian's CNI ``bridge`` plugin (cni0, 10.244.0.0/24); DNS is CoreDNS serving only
cluster names behind the ``kube-dns`` Service (10.0.0.10).

    cluster = NodeCluster(dirs, images_tar)
    cluster.start()   # ~15-30 s warm
    ...               # cluster.kubeconfig, cluster.kubectl(...)
    cluster.stop()    # pods deleted through the kubelet, every process stopped by PID,
                      # iptables, bridges, mounts and the sysctls the kubelet changes restored

Two fixes this machine needs (see docs/testing.md): containerd's ``restrict_oom_score_adj`` (root
here lacks CAP_SYS_RESOURCE) and ACCEPT rules in FORWARD for the pod CIDR (a Docker engine may
have left the policy at DROP).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "k8s"))

from controlplane import ControlPlane, ControlPlaneError, free_port

REPO = Path(__file__).resolve().parents[2]
NODE_NAME = "compliance-node"
POD_CIDR = "10.244.0.0/24"
DNS_IP = "10.0.0.10"
PAUSE_VERSION = os.environ.get("NODE_PAUSE_VERSION", "3.10.1")
# What the kubelet and kube-proxy change on the host, put back by stop().
SYSCTLS = (
    "vm/overcommit_memory",
    "kernel/panic",
    "kernel/panic_on_oops",
    "net/ipv4/ip_forward",
    "net/ipv4/conf/all/route_localnet",
    "net/bridge/bridge-nf-call-iptables",
    "net/bridge/bridge-nf-call-ip6tables",
    "net/netfilter/nf_conntrack_max",
)


class NodeError(RuntimeError):
    pass


def host_ip() -> str:
    """The address of the default route's interface (pods reach host processes on it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("192.0.2.254", 9))  # no packet is sent: this only picks the source address
        return str(s.getsockname()[0])


def preflight() -> str | None:
    """Why this machine cannot run a container engine and a node, or None when it can."""
    if os.geteuid() != 0:
        return "not root"
    if "overlay" not in Path("/proc/filesystems").read_text():
        return "no overlay filesystem in the kernel"
    if not Path("/proc/sys/net/bridge/bridge-nf-call-iptables").exists():
        return "no br_netfilter (net.bridge.bridge-nf-call-iptables is missing)"
    if not Path("/sys/fs/cgroup").is_dir():
        return "no cgroup filesystem"
    return None


def _run(*args: str, check: bool = True, timeout: float = 60, **kw: object) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, check=False, **kw)  # type: ignore[call-overload]
    if check and proc.returncode != 0:
        raise NodeError(f"{' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return proc  # type: ignore[no-any-return]


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
class NodeCluster:
    envtest_dir: Path
    node_dir: Path
    coredns_dir: Path
    metrics_server_dir: Path
    images_tar: Path
    tools_dir: Path  # kubectl (scripts/k8s-tools.sh)
    keep_dir: bool = False
    start_timeout: float = 120.0

    workdir: Path | None = field(default=None, init=False)
    ip: str = field(default="", init=False)
    plane: ControlPlane | None = field(default=None, init=False)
    kubeconfig: Path | None = field(default=None, init=False)
    startup_seconds: float = field(default=0.0, init=False)
    timings: dict[str, float] = field(default_factory=dict, init=False)
    stop_timings: dict[str, float] = field(default_factory=dict, init=False)  # teardown steps over 1 s
    _procs: list[_Proc] = field(default_factory=list, init=False)
    _sysctls: dict[str, str] = field(default_factory=dict, init=False)
    _iptables: dict[str, str] = field(default_factory=dict, init=False)
    _netns_before: set[str] = field(default_factory=set, init=False)
    _had_cni0: bool = field(default=False, init=False)
    _links_before: set[str] = field(default_factory=set, init=False)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> NodeCluster:
        t0 = time.monotonic()
        self.ip = host_ip()
        self.workdir = Path(tempfile.mkdtemp(prefix="compliance-node-"))
        self.workdir.chmod(0o755)
        try:
            self._save_host_state()
            self._lap("host state saved", t0)
            self._start_containerd()
            self._import_images()
            self._lap("containerd + images", t0)
            self._start_control_plane()
            self._lap("control plane", t0)
            self._start_scheduler()
            self._start_kube_proxy()
            self._start_coredns()
            self._start_kubelet()
            self._wait_node_ready()
            self._lap("node Ready", t0)
            self._create_pvs()
            self._start_metrics_server()
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - t0
        return self

    def _lap(self, what: str, t0: float) -> None:
        self.timings[what] = round(time.monotonic() - t0, 1)

    def stop(self) -> None:
        errors: list[str] = []

        def step(name: str, fn) -> None:  # type: ignore[no-untyped-def]
            t0 = time.monotonic()
            try:
                fn()
            except Exception as e:  # keep tearing down whatever fails
                errors.append(f"{name}: {e}")
            if time.monotonic() - t0 > 1:
                self.stop_timings[name] = round(time.monotonic() - t0, 1)

        if self.plane is not None and self.kubelet_running():
            step("delete pods", self._delete_all_pods)
        for name in ("metrics-server", "kubelet", "kube-proxy", "coredns", "kube-scheduler"):
            step(f"stop {name}", lambda n=name: self._stop_proc(n))
        step("kube-proxy --cleanup", self._kube_proxy_cleanup)
        step("containerd tasks", self._kill_tasks)
        step("stop containerd", lambda: self._stop_proc("containerd"))
        step("containerd shims", self._kill_shims)
        if self.plane is not None:
            step("control plane", self.plane.stop)
            self.plane = None
        step("netns", self._remove_netns)
        step("iptables", self._restore_iptables)
        step("bridge", self._remove_bridge)
        step("sysctls", self._restore_sysctls)
        step("mounts", self._unmount_all)
        step("cgroups", self._remove_cgroups)
        if self.workdir is not None and not self.keep_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        self._procs.clear()
        if errors:
            print("node teardown problems:\n  " + "\n  ".join(errors), file=sys.stderr)

    # ------------------------------------------------------------------ host state
    def _save_host_state(self) -> None:
        for key in SYSCTLS:
            path = Path("/proc/sys") / key
            if path.exists():
                self._sysctls[key] = path.read_text().strip()
        for tool in ("iptables", "ip6tables"):
            if shutil.which(f"{tool}-save"):
                self._iptables[tool] = _run(f"{tool}-save").stdout
        netns = Path("/var/run/netns")
        self._netns_before = {p.name for p in netns.iterdir()} if netns.is_dir() else set()
        self._had_cni0 = Path("/sys/class/net/cni0").exists()
        self._links_before = {p.name for p in Path("/sys/class/net").iterdir()}
        for key, value in (
            ("net/ipv4/ip_forward", "1"),
            ("net/bridge/bridge-nf-call-iptables", "1"),
        ):
            (Path("/proc/sys") / key).write_text(value)
        # Fix 2: pod traffic crosses FORWARD (br_netfilter); a Docker engine sets its policy to DROP.
        for flag in ("-s", "-d"):
            _run("iptables", "-w", "-I", "FORWARD", "1", flag, POD_CIDR, "-j", "ACCEPT")

    def _restore_sysctls(self) -> None:
        for key, value in self._sysctls.items():
            with contextlib.suppress(OSError):
                (Path("/proc/sys") / key).write_text(value)

    def _restore_iptables(self) -> None:
        """Put back every table as saved; a table that did not exist then (iptables-save prints
        nothing for it) is emptied: no rule, no chain of ours, builtin policies ACCEPT."""
        for tool, saved in self._iptables.items():
            had = set(re.findall(r"^\*(\w+)$", saved, re.M))
            now = set(re.findall(r"^\*(\w+)$", _run(f"{tool}-save").stdout, re.M))
            for table in sorted(now - had):
                _run(tool, "-w", "-t", table, "-F", check=False)
                _run(tool, "-w", "-t", table, "-X", check=False)
                builtins = re.findall(r"^:([A-Z]+) (?:ACCEPT|DROP)", _run(f"{tool}-save", "-t", table).stdout, re.M)
                for chain in builtins:
                    _run(tool, "-w", "-t", table, "-P", chain, "ACCEPT", check=False)
            if saved.strip():
                _run(f"{tool}-restore", input=saved)
        self._iptables.clear()

    def _remove_bridge(self) -> None:
        if not self._had_cni0 and Path("/sys/class/net/cni0").exists():
            _run("ip", "link", "delete", "cni0")
        # A pod's veth whose namespace the kernel has not reaped yet.
        for link in Path("/sys/class/net").iterdir():
            if link.name.startswith("veth") and link.name not in self._links_before:
                _run("ip", "link", "delete", link.name, check=False)

    def _remove_netns(self) -> None:
        netns = Path("/var/run/netns")
        if not netns.is_dir():
            return
        for p in netns.iterdir():
            if p.name.startswith("cni-") and p.name not in self._netns_before:
                _run("umount", "-l", str(p), check=False)
                p.unlink(missing_ok=True)

    def _unmount_all(self) -> None:
        if self.workdir is None:
            return
        prefix = str(self.workdir) + "/"
        mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
        for m in sorted((m for m in mounts if m.startswith(prefix)), reverse=True):
            _run("umount", "-l", m, check=False)

    def _remove_cgroups(self) -> None:
        # The kubelet's QoS hierarchy (cgroupfs driver), once every pod is gone: empty dirs only.
        for top in Path("/sys/fs/cgroup").glob("*/kubepods"):
            for d in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
                with contextlib.suppress(OSError):
                    d.rmdir()
            with contextlib.suppress(OSError):
                top.rmdir()

    # ------------------------------------------------------------------ processes
    def _spawn(self, name: str, args: list[str], env: dict[str, str] | None = None) -> _Proc:
        assert self.workdir is not None
        log = self.workdir / f"{name}.log"
        with log.open("wb") as fh:
            popen = subprocess.Popen(
                args, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=self.workdir, env=env, start_new_session=True,
            )
        proc = _Proc(name, popen, log)
        self._procs.append(proc)
        return proc

    def proc(self, name: str) -> _Proc | None:
        return next((p for p in self._procs if p.name == name), None)

    def kubelet_running(self) -> bool:
        p = self.proc("kubelet")
        return p is not None and p.popen.poll() is None

    def _stop_proc(self, name: str, timeout: float = 15) -> None:
        p = self.proc(name)
        if p is None or p.popen.poll() is not None:
            return
        p.popen.terminate()
        try:
            p.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.popen.kill()
            p.popen.wait(timeout=10)

    def _wait(self, proc: _Proc, check, what: str, timeout: float | None = None) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + (timeout or self.start_timeout)
        last = ""
        while time.monotonic() < deadline:
            if proc.popen.poll() is not None:
                raise NodeError(f"{proc.name} exited with {proc.popen.returncode} before {what}:\n{proc.tail()}")
            try:
                if check():
                    return
            except (OSError, urllib.error.URLError, ValueError, subprocess.SubprocessError) as e:
                last = repr(e)
            time.sleep(0.2)
        raise NodeError(f"{proc.name} not {what} after {timeout or self.start_timeout}s ({last}):\n{proc.tail()}")

    def logs(self, n: int = 60) -> str:
        out = [f"--- {p.name}\n{p.tail(n)}" for p in self._procs]
        if self.plane is not None:
            out += [f"--- {k}\n{v}" for k, v in self.plane.logs().items()]
        return "\n".join(out)

    # ------------------------------------------------------------------ containerd
    @property
    def containerd_sock(self) -> Path:
        assert self.workdir is not None
        return self.workdir / "containerd" / "containerd.sock"

    def ctr(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return _run("ctr", "--address", str(self.containerd_sock), "-n", "k8s.io", *args, timeout=timeout)

    def _start_containerd(self) -> None:
        assert self.workdir is not None
        d = self.workdir / "containerd"
        cni_conf = self.workdir / "cni"
        for sub in (d, cni_conf):
            sub.mkdir(parents=True)
        (cni_conf / "10-compliance.conflist").write_text(json.dumps({
            "cniVersion": "1.0.0",
            "name": "compliance-node",
            "plugins": [
                {
                    "type": "bridge", "bridge": "cni0", "isGateway": True, "ipMasq": True,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local", "ranges": [[{"subnet": POD_CIDR}]],
                        "routes": [{"dst": "0.0.0.0/0"}], "dataDir": str(self.workdir / "cni-ipam"),
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        }))
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        (d / "config.toml").write_text(f"""version = 2
root = "{d / 'root'}"
state = "{d / 'state'}"
[grpc]
  address = "{self.containerd_sock}"
[plugins."io.containerd.internal.v1.opt"]
  path = "{d / 'opt'}"
[{cri}]
  sandbox_image = "registry.k8s.io/pause:{PAUSE_VERSION}"
  # Fix 1: root here lacks CAP_SYS_RESOURCE, so a negative oom_score_adj fails every sandbox.
  restrict_oom_score_adj = true
  enable_selinux = false
[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"
[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
[{cri}.containerd.runtimes.runc.options]
  SystemdCgroup = false
  Root = "{d / 'runc'}"
[{cri}.cni]
  bin_dir = "/usr/lib/cni"
  conf_dir = "{cni_conf}"
""")
        proc = self._spawn("containerd", ["containerd", "--config", str(d / "config.toml")])
        self._wait(proc, lambda: self.ctr("version", timeout=5).returncode == 0, "serving", timeout=30)

    def _import_images(self) -> None:
        self.ctr("images", "import", "--no-unpack", str(self.images_tar), timeout=600)

    def _kill_tasks(self) -> None:
        if self.proc("containerd") is None or not self.containerd_sock.exists():
            return
        tasks = self._running_tasks()
        for t in tasks:
            _run("ctr", "--address", str(self.containerd_sock), "-n", "k8s.io", "tasks", "kill", "-s", "SIGKILL",
                 t, check=False, timeout=20)
        for t in tasks:
            _run("ctr", "--address", str(self.containerd_sock), "-n", "k8s.io", "tasks", "delete", "-f", t,
                 check=False, timeout=20)

    def _running_tasks(self) -> list[str]:
        """Container ids whose task is not STOPPED (``ctr tasks ls`` lists stopped ones too)."""
        lines = self.ctr("tasks", "ls", timeout=20).stdout.splitlines()[1:]
        return [f[0] for f in (ln.split() for ln in lines) if len(f) >= 3 and f[2] != "STOPPED"]

    def _kill_shims(self) -> None:
        # containerd-shim-runc-v2 processes outlive containerd; ours name our socket on their command line.
        sock = str(self.containerd_sock)
        for pid_dir in Path("/proc").iterdir():
            if not pid_dir.name.isdigit():
                continue
            try:
                cmd = (pid_dir / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if cmd and cmd[0].endswith(b"containerd-shim-runc-v2") and sock.encode() in cmd:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid_dir.name), 9)

    # ------------------------------------------------------------------ control plane
    def _start_control_plane(self) -> None:
        self.plane = ControlPlane(
            self.envtest_dir,
            with_controller_manager=True,
            bind_address=self.ip,
            aggregation=True,
            kcm_controllers="*,-nodeipam,-cloud-node-lifecycle,-service-lb-controller",
            keep_dir=self.keep_dir,
        )
        try:
            self.plane.start()
        except ControlPlaneError as e:
            raise NodeError(str(e)) from e
        self.kubeconfig = self.plane.kubeconfig

    def _kubeconfig_path(self) -> str:
        assert self.kubeconfig is not None
        return str(self.kubeconfig)

    def _start_scheduler(self) -> None:
        port = free_port()
        kc = self._kubeconfig_path()
        proc = self._spawn("kube-scheduler", [
            str(self.node_dir / "kube-scheduler"), f"--kubeconfig={kc}",
            f"--authentication-kubeconfig={kc}", f"--authorization-kubeconfig={kc}",
            "--bind-address=127.0.0.1", f"--secure-port={port}", "--leader-elect=false", "--v=0",
        ])
        self._wait(proc, lambda: _https_ok(f"https://127.0.0.1:{port}/healthz"), "healthy")

    def _start_kube_proxy(self) -> None:
        assert self.workdir is not None
        hz = free_port()
        cfg = self.workdir / "kube-proxy.json"
        cfg.write_text(json.dumps({
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": self._kubeconfig_path()},
            "mode": "iptables",
            "clusterCIDR": POD_CIDR,
            "hostnameOverride": NODE_NAME,
            "healthzBindAddress": f"127.0.0.1:{hz}",
            "metricsBindAddress": f"127.0.0.1:{free_port()}",
            "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
        }))
        self._spawn("kube-proxy", [str(self.node_dir / "kube-proxy"), f"--config={cfg}", "--v=0"])
        self._proxy_healthz = f"http://127.0.0.1:{hz}/healthz"

    def _kube_proxy_cleanup(self) -> None:
        assert self.workdir is not None
        if (self.workdir / "kube-proxy.json").exists():
            _run(str(self.node_dir / "kube-proxy"), f"--config={self.workdir / 'kube-proxy.json'}", "--cleanup",
                 check=False)

    def _start_coredns(self) -> None:
        """CoreDNS as a host process on <host ip>:<port>, behind the kube-dns Service (10.0.0.10:53)."""
        assert self.workdir is not None
        port = free_port()
        corefile = self.workdir / "Corefile"
        corefile.write_text(f"""cluster.local:{port} in-addr.arpa:{port} ip6.arpa:{port} {{
    bind {self.ip}
    errors
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
        kubeconfig {self._kubeconfig_path()}
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }}
    cache 5
}}
.:{port} {{
    bind {self.ip}
    template ANY ANY {{
        rcode NXDOMAIN
    }}
}}
""")
        self._spawn("coredns", [str(self.coredns_dir / "coredns"), "-conf", str(corefile)])
        self.apply({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "kube-dns", "namespace": "kube-system", "labels": {"k8s-app": "kube-dns"}},
            "spec": {"clusterIP": DNS_IP, "ports": [
                {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": port},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": port},
            ]},
        })
        self.apply({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "kube-dns-host", "namespace": "kube-system",
                         "labels": {"kubernetes.io/service-name": "kube-dns",
                                    "endpointslice.kubernetes.io/managed-by": "compliance-node-tier"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [self.ip], "conditions": {"ready": True}}],
            "ports": [{"name": "dns", "port": port, "protocol": "UDP"},
                      {"name": "dns-tcp", "port": port, "protocol": "TCP"}],
        })

    def _start_kubelet(self) -> None:
        assert self.workdir is not None and self.plane is not None and self.plane.ca_file is not None
        root = self.workdir / "kubelet"
        root.mkdir()
        cfg = self.workdir / "kubelet.json"
        self.kubelet_port = free_port()
        self._kubelet_healthz = free_port()
        cfg.write_text(json.dumps({
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": self.ip,
            "port": self.kubelet_port,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": self._kubelet_healthz,
            "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": False},
                               "x509": {"clientCAFile": str(self.plane.ca_file)}},
            "authorization": {"mode": "AlwaysAllow"},
            "cgroupDriver": "cgroupfs",
            "failCgroupV1": False,  # Kubernetes 1.35 refuses cgroup v1 otherwise
            "failSwapOn": False,
            "containerRuntimeEndpoint": f"unix://{self.containerd_sock}",
            "clusterDNS": [DNS_IP],
            "clusterDomain": "cluster.local",
            "hairpinMode": "hairpin-veth",
            "podLogsDir": str(self.workdir / "pod-logs"),
            "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%",
                             "imagefs.available": "1%", "nodefs.inodesFree": "1%"},
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "serializeImagePulls": False,
            "protectKernelDefaults": False,
            "maxPods": 60,
            "syncFrequency": "10s",
            "fileCheckFrequency": "10s",
            "nodeStatusUpdateFrequency": "5s",
        }))
        self._spawn("kubelet", [
            str(self.node_dir / "kubelet"), f"--config={cfg}", f"--kubeconfig={self._kubeconfig_path()}",
            f"--root-dir={root}", f"--cert-dir={self.workdir / 'kubelet-pki'}",
            f"--hostname-override={NODE_NAME}", f"--node-ip={self.ip}", "--v=1",
        ])

    def _wait_node_ready(self) -> None:
        kubelet = self.proc("kubelet")
        assert kubelet is not None

        def ready() -> bool:
            out = self.kubectl("get", "node", NODE_NAME, "-o", "json", check=False)
            if out.returncode != 0:
                return False
            conds = {c["type"]: c["status"] for c in json.loads(out.stdout)["status"].get("conditions", [])}
            return conds.get("Ready") == "True"

        self._wait(kubelet, ready, "Ready")
        proxy = self.proc("kube-proxy")
        assert proxy is not None
        self._wait(proxy, lambda: _http_ok(self._proxy_healthz), "healthy", timeout=60)

    def _start_metrics_server(self) -> None:
        """metrics-server as a host process behind the v1beta1.metrics.k8s.io APIService (the HPA's
        CPU figures: the kubelet's /metrics/resource)."""
        assert self.workdir is not None
        port = free_port()
        kc = self._kubeconfig_path()
        proc = self._spawn("metrics-server", [
            str(self.metrics_server_dir / "metrics-server"), f"--kubeconfig={kc}",
            f"--authentication-kubeconfig={kc}", f"--authorization-kubeconfig={kc}",
            f"--bind-address={self.ip}", f"--secure-port={port}", f"--cert-dir={self.workdir / 'metrics-server'}",
            "--kubelet-insecure-tls", "--kubelet-preferred-address-types=InternalIP",
            "--kubelet-use-node-status-port", "--metric-resolution=15s", "--v=1",
        ])
        self._wait(proc, lambda: _https_ok(f"https://{self.ip}:{port}/readyz"), "ready", timeout=60)
        self.apply({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "metrics-server", "namespace": "kube-system"},
            "spec": {"ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}]},
        })
        self.apply({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "metrics-server-host", "namespace": "kube-system",
                         "labels": {"kubernetes.io/service-name": "metrics-server",
                                    "endpointslice.kubernetes.io/managed-by": "compliance-node-tier"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [self.ip], "conditions": {"ready": True}}],
            "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
        })
        self.apply({
            "apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
            "metadata": {"name": "v1beta1.metrics.k8s.io"},
            "spec": {"group": "metrics.k8s.io", "version": "v1beta1", "insecureSkipTLSVerify": True,
                     "groupPriorityMinimum": 100, "versionPriority": 100,
                     "service": {"name": "metrics-server", "namespace": "kube-system", "port": 443}},
        })

    def _create_pvs(self) -> None:
        """Static hostPath PVs for the chart's claims (no provisioner here); 0777: hostPath ignores fsGroup."""
        assert self.workdir is not None
        for i in range(6):
            path = self.workdir / "pv" / f"pv{i}"
            path.mkdir(parents=True)
            path.chmod(0o777)
            self.apply({
                "apiVersion": "v1", "kind": "PersistentVolume",
                "metadata": {"name": f"node-pv{i}"},
                "spec": {"capacity": {"storage": "20Gi"}, "accessModes": ["ReadWriteOnce", "ReadWriteMany"],
                         "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "",
                         "hostPath": {"path": str(path), "type": "Directory"}},
            })

    def _delete_all_pods(self) -> None:
        """Delete every workload and pod through the API, so the kubelet stops each sandbox (CNI DEL,
        netns removed), then wait until containerd runs no task."""
        # Controllers first, orphaning their pods (nothing recreates them), then every pod at once
        # without grace (the chart's workers would otherwise take their 60-90 s).
        self.kubectl("delete", "deployments,statefulsets,replicasets,jobs,daemonsets,cronjobs", "--all", "-A",
                     "--cascade=orphan", "--wait=false", check=False, timeout=60)
        self.kubectl("delete", "pods", "--all", "-A", "--grace-period=0", "--force", "--wait=false", check=False,
                     timeout=60)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if not self._running_tasks():
                return
            time.sleep(0.5)
        raise NodeError("containerd still runs tasks 60 s after every pod was deleted")

    # ------------------------------------------------------------------ helpers
    def env(self) -> dict[str, str]:
        return {**os.environ, "KUBECONFIG": self._kubeconfig_path()}

    def kubectl(self, *args: str, check: bool = True, timeout: float = 120,
                input: str | None = None) -> subprocess.CompletedProcess[str]:
        return _run(str(self.tools_dir / "kubectl"), *args, check=check, timeout=timeout, env=self.env(), input=input)

    def describe(self, namespace: str) -> str:
        """Pods, events and the kubelet's log tail: what a failed test shows."""
        pods = self.kubectl("get", "pods", "-n", namespace, "-o", "wide", check=False).stdout
        events = self.kubectl("get", "events", "-n", namespace, "--sort-by=.lastTimestamp", check=False).stdout
        kubelet = self.proc("kubelet")
        return (f"--- pods\n{pods}\n--- events\n{events[-4000:]}\n"
                f"--- kubelet\n{kubelet.tail(30) if kubelet else ''}")

    def apply(self, doc: dict) -> None:  # type: ignore[type-arg]
        self.kubectl("apply", "-f", "-", input=json.dumps(doc))


def _https_ok(url: str) -> bool:
    import ssl

    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, timeout=5, context=ctx) as r:
            return bool(r.status == 200)
    except urllib.error.HTTPError:
        return False


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return bool(r.status == 200)
    except urllib.error.HTTPError:
        return False
