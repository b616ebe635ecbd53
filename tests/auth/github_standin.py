"""A small local stand-in for GitHub's OAuth pages and REST API: the narrow seam auth talks to.

Speaks the four endpoints auth uses, with GitHub's shapes: ``GET /login/oauth/authorize`` (signs in the
account named by ``login``, an email, at once), ``POST /login/oauth/access_token`` (200 with ``{"error"}``
for a bad code, as GitHub does; checks client secret, redirect_uri and PKCE), ``GET /user`` and
``GET /user/emails``. An email whose local part contains ``+unverified`` has no verified address.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit


@dataclass
class GitHubStandIn:
    client_id: str
    client_secret: str
    server: ThreadingHTTPServer | None = None
    codes: dict[str, dict[str, Any]] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)  # access token -> email
    requests: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @staticmethod
    def user_id(email: str) -> int:
        return int(hashlib.sha256(email.encode()).hexdigest()[:8], 16)

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


def start_github(client_id: str = "gh-test-client", client_secret: str | None = None) -> GitHubStandIn:
    standin = GitHubStandIn(client_id, client_secret or secrets.token_hex(20))

    class Handler(BaseHTTPRequestHandler):
        def _json(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 - http.server naming
            parts = urlsplit(self.path)
            standin.requests.append(f"GET {parts.path}")
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            if parts.path == "/login/oauth/authorize":
                if query.get("client_id") != standin.client_id:
                    self._json(404, {"error": "unknown client"})
                    return
                code = secrets.token_hex(10)
                standin.codes[code] = {
                    "email": query.get("login", "octocat@example.com").lower(),
                    "redirect_uri": query.get("redirect_uri"),
                    "challenge": query.get("code_challenge"),
                }
                target = f"{query['redirect_uri']}?{urlencode({'code': code, 'state': query.get('state', '')})}"
                self.send_response(302)
                self.send_header("Location", target)
                self.end_headers()
                return
            auth = self.headers.get("Authorization", "")
            email = standin.tokens.get(auth.split(" ", 1)[1] if " " in auth else "")
            if email is None:
                self._json(401, {"message": "Bad credentials"})
                return
            if parts.path == "/user":
                self._json(200, {"id": standin.user_id(email), "login": email.split("@")[0], "name": None})
            elif parts.path == "/user/emails":
                verified = "+unverified" not in email.split("@")[0]
                self._json(
                    200,
                    [
                        {
                            "email": f"noreply-{standin.user_id(email)}@users.noreply.example",
                            "primary": False,
                            "verified": True,
                            "visibility": None,
                        },
                        {"email": email, "primary": True, "verified": verified, "visibility": "public"},
                    ],
                )
            else:
                self._json(404, {"message": "Not Found"})

        def do_POST(self) -> None:  # noqa: N802
            parts = urlsplit(self.path)
            standin.requests.append(f"POST {parts.path}")
            length = int(self.headers.get("Content-Length") or 0)
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            if parts.path != "/login/oauth/access_token":
                self._json(404, {"message": "Not Found"})
                return
            grant = standin.codes.pop(form.get("code", ""), None)
            verifier = form.get("code_verifier", "")
            computed = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
            if (
                grant is None
                or form.get("client_id") != standin.client_id
                or form.get("client_secret") != standin.client_secret
                or form.get("redirect_uri") != grant["redirect_uri"]
                or (grant["challenge"] and computed != grant["challenge"])
            ):
                self._json(
                    200,
                    {"error": "bad_verification_code", "error_description": "The code passed is incorrect or expired."},
                )
                return
            token = f"gho_{secrets.token_hex(18)}"
            standin.tokens[token] = grant["email"]
            self._json(200, {"access_token": token, "token_type": "bearer", "scope": "read:user,user:email"})

        def log_message(self, *args: object) -> None:
            pass

    standin.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=standin.server.serve_forever, name="github-standin", daemon=True).start()
    return standin
