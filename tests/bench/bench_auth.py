"""Auth benchmarks (`python -m tests.bench.bench_auth`, or `make bench`). Prints figures only.

0. Import cost of PyJWT (`python -X importtime`, median of fresh interpreters, BENCH_AUTH_IMPORT_RUNS): ``import
   jwt`` on top of functions-framework and cryptography's EC module (what a bare-`cryptography` ES256 would
   import instead), next to that cryptography-only path itself and to ``import functions.auth.main``.
1. Access-token verifications per second in process (shared.tokens.verify.TokenVerifier on PyJWT, keys cached), next
   to signing per second, in one thread.
2. POST /auth/validate latency p50/p99 over HTTP (keep-alive client, sequential requests) on a warm auth.
3. Cold start of auth: process spawn -> first successful /auth/validate (200, valid true), as a ratio to the
   empty functions-framework function (tests/bench/empty_function/main.py, target ``empty``) spawned the same
   way in the same run, alternating, median of 5 each (BENCH_AUTH_ROUNDS).

Everything is local: embedded PostgreSQL, the Firestore emulator, auth under functions-framework.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from emulators.postgres import EmbeddedPostgres, free_port
from emulators.process import ManagedProcess, functions_framework_argv
from shared.config import REPO_ROOT
from tests.bench.spawn import EMPTY_FUNCTION, ColdStart, empty_ok, phases_line, spawn_phases

ROUNDS = int(os.environ.get("BENCH_AUTH_ROUNDS", "5"))
IMPORT_RUNS = int(os.environ.get("BENCH_AUTH_IMPORT_RUNS", "7"))
FLOOR = "import functions_framework"
EC_ONLY = (
    "from cryptography.exceptions import InvalidSignature\n"
    "from cryptography.hazmat.primitives import hashes\n"
    "from cryptography.hazmat.primitives.asymmetric import ec, utils"
)
IMPORTS = {
    "baseline: import functions_framework (the empty function)": ("", FLOOR),
    "cryptography EC only (the hand-written ES256 path)": (FLOOR, EC_ONLY),
    "import jwt, after the EC modules": (f"{FLOOR}\n{EC_ONLY}", "import jwt"),
    "import functions.auth.main (whole auth)": (FLOOR, "import functions.auth.main"),
}
AUTH = REPO_ROOT / "functions/auth/main.py"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def import_ms(prelude: str, statement: str, env: dict[str, str]) -> float:
    """ms that ``statement`` imports in a fresh interpreter after ``prelude`` (sum of the top-level cumulative
    times after a marker line, so the prelude's modules are already loaded and not counted)."""
    code = f"{prelude}\nimport sys\nsys.stderr.write('@@after-prelude\\n')\n{statement}"
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    total = 0
    for line in result.stderr.split("@@after-prelude\n", 1)[1].splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \|( *)\S+", line)
        if match and len(match.group(2)) == 1:
            total += int(match.group(1))
    return total / 1000


def bench_imports(runs: int) -> None:
    local = tempfile.mkdtemp(prefix="bench-auth-imports-")
    env = {
        **os.environ,
        "NETRA_ENV": "test",
        "DATABASE_URL": "postgresql://u:p@127.0.0.1:9/x",
        "NETRA_LOCAL_DIR": local,
        "DEV_LOGIN_ENABLED": "true",
    }
    import_ms(FLOOR, "import functions.auth.main", env)  # writes the local keyset once, outside the samples
    for name, (prelude, statement) in IMPORTS.items():
        samples = [import_ms(prelude, statement, env) for _ in range(runs)]
        print(
            f"import time, {name}: median {statistics.median(samples):.1f} ms "
            f"({', '.join(f'{s:.0f}' for s in samples)})",
            flush=True,
        )


def bench_in_process(seconds: float = 2.0) -> tuple[float, float]:
    """(verifications/s, signatures/s) with a verifier whose keys come from a local keyset."""
    from shared.tokens.keyset import generate_keyset, jwks_from_keyset, sign_access_token
    from shared.tokens.verify import TokenVerifier

    keyset = generate_keyset()
    jwks = jwks_from_keyset(keyset)
    verifier = TokenVerifier(lambda: "", "bench-iss", "bench-aud", fetch_jwks=lambda: jwks)

    def sign() -> str:
        return sign_access_token(
            keyset,
            user_id="u",
            email="e@example.com",
            permissions=["user"],
            issuer="bench-iss",
            audience="bench-aud",
            ttl_s=900,
        )[0]

    token = sign()
    verifier.verify(token)

    def rate(op: Callable[[], object]) -> float:
        count, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            for _ in range(100):
                op()
            count += 100
        return count / (time.perf_counter() - started)

    return rate(lambda: verifier.verify(token)), rate(sign)


def bench_validate_http(url: str, token: str, n: int = 1000) -> list[float]:
    samples = []
    with httpx.Client(base_url=url, timeout=30) as client:
        for _ in range(50):  # warm the connection and the worker threads
            client.post("/auth/validate", json={"token": token})
        for _ in range(n):
            started = time.perf_counter()
            response = client.post("/auth/validate", json={"token": token})
            samples.append(time.perf_counter() - started)
            assert response.status_code == 200 and response.json()["valid"], response.text
    return samples


def bench_cold_start(env: dict[str, str], token: str, rounds: int) -> tuple[list[float], list[float]]:

    def validate_ok(url: str) -> bool:
        response = httpx.post(url + "/auth/validate", json={"token": token}, timeout=30)
        return response.status_code == 200 and response.json().get("valid") is True

    empty_runs: list[ColdStart] = []
    auth_runs: list[ColdStart] = []
    for _ in range(rounds):
        port = free_port()
        empty_runs.append(
            spawn_phases(functions_framework_argv(EMPTY_FUNCTION, "empty", port), {"NETRA_ENV": "test"}, port, empty_ok)
        )
        port = free_port()
        auth_runs.append(spawn_phases(functions_framework_argv(AUTH, "auth", port), env, port, validate_ok))
    print(phases_line("empty function", empty_runs), flush=True)
    print(phases_line("auth", auth_runs), flush=True)
    return [r.first_success_s for r in empty_runs], [r.first_success_s for r in auth_runs]


def main() -> None:
    from tests.fixtures.auth import start_auth
    from tests.fixtures.firestore import start_emulator_process

    bench_imports(IMPORT_RUNS)
    verifications, signatures = bench_in_process()
    print(
        f"in process, one thread: {verifications:,.0f} verifications/s, {signatures:,.0f} signatures/s "
        "(ES256, PyJWT on cryptography)",
        flush=True,
    )

    work = Path(tempfile.mkdtemp(prefix="bench-auth-"))
    pg = EmbeddedPostgres(work / "pg").start()
    procs: list[ManagedProcess] = []
    auth = None
    try:
        from shared.db.connect import Connector
        from shared.db.migrate import MigrateSettings, migrate

        db_url = pg.url_for("bench_auth")
        connector = Connector(MigrateSettings.model_validate({"database_url": db_url}))
        migrate(connector)
        connector.close()
        firestore_proc, firestore_host = start_emulator_process()
        procs.append(firestore_proc)
        extra = {"LOG_LEVEL": "WARNING"}
        auth = start_auth(db_url, work / "local", extra, firestore_host=firestore_host)
        token = str(auth.login("bench@example.com")["access_token"])
        samples = bench_validate_http(auth.url, token)
        print(
            f"POST /auth/validate over HTTP, {len(samples)} sequential: p50 {pct(samples, 50) * 1000:.2f} ms, "
            f"p99 {pct(samples, 99) * 1000:.2f} ms, mean {statistics.mean(samples) * 1000:.2f} ms",
            flush=True,
        )
        # Cold instances share the warm one's keyset (same NETRA_LOCAL_DIR), database and Firestore.
        env = {**auth.process_env, "FIRESTORE_COLLECTION_PREFIX": auth.firestore_prefix}
        auth.stop()
        auth = None
        empty_s, auth_s = bench_cold_start(env, token, ROUNDS)
        empty_med, auth_med = statistics.median(empty_s), statistics.median(auth_s)
        print(
            f"cold start, spawn -> first success: empty function median {empty_med * 1000:.0f} ms "
            f"({', '.join(f'{s * 1000:.0f}' for s in empty_s)}); auth first valid /auth/validate median "
            f"{auth_med * 1000:.0f} ms ({', '.join(f'{s * 1000:.0f}' for s in auth_s)}); "
            f"ratio {auth_med / empty_med:.2f}x (target <= 1.5)",
            flush=True,
        )
    finally:
        if auth is not None:
            auth.stop()
        for proc in procs:
            proc.stop()
        pg.destroy()


if __name__ == "__main__":
    main()
