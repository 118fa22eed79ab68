"""A Redis primary, its replica and three sentinels on loopback: a failover in a few seconds."""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from compliance.localredis import LocalRedis, find_redis_server, free_port

MASTER = "mymaster"


@dataclass
class SentinelProcess:
    """``redis-server sentinel.conf --sentinel`` (the Debian package's redis-sentinel is the same)."""

    data_dir: Path
    monitor_port: int
    down_after_ms: int
    port: int = 0
    password: str | None = None
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> SentinelProcess:
        binary = find_redis_server()
        assert binary, "redis-server is needed (scripts/system-deps.sh installs it)"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        conf = self.data_dir / "sentinel.conf"  # sentinel rewrites it: one per process
        lines = [
            f"port {self.port}", "bind 127.0.0.1", f"dir {self.data_dir}",
            f"logfile {self.data_dir / 'sentinel.log'}",
            f"sentinel monitor {MASTER} 127.0.0.1 {self.monitor_port} 2",
            f"sentinel down-after-milliseconds {MASTER} {self.down_after_ms}",
            f"sentinel failover-timeout {MASTER} 5000",
            f"sentinel parallel-syncs {MASTER} 1",
        ]
        if self.password:
            lines.append(f"requirepass {self.password}")
        conf.write_text("\n".join(lines) + "\n")
        self.process = subprocess.Popen([binary, str(conf), "--sentinel"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, password=self.password, retry=None,
                             socket_connect_timeout=0.5)  # type: ignore[arg-type]
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"sentinel did not start; see {self.data_dir}") from None
                time.sleep(0.05)
        client.close()
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


@dataclass
class SentinelCluster:
    """Primary, one replica, three sentinels (quorum 2)."""

    base: Path
    down_after_ms: int = 1000
    sentinel_password: str | None = None
    nodes: list[LocalRedis] = field(default_factory=list)
    sentinels: list[SentinelProcess] = field(default_factory=list)

    def start(self) -> SentinelCluster:
        primary = LocalRedis(data_dir=self.base / "node0").start()
        replica = LocalRedis(data_dir=self.base / "node1",
                             extra_args=("--replicaof", "127.0.0.1", str(primary.port))).start()
        self.nodes = [primary, replica]
        self._wait(lambda: self._link_up(replica), "replica never synced")
        self.sentinels = [SentinelProcess(self.base / f"sentinel{i}", primary.port, self.down_after_ms,
                                          password=self.sentinel_password).start()
                          for i in range(3)]
        # Every sentinel must know the others and the replica before a failover can be elected.
        self._wait(self._sentinels_ready, "sentinels never discovered each other")
        return self

    @property
    def addresses(self) -> str:
        """COMPLIANCE_REDIS_SENTINELS for this cluster."""
        return ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)

    def env(self) -> dict[str, str]:
        """Service environment pointing at the sentinels (the URL's host and port are ignored)."""
        env = {"COMPLIANCE_REDIS_URL": "redis://ignored-host:1/0",
               "COMPLIANCE_REDIS_SENTINELS": self.addresses,
               "COMPLIANCE_REDIS_SENTINEL_MASTER": MASTER}
        if self.sentinel_password:
            env["COMPLIANCE_REDIS_SENTINEL_PASSWORD"] = self.sentinel_password
        return env

    def primary_port(self) -> int:
        """The port the sentinels name as primary now."""
        client = self._sentinel_client(self.sentinels[0])
        try:
            _, port = client.sentinel_get_master_addr_by_name(MASTER)
            return int(port)
        finally:
            client.close()

    def node(self, port: int) -> LocalRedis:
        return next(n for n in self.nodes if n.port == port)

    def client(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, decode_responses=True, retry=None,
                           socket_connect_timeout=0.5, socket_timeout=2)  # type: ignore[arg-type]

    def kill_primary(self) -> LocalRedis:
        """SIGKILL the current primary; returns it."""
        node = self.node(self.primary_port())
        node.kill()
        return node

    def wait_for_new_primary(self, old_port: int, timeout: float = 30.0) -> int:
        """Wait until every sentinel names a primary other than ``old_port`` that takes writes."""
        def promoted() -> int | None:
            ports = set()
            for sentinel in self.sentinels:
                client = self._sentinel_client(sentinel)
                try:
                    ports.add(int(client.sentinel_get_master_addr_by_name(MASTER)[1]))
                except redis.RedisError:
                    return None
                finally:
                    client.close()
            if len(ports) != 1 or old_port in ports:
                return None
            port = ports.pop()
            client = self.client(port)
            try:
                return port if client.info("replication")["role"] == "master" else None
            except redis.RedisError:
                return None
            finally:
                client.close()
        return int(self._wait(promoted, "no new primary was promoted", timeout))

    def stop(self) -> None:
        for sentinel in self.sentinels:
            sentinel.stop()
        for node in self.nodes:
            node.stop()

    def _sentinel_client(self, sentinel: SentinelProcess) -> redis.Redis:
        return redis.Redis(port=sentinel.port, password=sentinel.password, decode_responses=True,
                           retry=None, socket_connect_timeout=0.5, socket_timeout=2)  # type: ignore[arg-type]

    def _link_up(self, replica: LocalRedis) -> bool:
        client = self.client(replica.port)
        try:
            return client.info("replication").get("master_link_status") == "up"
        finally:
            client.close()

    def _sentinels_ready(self) -> bool:
        for sentinel in self.sentinels:
            client = self._sentinel_client(sentinel)
            try:
                state = client.sentinel_master(MASTER)
                if int(state["num-other-sentinels"]) < 2 or int(state["num-slaves"]) < 1:
                    return False
            finally:
                client.close()
        return True

    @staticmethod
    def _wait(predicate, message: str, timeout: float = 30.0):  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(message)
