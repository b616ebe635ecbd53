"""A scripted browser for sign-in tests: follows redirects hop by hop (keeping cookies) until the front end."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx

FRONTEND = "http://app.test.local:8080"


@dataclass
class Journey:
    hops: list[str] = field(default_factory=list)  # every URL visited, in order
    final: str = ""  # the front-end URL the flow ended on

    @property
    def params(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(urlsplit(self.final).query).items()}

    def hop_to(self, path: str) -> str:
        """The first visited URL whose path is ``path`` (e.g. the callback URL, to replay it)."""
        return next(h for h in self.hops if urlsplit(h).path == path)


class Browser:
    def __init__(self) -> None:
        self.client = httpx.Client(timeout=30, follow_redirects=False)

    def close(self) -> None:
        self.client.close()

    def go(self, url: str, stop_at: str | None = None, max_hops: int = 20) -> Journey:
        """GET ``url`` and follow redirects until the front end (or a non-redirect, or a URL whose path is
        ``stop_at``, which is recorded but not requested)."""
        journey = Journey()
        for _ in range(max_hops):
            journey.hops.append(url)
            if url.startswith(FRONTEND) or (stop_at and urlsplit(url).path == stop_at):
                journey.final = url
                return journey
            response = self.client.get(url)
            if response.status_code not in (301, 302, 303, 307, 308):
                journey.final = url
                raise FlowStopped(journey, response)
            url = urljoin(url, response.headers["Location"])
        raise AssertionError(f"too many redirects: {journey.hops}")


class FlowStopped(Exception):
    def __init__(self, journey: Journey, response: httpx.Response) -> None:
        super().__init__(f"{response.status_code} at {journey.final}: {response.text[:300]}")
        self.journey = journey
        self.response = response
