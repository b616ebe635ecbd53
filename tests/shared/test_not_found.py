"""A path functions-framework's catch-all route cannot match (a newline stops werkzeug's path converter; found by
schemathesis) still gets our JSON 404, not Flask's HTML page."""

from __future__ import annotations

import functions_framework
import pytest

from shared.config import REPO_ROOT


def test_unroutable_path_is_a_json_404(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("DATABASE_URL", "postgresql://x:y@127.0.0.1:1/db")
    monkeypatch.setenv("NETRA_ENV", "development")
    monkeypatch.setenv("NETRA_LOCAL_DIR", str(tmp_path))
    app = functions_framework.create_app(target="auth", source=str(REPO_ROOT / "functions/auth/main.py"))
    response = app.test_client().get("/auth/x%0Ay")
    assert response.status_code == 404
    assert response.headers["Content-Type"] == "application/json"
    assert response.get_json()["error"]["code"] == "not_found"
