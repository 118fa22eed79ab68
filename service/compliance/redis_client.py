"""Builds the Redis clients of every process: one plain URL, or a primary found through Sentinel.

With ``COMPLIANCE_REDIS_SENTINELS`` set, a client asks the sentinels for the current primary of
``COMPLIANCE_REDIS_SENTINEL_MASTER`` whenever it opens a connection, and drops connections to a
primary that was demoted (redis-py's ``SentinelConnectionPool``). So after a failover every
process follows the new primary without a restart; between the crash and the promotion, calls
fail with ``ConnectionError`` (the API answers 503). ``COMPLIANCE_REDIS_URL`` still gives the
database number, user and password of the data nodes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import hiredis
import redis
import redis.asyncio
import redis.asyncio.sentinel
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.connection import parse_url
from redis.exceptions import DataError
from redis.retry import Retry
from redis.sentinel import Sentinel, SentinelConnectionPool

from compliance.settings import Settings, parse_address


@dataclass(frozen=True)
class RedisTarget:
    """Where Redis is: a URL, and the sentinels that name its primary when there are any."""

    url: str
    sentinels: tuple[tuple[str, int], ...] = ()
    master: str = "mymaster"
    sentinel_password: str | None = field(default=None, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> RedisTarget:
        """The target ``settings`` name."""
        password = settings.redis_sentinel_password
        return cls(url=settings.redis_url, sentinels=tuple(settings.sentinel_addresses),
                   master=settings.redis_sentinel_master,
                   sentinel_password=password.get_secret_value() if password else None)

    @classmethod
    def from_env(cls, env: dict[str, str], *, url_key: str = "COMPLIANCE_REDIS_URL") -> RedisTarget:
        """The target a service's environment names (the operator reads it from a Secret)."""
        sentinels = [s for s in (env.get("COMPLIANCE_REDIS_SENTINELS") or "").split(",") if s.strip()]
        default_master = str(Settings.model_fields["redis_sentinel_master"].default)
        return cls(url=env[url_key], sentinels=tuple(parse_address(s) for s in sentinels),
                   master=(env.get("COMPLIANCE_REDIS_SENTINEL_MASTER") or default_master).strip(),
                   sentinel_password=env.get("COMPLIANCE_REDIS_SENTINEL_PASSWORD") or None)

    @property
    def uses_sentinel(self) -> bool:
        """Is the primary found through sentinels?"""
        return bool(self.sentinels)

    def data_node_params(self) -> dict[str, Any]:
        """Database, user, password and TLS of the data nodes (the URL without host and port)."""
        params: dict[str, Any] = dict(parse_url(self.url))  # type: ignore[no-untyped-call]
        params.pop("host", None)
        params.pop("port", None)
        if params.pop("connection_class", None) is not None:  # rediss://
            params["ssl"] = True
        return params

    def sentinel(self, *, timeout: float) -> Sentinel:
        """A redis-py Sentinel for this target (connects on first use); a dead sentinel is
        skipped at once, not retried: the next one answers."""
        return Sentinel(list(self.sentinels),  # type: ignore[no-untyped-call]
                        sentinel_kwargs=self.sentinel_kwargs(timeout) | {"retry": Retry(NoBackoff(), 0)},
                        socket_timeout=timeout, socket_connect_timeout=timeout)

    def sentinel_kwargs(self, timeout: float) -> dict[str, Any]:
        """Connection options of the sentinels themselves (timeouts, their password)."""
        kwargs: dict[str, Any] = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
        if self.sentinel_password:
            kwargs["password"] = self.sentinel_password
        return kwargs

    def broker_url(self) -> str:
        """The kombu broker URL: the Redis URL, or one ``sentinel://`` URL.

        Only the first sentinel goes in the URL (with the data nodes' credentials and database);
        ``compliance.broker_transport.SentinelTransport`` takes them all from the ``sentinels``
        transport option. (kombu's own ``;``-separated list would make kombu switch, on the first
        connection error, to its stock transport, which lacks our QoS.)
        """
        if not self.uses_sentinel:
            return self.url
        params = self.data_node_params()
        userinfo = ""
        if params.get("password") is not None:
            userinfo = f"{quote(params.get('username') or '', safe='')}:{quote(params['password'], safe='')}@"
        host, port = self.sentinels[0]
        host = f"[{host}]" if ":" in host else host
        return f"sentinel://{userinfo}{host}:{port}/{params.get('db', 0)}"

    def broker_transport_options(self, *, timeout: float) -> dict[str, Any]:
        """kombu transport options that name the sentinels and the master (empty without)."""
        if not self.uses_sentinel:
            return {}
        return {"master_name": self.master, "sentinels": [list(s) for s in self.sentinels],
                "sentinel_kwargs": self.sentinel_kwargs(timeout)}


class BlockingSentinelConnectionPool(SentinelConnectionPool, redis.BlockingConnectionPool):  # type: ignore[misc]
    """A sentinel-managed pool that waits for a free connection instead of failing at the cap."""


