"""The chat page in a real browser on the real local stack.

One stack for the package: PostgreSQL (the session's embedded server, a database of our own), the session's
Firestore emulator, a Pub/Sub emulator, and auth, the agent API and the agent worker as processes
(``tests.agent.conftest.start_api_env``, the configured "auto" pipeline on the mock model), plus a ws_bridge that
serves the page at ``/``. Chromium is Debian's (/usr/bin/chromium, installed by ``tests/setup_system.py``),
driven by Playwright for Python; Playwright's own browser download is never used.

Screenshots go to test-artifacts/web/ (ignored by git).
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from emulators.postgres import free_port
from emulators.process import ManagedProcess
from shared.config import REPO_ROOT
from tests.fixtures.emulators import EmulatorPool

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
ARTIFACTS = REPO_ROOT / "test-artifacts" / "web"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
# Slow enough that a run outlasts its first tool calls by a second or so (two model calls of ~45 tokens each),
# so a bridge can die mid-run.
WORKER_ENV = {"AGENT_PIPELINE": "auto", "MOCK_LLM_TOKEN_DELAY_MS": "15"}


@dataclass
class WebStack:
    api: Any  # tests.agent.conftest.ApiEnv: .stack (AgentStack), .auth (AuthService)
    bridge_env: dict[str, str]
    port: int = field(default_factory=free_port)
    bridges: list[ManagedProcess] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def bridge(self) -> ManagedProcess:
        return self.bridges[-1]

    def start_bridge(self) -> ManagedProcess:
        """A bridge on the page's port (a restarted instance takes the same address, as behind a load balancer)."""
        argv = [sys.executable, "-m", "functions.ws_bridge", "--port", str(self.port)]
        proc = ManagedProcess(f"ws-bridge-{len(self.bridges)}", argv, env=self.bridge_env).start()
        self.bridges.append(proc)
        proc.wait_http(f"{self.url}health/ready", timeout_s=60)
        return proc

    def kill_bridge(self) -> None:
        self.bridge.kill()
        self.bridge.stop()

    def events(self, token: str, run_id: str) -> list[dict[str, Any]]:
        with self.api.stack.client(token) as client:
            body = client.get(f"/api/runs/{run_id}/events", params={"after_seq": 0}).json()
        return body["events"]

    def stop(self) -> None:
        for proc in self.bridges:
            proc.kill()  # a graceful stop is tested in tests/ws_bridge; here it would only wait out open sockets
            proc.stop()
            print(proc.output()[-2000:])


@pytest.fixture(scope="package")
def web_stack(
    pg_server: Any, firestore_emulator_host: str, emulator_pool: EmulatorPool, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WebStack]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `python -m tests.setup_system` (as root) to install Debian's chromium")
    from shared.db.connect import Connector
    from shared.db.migrate import MigrateSettings, migrate
    from tests.agent.conftest import ApiEnv, stop_api_env
    from tests.agent.harness import AgentStack
    from tests.auth.github_standin import start_github
    from tests.fixtures.auth import start_auth

    url = pg_server.url_for(f"web_{uuid.uuid4().hex[:10]}")
    workdir = Path(tmp_path_factory.mktemp("web"))
    # GitHub sign-in through the local stand-in (it signs octocat@example.com in at once), as in tests/auth.
    github = start_github()
    pool = ThreadPoolExecutor(4, thread_name_prefix="web-stack")
    # What tests.agent.conftest.start_api_env does, with auth configured for a provider, and what does not depend
    # on each other started at once: the package's setup is most of its time.
    emulator = pool.submit(emulator_pool.get, "pubsub")  # the session's, shared (this stack has its own project)

    def start_auth_service() -> Any:
        connector = Connector(MigrateSettings.model_validate({"database_url": url}))
        migrate(connector)
        connector.close()
        return start_auth(
            url,
            workdir / "auth",
            {
                "GITHUB_CLIENT_ID": github.client_id,
                "GITHUB_CLIENT_SECRET": github.client_secret,
                "GITHUB_OAUTH_BASE_URL": github.url,
                "GITHUB_API_BASE_URL": github.url,
            },
            firestore_host=firestore_emulator_host,
        )

    auth_started = pool.submit(start_auth_service)
    api = stack = None
    try:
        _, pubsub_host = emulator.result()
        auth = auth_started.result()
        agent = AgentStack(
            db_url=url,
            pubsub_host=pubsub_host,
            firestore_host=firestore_emulator_host,
            workdir=workdir,
            jwks_url=auth.jwks_url,
            issuer=auth.issuer,
        )
        api = ApiEnv(agent, auth)
        agent.create_topology()
        bridge_env = {**agent.env(), **auth.env, "AUTH_URL": auth.url, "AGENT_API_URL": agent.api_url}
        stack = WebStack(api, bridge_env)
        started = [
            pool.submit(agent.start_worker, **WORKER_ENV),
            pool.submit(agent.start_api),
            pool.submit(stack.start_bridge),
        ]
        for future in started:
            future.result()
        yield stack
    finally:
        pool.shutdown(wait=True)
        if stack is not None:
            stack.stop()
        if api is not None:
            stop_api_env(api)
        elif auth_started.done() and auth_started.exception() is None:
            auth_started.result().stop()
        github.stop()


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # Debian's chromium, never a downloaded one (`playwright install` needs the internet).
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield instance
        instance.close()


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, color_scheme="light")
    context.set_default_timeout(30_000)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    tab.errors = errors  # type: ignore[attr-defined]
    yield tab
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    if request.node.rep_call.failed if hasattr(request.node, "rep_call") else False:
        tab.screenshot(path=str(ARTIFACTS / f"{request.node.name}-failed.png"), full_page=True)
    context.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]
    return report


def shot(page: Any, name: str, full_page: bool = False) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path
