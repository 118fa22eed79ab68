"""Fixtures that start real things: redis-server, Celery workers, a loopback receiver."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from compliance.api.app import create_app
from compliance.settings import Settings
from tests.support.receiver import Receiver
from tests.support.services import (
    ADMIN_KEY,
    FAST_ENV,
    PRODUCER_KEY,
    WorkerProcess,
    flush,
    settings_from_env,
    start_redis,
)


@pytest.fixture(scope="session")
def redis_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, object]]:
    url, handle = start_redis(tmp_path_factory.mktemp("redis"))
    yield url, handle
    handle.stop()  # type: ignore[attr-defined]


@pytest.fixture
def redis_url(redis_session: tuple[str, object]) -> str:
    """A clean Redis for this test (the session server, flushed)."""
    url = redis_session[0]
    flush(url)
    return url


@pytest.fixture
def r(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True, retry=None)
    yield client
    client.close()


@pytest.fixture
def env(redis_url: str, tmp_path: Path) -> dict[str, str]:
    """Environment for service processes in this test (fast limits, real keys)."""
    return {**FAST_ENV, "COMPLIANCE_REDIS_URL": redis_url,
            "COMPLIANCE_STORAGE_DIR": str(tmp_path / "reports"),
            "PROMETHEUS_MULTIPROC_DIR": str(_mkdir(tmp_path / "metrics"))}


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def settings(env: dict[str, str]) -> Settings:
    return settings_from_env(env)


@pytest.fixture
def api(settings: Settings) -> Iterator[TestClient]:
    """The real app (in-process ASGI) on the test Redis, with producer credentials."""
    with TestClient(create_app(settings), headers={"X-API-Key": PRODUCER_KEY}) as client:
        yield client


@pytest.fixture
def admin_headers() -> dict[str, str]:
    return {"X-API-Key": ADMIN_KEY}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver().start()
    yield rec
    rec.stop()


@pytest.fixture
def start_worker(env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Start real worker subprocesses; all are stopped at teardown."""
    started: list[WorkerProcess] = []

    def _start(kind: str = "all", concurrency: int = 8, extra_env: dict[str, str] | None = None,
               name: str | None = None) -> WorkerProcess:
        name = name or f"w{len(started)}"
        worker = WorkerProcess({**env, **(extra_env or {})}, kind=kind, concurrency=concurrency,
                               log_path=tmp_path / f"{name}.log", name=name)
        started.append(worker)
        return worker.start()

    yield _start
    for worker in started:
        worker.stop()


@pytest.fixture(autouse=True)
def _no_ambient_compliance_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests build settings explicitly; ambient COMPLIANCE_* variables must not leak in."""
    for key in list(os.environ):
        if key.startswith("COMPLIANCE_") and key != "COMPLIANCE_SKIP_K8S" and key != "COMPLIANCE_TOOLS_CACHE" and key != "COMPLIANCE_TEST_DOCKER":
            monkeypatch.delenv(key, raising=False)
