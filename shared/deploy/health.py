"""HTTP readiness probe used before and after moving traffic."""

from __future__ import annotations

import time
from dataclasses import dataclass

import httpx


@dataclass(frozen=True)
class HealthResult:
    url: str
    ok: bool
    status: int | None
    detail: str
    attempts: int


def check_ready(
    url: str, attempts: int = 5, interval_s: float = 2.0, timeout_s: float = 5.0, token: str | None = None
) -> HealthResult:
    """GET ``url`` until it answers 200, at most ``attempts`` times. ``token``: an identity token for
    private services (sent as a bearer token, never logged)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    status: int | None = None
    detail = ""
    for attempt in range(1, attempts + 1):
        try:
            response = httpx.get(url, headers=headers, timeout=timeout_s, follow_redirects=False)
            status = response.status_code
            if status == 200:
                return HealthResult(url, True, status, "ready", attempt)
            detail = response.text[:200]
        except httpx.HTTPError as exc:
            status, detail = None, f"{type(exc).__name__}: {exc}"
        if attempt < attempts:
            time.sleep(interval_s)
    return HealthResult(url, False, status, detail, attempts)
