"""A small HTTP reverse proxy that appends the address of its peer to ``X-Forwarded-For``, as Google's load
balancer and front end do. Two of them in a row make the two-hop chain auth sees behind the load balancer.
Its outgoing connections leave from ``source_address`` (any 127.x.y.z works on Linux loopback), so the next
hop sees a distinct peer."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "host", "content-length"}


class XffProxy:
    def __init__(self, target: str, source_address: str = "127.0.0.1") -> None:
        self.target = target.rstrip("/")
        self.client = httpx.Client(
            transport=httpx.HTTPTransport(local_address=source_address), timeout=30, trust_env=False
        )
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                headers.pop("X-Forwarded-For", None)
                prior = self.headers.get("X-Forwarded-For")
                peer = self.client_address[0]
                headers["X-Forwarded-For"] = f"{prior}, {peer}" if prior else peer
                upstream = proxy.client.request(self.command, proxy.target + self.path, headers=headers, content=body)
                self.send_response(upstream.status_code)
                for key, value in upstream.headers.items():
                    if key.lower() not in HOP_BY_HOP:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(upstream.content)))
                self.end_headers()
                self.wfile.write(upstream.content)

            do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _forward

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True, name="xff-proxy")

    def start(self) -> XffProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.client.close()
