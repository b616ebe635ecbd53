"""What the load test starts and what it sends: each service, its floor, and its request mix.

A target is available when its entry point is in the tree; a target that is absent is reported as
"not available: <reason>", never measured with made-up numbers.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from emulators.process import functions_framework_argv
from shared.config import REPO_ROOT
from tests.loadtest.model import RequestSpec

EMPTY_SOURCE = "tests/bench/empty_function/main.py"
SAMPLE_SOURCE = "tests/shared/sample_service/main.py"


@dataclass
class MixContext:
    """What the request mixes need from the warm stack: a user's token, a thread of theirs."""

    token: str | None = None
    email: str | None = None
    thread_id: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}


@dataclass
class Target:
    name: str
    source: str  # repo-relative entry point; its presence makes the target available
    argv: Callable[[int], list[str]]
    needs: tuple[str, ...] = ()  # what must be up first: postgres, pubsub, firestore, auth, agent-api
    mix: Callable[[MixContext], list[RequestSpec]] = lambda ctx: [RequestSpec("live", "GET", "/health/live")]
    kind: str = "http"  # http | ws
    floor_of: str | None = None  # this target is the floor that the named kind of target is divided by
    env: dict[str, str] = field(default_factory=dict)

    def unavailable(self) -> str | None:
        if not (REPO_ROOT / self.source).exists():
            return f"{self.source} is not in the tree yet"
        return None


def _ff(source: str, target: str, signature: str = "http") -> Callable[[int], list[str]]:
    return lambda port: functions_framework_argv(REPO_ROOT / source, target, port, signature)


def _module(module: str) -> Callable[[int], list[str]]:
    return lambda port: [sys.executable, "-m", module, "--port", str(port)]


def _empty_mix(ctx: MixContext) -> list[RequestSpec]:
    return [RequestSpec("get /", "GET", "/")]


def _sample_mix(ctx: MixContext) -> list[RequestSpec]:
    return [RequestSpec("count (db)", "GET", "/count")]


def _new_user() -> dict[str, object]:
    return {"email": f"loadtest-{uuid.uuid4().hex[:12]}@example.com"}


def _auth_mix(ctx: MixContext) -> list[RequestSpec]:
    """Three token validations (verifier + rate-limit bucket) per dev login of a new user (a user row in
    Postgres, a refresh-token family in Firestore): every API call validates, users sign in once a session."""
    validate = RequestSpec("validate token", "POST", "/auth/validate", json={"token": ctx.token or "missing"})
    return [validate, RequestSpec("dev login", "POST", "/auth/dev/login", body=_new_user), validate, validate]


def _agent_mix(ctx: MixContext) -> list[RequestSpec]:
    """Nine thread listings per posted message (a new conversation each: stored, run created, queued on
    Pub/Sub). Reads outnumber posts in real use, and every post is a run of about 15 events that the one
    local worker executes on the same two cores as everything else, within the run's 10 minutes."""
    listing = RequestSpec("list threads", "GET", "/api/threads", headers=ctx.bearer())
    post = RequestSpec(
        "post message",
        "POST",
        "/api/agent/message",
        headers=ctx.bearer(),
        ok=frozenset({202}),
        json={"content": "load test: which of my models could be cheaper?"},
    )
    return [listing, listing, listing, post, listing, listing, listing, listing, listing, listing]


EMPTY = Target("empty", EMPTY_SOURCE, _ff(EMPTY_SOURCE, "empty"), mix=_empty_mix, floor_of="http")
SAMPLE = Target("sample", SAMPLE_SOURCE, _ff(SAMPLE_SOURCE, "sample"), needs=("postgres",), mix=_sample_mix)
AUTH = Target(
    "auth",
    "functions/auth/main.py",
    _ff("functions/auth/main.py", "auth"),
    needs=("postgres", "firestore"),
    mix=_auth_mix,
)
AGENT_API = Target(
    "agent-api",
    "functions/agent/main.py",
    _ff("functions/agent/main.py", "agent_api"),
    needs=("postgres", "pubsub", "firestore", "auth"),
    mix=_agent_mix,
)
AGENT_WORKER = Target(
    "agent-worker",
    "functions/agent/main.py",
    _ff("functions/agent/main.py", "agent_worker", "cloudevent"),
    needs=("postgres", "pubsub", "firestore"),
    kind="push",
)
EMPTY_WS = Target(
    "empty-ws", "tests/loadtest/empty_ws.py", _module("tests.loadtest.empty_ws"), kind="ws", floor_of="ws"
)
WS_BRIDGE = Target(
    "ws-bridge",
    "functions/ws_bridge/main.py",
    _module("functions.ws_bridge"),
    kind="ws",
    needs=("postgres", "pubsub", "firestore", "auth", "agent-api"),
)

HTTP_TARGETS = [EMPTY, SAMPLE, AUTH, AGENT_API]
WS_TARGETS = [EMPTY_WS, WS_BRIDGE]
ALL_TARGETS = {t.name: t for t in (*HTTP_TARGETS, *WS_TARGETS)}


def source_path(target: Target) -> Path:
    return REPO_ROOT / target.source
