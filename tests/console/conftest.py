"""The browser tier (marker ``console``): a real API process (uvicorn, under a root path like
an Ingress prefix), a real worker, a real receiver, and Debian's headless Chromium driven by
Playwright.

One stack per module (starting it is most of the cost); each test signs in on a fresh browser
context and uses its own receiver paths, so tests do not see each other's webhooks.
``CONSOLE_SCREENSHOTS_DIR`` (set by ``make console-screenshots``) saves each page's screenshot
there as well as under the test's tmp dir.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis

from compliance.settings import Settings
from compliance.wiring import Container
from tests.support.receiver import Receiver
from tests.support.services import (
    ADMIN_KEY,
    FAST_ENV,
    PRODUCER_KEY,
    ApiServer,
    WorkerProcess,
    flush,
    settings_from_env,
)

pytestmark = pytest.mark.console

ROOT_PATH = "/ops"  # as the chart's Ingress would serve it
CHROMIUM_CANDIDATES = ("chromium", "chromium-browser")


def chromium_path() -> str:
    """Debian's chromium (scripts/system-deps.sh installs it); a missing browser is an error."""
    explicit = os.environ.get("CONSOLE_CHROMIUM")
    if explicit:
        return explicit
    for name in CHROMIUM_CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    raise RuntimeError("no chromium on PATH: run `make setup` (scripts/system-deps.sh test) "
                       "or set CONSOLE_CHROMIUM")


@dataclass
class Stack:
    """The running service and what a test needs to drive it."""

    api: ApiServer
    receiver: Receiver
    settings: Settings
    container: Container
    redis: redis.Redis

    @property
    def console(self) -> str:
        return f"{self.api.url}{ROOT_PATH}/console"

    def post(self, path: str, body: dict[str, object], key: str = PRODUCER_KEY) -> dict[str, object]:
        answer = httpx.post(f"{self.api.url}{path}", json=body, headers={"X-API-Key": key},
                            timeout=10)
        assert answer.status_code == 202, answer.text
        result: dict[str, object] = answer.json()
        return result


@pytest.fixture(scope="module")
def stack(redis_session: tuple[str, object], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    url = redis_session[0]
    flush(url)
    tmp = tmp_path_factory.mktemp("console")
    (tmp / "metrics").mkdir()
    env = {**FAST_ENV, "COMPLIANCE_REDIS_URL": url, "COMPLIANCE_STORAGE_DIR": str(tmp / "reports"),
           "PROMETHEUS_MULTIPROC_DIR": str(tmp / "metrics"), "COMPLIANCE_ROOT_PATH": ROOT_PATH,
           # Breakers stay open long enough to be seen open (and reset) in the browser.
           # (the visibility timeout must outlast two reset timeouts).
           "COMPLIANCE_BREAKER_RESET_TIMEOUT": "300", "COMPLIANCE_BROKER_VISIBILITY_TIMEOUT": "700",
           # Receivers that answer slowly (so a pending webhook can be seen) must not time out.
           "COMPLIANCE_READ_TIMEOUT": "10"}
    settings = settings_from_env(env)
    receiver = Receiver().start()
    worker = WorkerProcess(env, kind="all", concurrency=4, log_path=tmp / "worker.log", name="c")
    api = ApiServer(env, tmp / "api.log")
    client = redis.Redis.from_url(url, decode_responses=True, retry=None)
    container = Container(settings)
    try:
        worker.start()
        api.wait_ready()
        yield Stack(api=api, receiver=receiver, settings=settings, container=container,
                    redis=client)
    finally:
        api.stop()
        worker.stop()
        receiver.stop()
        container.close()
        client.close()


@pytest.fixture(scope="module")
def browser(stack: Stack) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # Debian's chromium, not Playwright's download; no sandbox: CI containers run as root,
        # where Chromium refuses its sandbox.
        launched = playwright.chromium.launch(executable_path=chromium_path(), headless=True,
                                              args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def context(browser: object) -> Iterator[object]:
    """A fresh browser profile (no cookies) at laptop width."""
    ctx = browser.new_context(viewport={"width": 1280, "height": 900},  # type: ignore[attr-defined]
                              accept_downloads=True)
    ctx.set_default_timeout(15_000)
    yield ctx
    ctx.close()


@pytest.fixture
def shoot(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Save a full-page screenshot of ``page`` as ``name``.png."""
    target = os.environ.get("CONSOLE_SCREENSHOTS_DIR")

    def _shoot(page, name: str) -> Path:  # type: ignore[no-untyped-def]
        path = tmp_path / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        if target:
            Path(target).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, Path(target) / f"{name}.png")
        return path

    return _shoot


def sign_in(context, stack: Stack, key: str = ADMIN_KEY):  # type: ignore[no-untyped-def]
    """A page signed in with ``key`` through the sign-in form."""
    page = context.new_page()
    page.goto(stack.console)
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name="Overview").wait_for()
    return page
