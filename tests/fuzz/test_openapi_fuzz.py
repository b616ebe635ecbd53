"""Schemathesis over each OpenAPI document (docs/api/auth, agent, usage) against real local processes: auth,
the agent API and its worker, on the session's PostgreSQL and Google's emulators. Once with a valid access
token and once with none, a bounded number of examples per operation and a fixed seed (reproducible; a longer
run with a random seed: ``FUZZ_EXAMPLES=200 FUZZ_SEED= pytest tests/fuzz``).

What must hold: no server error (ST101) and no answer that disagrees with the document (status code, content
type, headers, body schema; a schema-violating request accepted; an undeclared method not answered 405).

One check is left out, on purpose: ``positive_data_acceptance`` (a schema-valid request must not get a 4xx).
The documents cannot express every rule the API enforces, and each rule here is deliberate: an opaque cursor
the API did not issue (400 invalid_cursor), a cost range over 366 days, an unknown or spent one-time code or
sign-in state, a provider that is not configured, text PostgreSQL cannot store (NUL, unpaired surrogates in
free-form metadata), and usage rows that fail row validation (422 invalid_rows names each).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from shared.config import REPO_ROOT
from tests.agent.harness import AgentStack
from tests.fixtures.auth import AuthService, start_auth

EXAMPLES_WITH_TOKEN = int(os.environ.get("FUZZ_EXAMPLES", "6"))
EXAMPLES_WITHOUT_TOKEN = max(2, EXAMPLES_WITH_TOKEN // 3)
SEED = os.environ.get("FUZZ_SEED", "20261202")
EXCLUDED_CHECKS = "positive_data_acceptance"


@dataclass
class FuzzStack:
    auth: AuthService
    agent: AgentStack

    def token(self) -> str:
        return str(self.auth.login("fuzz@example.com")["access_token"])


@pytest.fixture(scope="module")
def fuzz_stack(
    shared_db_url: str, firestore_emulator_host: str, pubsub_host: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FuzzStack]:
    workdir = tmp_path_factory.mktemp("fuzz")
    auth = start_auth(shared_db_url, workdir / "auth", firestore_host=firestore_emulator_host)
    agent = AgentStack(
        db_url=shared_db_url,
        pubsub_host=pubsub_host,
        firestore_host=firestore_emulator_host,
        workdir=workdir,
        jwks_url=auth.jwks_url,
        issuer=auth.issuer,
    )
    try:
        agent.create_topology()
        agent.start_worker()
        agent.start_api()
        yield FuzzStack(auth, agent)
    finally:
        agent.stop()
        auth.process.kill()
        auth.stop()


def run_schemathesis(document: str, url: str, token: str | None, examples: int, report: Path) -> tuple[int, str]:
    argv = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        str(REPO_ROOT / "docs/api" / document),
        "--url",
        url,
        "--checks",
        "all",
        "--exclude-checks",
        EXCLUDED_CHECKS,
        "--max-examples",
        str(examples),
        "--workers",
        "2",
        "--suppress-health-check",
        "all",
        "--report",
        "json",
        "--report-json-path",
        str(report),
    ]
    if SEED:
        argv += ["--seed", SEED]
    if token:
        argv += ["--header", f"Authorization: Bearer {token}"]
    else:
        # Without a token nearly every answer is a 401: the fuzzing phase alone checks those (and the public
        # routes); the coverage and stateful phases would mostly repeat it.
        argv += ["--phases", "fuzzing"]
    if document == "agent.openapi.yaml":
        # The usage routes are fuzzed through their own, complete document.
        argv += ["--exclude-path-regex", "^/api/usage"]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.fuzz.hooks", "NO_COLOR": "1"}
    done = subprocess.run(argv, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    return done.returncode, done.stdout + done.stderr


def figures(report: Path) -> str:
    """operations tested, test cases, failures, from schemathesis's JSON report."""
    try:
        data = json.loads(report.read_text())
    except (OSError, ValueError):
        return "no report"
    summary = {k: v for k, v in data.items() if k in ("operations", "test_cases", "failures", "errors", "results")}
    return json.dumps(summary)[:600]


@pytest.mark.parametrize("document", ["auth.openapi.yaml", "agent.openapi.yaml", "usage.openapi.yaml"])
@pytest.mark.parametrize("with_token", [True, False], ids=["token", "no-token"])
def test_openapi_document_holds_under_fuzzing(
    fuzz_stack: FuzzStack, document: str, with_token: bool, tmp_path: Path
) -> None:
    url = fuzz_stack.auth.url if document.startswith("auth") else fuzz_stack.agent.api_url
    token = fuzz_stack.token() if with_token else None
    examples = EXAMPLES_WITH_TOKEN if with_token else EXAMPLES_WITHOUT_TOKEN
    report = tmp_path / "report.json"
    code, output = run_schemathesis(document, url, token, examples, report)
    summary = next((line for line in reversed(output.splitlines()) if line.startswith("=")), "")
    print(f"{document} {'token' if with_token else 'no token'}: {summary} {figures(report)}")
    assert code == 0, output[-6000:]
