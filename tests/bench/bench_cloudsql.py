"""The Cloud SQL connector's cold path, measured (`BENCH=cloudsql python -m tests.bench`). Prints figures only.

The real connector runs against the local stand-in of its two Google sides (emulators/cloudsql.py), which
forwards to an embedded PostgreSQL. Interleaved rounds (BENCH_CLOUDSQL_ROUNDS, default 5), medians:

1. A fresh interpreter's first connection and first query: through the connector (with its breakdown: importing
   the connector, credentials + key pair + token, the Admin API's two calls, TLS context + handshake, the login
   over TLS, the first query) next to DATABASE_URL (direct TCP) in the same rounds.
2. Auth's cold start, spawn -> first POST /auth/dev/login 200, through the connector and with DATABASE_URL,
   beside the empty function spawned in the same rounds, each with spawn -> port open -> first success.

What the stand-in cannot show: network latency to Google and the Admin API's own latency (docs/PERFORMANCE.md).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from emulators.cloudsql import CloudSqlStandIn
from emulators.postgres import EmbeddedPostgres, free_port
from emulators.process import ManagedProcess, functions_framework_argv
from shared.config import REPO_ROOT
from shared.db.connect import parse_database_url
from tests.bench.spawn import EMPTY_FUNCTION, ColdStart, empty_ok, phases_line, spawn_phases

ROUNDS = int(os.environ.get("BENCH_CLOUDSQL_ROUNDS", "5"))

CHILD = """
import json, os, time
marks = {"start": time.time()}
from shared.config import DatabaseSection, load_settings
from shared.db.connect import Connector
marks["shared_imported"] = time.time()
if os.environ.get("CLOUD_SQL_INSTANCE"):
    import google.cloud.sql.connector
marks["connector_imported"] = time.time()
connector = Connector(load_settings(DatabaseSection, dict(os.environ)))
conn = connector.connect()
marks["connected"] = time.time()
cursor = conn.cursor()
cursor.execute("SELECT 1")
cursor.fetchall()
marks["first_query"] = time.time()
print(json.dumps(marks))
"""


def child(env: dict[str, str]) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def med(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.0f} ms"


def bench_first_connection(standin: CloudSqlStandIn, cloud_env: dict[str, str], direct_env: dict[str, str]) -> None:
    phases: dict[str, list[float]] = {}
    direct: list[float] = []
    cloud_total: list[float] = []

    def add(name: str, seconds: float) -> None:
        phases.setdefault(name, []).append(seconds)

    for _ in range(ROUNDS):
        marks = child(direct_env)
        direct.append(marks["first_query"] - marks["connector_imported"])
        standin.events.clear()
        marks = child(cloud_env)
        at = {name: when for name, when in standin.events}
        add("import google.cloud.sql.connector", marks["connector_imported"] - marks["shared_imported"])
        add("credentials, key pair, token round trip", at["token"] - marks["connector_imported"])
        add(
            "Admin API: connectSettings + generateEphemeralCert",
            max(at["connectSettings"], at["generateEphemeralCert"]) - at["token"],
        )
        add("TLS context + handshake on 3307", at["proxy"] - max(at["connectSettings"], at["generateEphemeralCert"]))
        add("PostgreSQL login over TLS", marks["connected"] - at["proxy"])
        add("first query", marks["first_query"] - marks["connected"])
        cloud_total.append(marks["first_query"] - marks["connector_imported"])
    print(
        f"fresh interpreter, first connection + first query: DATABASE_URL median {med(direct)}; through the "
        f"connector median {med(cloud_total)} (+ {med(phases['import google.cloud.sql.connector'])} to import it); "
        f"ratio {statistics.median(cloud_total) / statistics.median(direct):.1f}x",
        flush=True,
    )
    for name, values in phases.items():
        print(f"  connector phase: {name}: median {med(values)}", flush=True)


def bench_auth_cold(cloud_env: dict[str, str], direct_env: dict[str, str]) -> None:
    def login_ok(url: str) -> bool:
        response = httpx.post(url + "/auth/dev/login", json={"email": "cold@example.com"}, timeout=30)
        return response.status_code == 200 and "access_token" in response.json()

    runs: dict[str, list[ColdStart]] = {"empty function": [], "auth, DATABASE_URL": [], "auth, connector": []}
    auth = REPO_ROOT / "functions/auth/main.py"
    for _ in range(ROUNDS):
        port = free_port()
        runs["empty function"].append(
            spawn_phases(functions_framework_argv(EMPTY_FUNCTION, "empty", port), {"NETRA_ENV": "test"}, port, empty_ok)
        )
        for name, env in (("auth, DATABASE_URL", direct_env), ("auth, connector", cloud_env)):
            port = free_port()
            runs[name].append(spawn_phases(functions_framework_argv(auth, "auth", port), env, port, login_ok))
    empty = statistics.median(r.first_success_s for r in runs["empty function"])
    for name, values in runs.items():
        ratio = statistics.median(r.first_success_s for r in values) / empty
        print(f"{phases_line(name, values)}; {ratio:.2f}x the empty function", flush=True)


def main() -> None:
    from shared.db.connect import Connector
    from shared.db.migrate import MigrateSettings, migrate
    from tests.fixtures.auth import start_auth
    from tests.fixtures.firestore import start_emulator_process

    print(f"load average: {Path('/proc/loadavg').read_text().split()[:3]}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="bench-cloudsql-"))
    pg = EmbeddedPostgres(work / "pg").start()
    procs: list[ManagedProcess] = []
    standin = None
    try:
        db_url = pg.url_for("bench_cloudsql")
        connector = Connector(MigrateSettings.model_validate({"database_url": db_url}))
        migrate(connector)
        connector.close()
        target = parse_database_url(db_url)
        standin = CloudSqlStandIn(target.host, target.port, pg.socket_dir).start()
        cloud = {
            "CLOUD_SQL_INSTANCE": standin.connection_name,
            "CLOUD_SQL_ADMIN_ENDPOINT": standin.admin_endpoint,
            "GOOGLE_APPLICATION_CREDENTIALS": standin.credentials_file(),
            "DB_NAME": target.database,
            "DB_USER": target.user,
            "DB_PASSWORD": target.password or "",
            "DB_IP_TYPE": "private",
        }
        base = {**os.environ, "NETRA_ENV": "test", "NETRA_DOTENV": "/nonexistent/.env"}
        direct_child = {**base, "DATABASE_URL": db_url}
        cloud_child = {k: v for k, v in {**base, **cloud}.items() if k != "DATABASE_URL"}
        bench_first_connection(standin, cloud_child, direct_child)

        firestore_proc, firestore_host = start_emulator_process()
        procs.append(firestore_proc)
        auth = start_auth(db_url, work / "local", {"LOG_LEVEL": "WARNING"}, firestore_host=firestore_host)
        direct_env = {**auth.process_env, "FIRESTORE_COLLECTION_PREFIX": auth.firestore_prefix}
        auth.stop()
        cloud_env = {k: v for k, v in {**direct_env, **cloud}.items() if k != "DATABASE_URL"}
        time.sleep(0.2)
        bench_auth_cold(cloud_env, direct_env)
    finally:
        if standin is not None:
            standin.stop()
        for proc in procs:
            proc.stop()
        pg.destroy()


if __name__ == "__main__":
    main()