def connect(target: RedisTarget, *, max_connections: int, timeout: float, retry: Retry | None,
            decode_responses: bool = True, blocking: bool = True,
            health_check_interval: int = 30) -> redis.Redis:
    """A pooled sync client for ``target`` (nothing connects until the first call)."""
    common: dict[str, Any] = {
        "max_connections": max_connections, "socket_timeout": timeout,
        "socket_connect_timeout": timeout, "decode_responses": decode_responses,
        "health_check_interval": health_check_interval,
        "retry": retry if retry is not None else Retry(NoBackoff(), 0),
    }
    if blocking:
        common["timeout"] = timeout
    if not target.uses_sentinel:
        pool_class = redis.BlockingConnectionPool if blocking else redis.ConnectionPool
        return redis.Redis(connection_pool=pool_class.from_url(target.url, **common))
    sentinel_pool = BlockingSentinelConnectionPool if blocking else SentinelConnectionPool
    client: redis.Redis = target.sentinel(timeout=timeout).master_for(  # type: ignore[no-untyped-call]
        target.master, redis_class=redis.Redis, connection_pool_class=sentinel_pool,
        **target.data_node_params(), **common)
    return client


def create_redis(settings: Settings) -> redis.Redis:
    """A pooled client sized for the process's concurrency; answers are decoded to str."""
    return connect(
        RedisTarget.from_settings(settings), max_connections=settings.redis_max_connections,
        timeout=settings.redis_socket_timeout,
        # One quick retry; a Redis outage must surface fast (503 on /health), not hang requests.
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=1))


def check_eviction_policy(client: redis.Redis) -> str | None:
    """Return a warning when Redis may evict our keys (anything but noeviction)."""
    try:
        policy = client.config_get("maxmemory-policy").get("maxmemory-policy")
    except redis.ResponseError:  # CONFIG disabled on managed Redis: cannot tell
        return None
    if policy and policy != "noeviction":
        return (
            f"Redis maxmemory-policy is {policy!r}: it may evict queued tasks, statuses and "
            "dead letters; set it to noeviction"
        )
    return None


class _HiredisPacking:
    """Commands packed by hiredis's C packer, as redis-py's synchronous client already does when
    hiredis is installed; its asyncio client packs in Python, which was a tenth of the delivery
    engine's CPU (its commit pipelines carry a few dozen arguments per delivery). The bytes on
    the wire are the same: hiredis formats numbers as redis-py's encoder does."""

    def pack_command(self, *args: Any) -> list[bytes]:
        """One command in the Redis protocol."""
        # A command name given with its subcommand ("CONFIG GET") is sent as two arguments.
        if isinstance(args[0], str):
            args = (*args[0].encode().split(), *args[1:])
        elif b" " in args[0]:
            args = (*args[0].split(), *args[1:])
        args = tuple(bytes(a) if isinstance(a, bytearray | memoryview) else a for a in args)
        try:
            return [hiredis.pack_command(args)]
        except TypeError as exc:  # what redis-py's own encoder refuses (None, a dict, ...)
            raise DataError(str(exc)) from exc


class PackedConnection(_HiredisPacking, redis.asyncio.Connection):
    """A plain TCP connection of the asyncio client, packing with hiredis."""


class PackedSentinelConnection(_HiredisPacking, redis.asyncio.sentinel.SentinelManagedConnection):
    """A connection to the primary a sentinel names, packing with hiredis."""


def create_async_redis(settings: Settings, *, max_connections: int = 32) -> redis.asyncio.Redis:
    """An asyncio client for one event loop (the delivery engine's, or the API's)."""
    target = RedisTarget.from_settings(settings)
    timeout = settings.redis_socket_timeout
    common: dict[str, Any] = {"max_connections": max_connections, "socket_timeout": timeout,
                              "socket_connect_timeout": timeout, "decode_responses": True,
                              "health_check_interval": 30}
    tls = target.data_node_params().get("ssl", False) or target.url.startswith("unix:")
    if not target.uses_sentinel:
        # TLS and unix sockets keep the connection class their URL scheme gives them.
        if not tls:
            common["connection_class"] = PackedConnection
        return redis.asyncio.Redis.from_url(target.url, **common)
    if not tls:
        common["connection_class"] = PackedSentinelConnection
    # A dead sentinel is skipped at once, not retried: the next one answers.
    manager = redis.asyncio.sentinel.Sentinel(  # type: ignore[no-untyped-call]
        list(target.sentinels),
        sentinel_kwargs=target.sentinel_kwargs(timeout) | {"retry": AsyncRetry(NoBackoff(), 0)},
        socket_timeout=timeout, socket_connect_timeout=timeout)
    client: redis.asyncio.Redis = manager.master_for(
        target.master, redis_class=redis.asyncio.Redis, **target.data_node_params(), **common)
    return client
