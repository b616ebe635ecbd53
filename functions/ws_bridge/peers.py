"""HTTP calls to auth (ticket redemption) and the agent API (chat): one pooled client per instance."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlparse

_client: Any = None
_urls: dict[str, str] = {}


def client() -> Any:
    """Created on first use, inside the event loop it serves (httpx.AsyncClient is bound to one loop)."""
    global _client
    if _client is None:
        import httpx

        _client = httpx.AsyncClient(
            timeout=httpx.Timeout(15.0, connect=3.0),
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
            trust_env=False,
        )
    return _client


async def aclose() -> None:
    global _client
    if _client is not None:
        await _client.aclose()
        _client = None


async def url(name: str, configured: str | None) -> str:
    """The configured base URL, else the local discovery file of ``name`` (cached once found)."""
    if configured:
        return configured.rstrip("/")
    if name not in _urls:
        from shared.discovery import lookup_url

        _urls[name] = (await asyncio.to_thread(lookup_url, name, 5.0)).rstrip("/")
    return _urls[name]


def auth_base(auth_url: str | None, jwks_url: str | None) -> str | None:
    """AUTH_URL, else the origin of AUTH_JWKS_URL (auth serves both)."""
    if auth_url:
        return auth_url
    if jwks_url:
        parsed = urlparse(jwks_url)
        return f"{parsed.scheme}://{parsed.netloc}"
    return None
