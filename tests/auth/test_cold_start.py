"""The /auth/validate path must not import Google client libraries (cold start of auth and of every verifier)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from shared.config import REPO_ROOT

PROBE = """
import json, sys
import functions_framework  # its own google.cloud.functions shim and the namespace packages are the floor
baseline = {m for m in sys.modules if m.startswith("google")}
import functions.auth.main as main
from flask import Flask
from shared.tokens.keyset import sign_access_token
auth = main.app.context
token, _ = sign_access_token(auth.keys.get(), user_id="u", email="e@example.com", permissions=[],
                             issuer=auth.settings.auth_issuer, audience=auth.settings.token_audience, ttl_s=60)
with Flask("probe").test_request_context("/auth/validate", method="POST", json={"token": token}):
    from flask import request
    response = main.auth(request)
print(json.dumps({"status": response.status_code, "body": response.get_json(),
                  "google": sorted({m for m in sys.modules if m.startswith("google")} - baseline)}))
"""


def test_validate_path_imports_no_google_client_library(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "NETRA_ENV": "test",
        "DATABASE_URL": "postgresql://u:p@127.0.0.1:9/x",
        "NETRA_LOCAL_DIR": str(tmp_path),
        "DEV_LOGIN_ENABLED": "true",
    }
    out = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["status"] == 200 and result["body"]["valid"] is True
    assert result["google"] == [], f"imported on the validate path: {result['google'][:10]}"
