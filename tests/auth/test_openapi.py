"""docs/api/auth.openapi.yaml matches the routes the auth function serves."""

from __future__ import annotations

import os
import subprocess
import sys

import yaml

from shared.config import REPO_ROOT


def test_openapi_paths_match_routes(tmp_path) -> None:
    code = (
        "import functions.auth.main as m; print('\\n'.join(f'{meth} {path}' for meth, path in m.app.router.routes()))"
    )
    env = {
        **os.environ,
        "NETRA_ENV": "test",
        "DATABASE_URL": "postgresql://u:p@127.0.0.1:9/x",
        "DEV_LOGIN_ENABLED": "true",
        "NETRA_LOCAL_DIR": str(tmp_path),
    }
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=True
    ).stdout.split("\n")
    served = {tuple(line.split(" ", 1)) for line in out if line}
    spec = yaml.safe_load((REPO_ROOT / "docs/api/auth.openapi.yaml").read_text())
    documented = {
        (method.upper(), path)
        for path, item in spec["paths"].items()
        for method in item
        if not path.startswith("/health/")
    }
    assert served == documented


def test_openapi_refs_resolve_and_reasons_match_the_verifier() -> None:
    import re

    text = (REPO_ROOT / "docs/api/auth.openapi.yaml").read_text()
    spec = yaml.safe_load(text)
    for ref in set(re.findall(r'\$ref: "#/([^"]+)"', text)):
        node = spec
        for part in ref.split("/"):
            assert part in node, f"unresolved $ref #/{ref}"
            node = node[part]
    reasons = set(re.findall(r'TokenInvalid\("(\w+)"', (REPO_ROOT / "shared/tokens/verify.py").read_text()))
    schema = spec["paths"]["/auth/validate"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert reasons == set(schema["properties"]["reason"]["enum"])
