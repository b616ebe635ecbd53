"""`python -m functions.ws_bridge --port N` (PORT when no flag): uvicorn with WebSocket pings as heartbeats,
and a SIGTERM that first stops accepting and closes every socket with 1012 so clients reconnect elsewhere
(Cloud Run gives 10 s)."""

from __future__ import annotations

import argparse
import os
from typing import Any

import uvicorn


class BridgeServer(uvicorn.Server):
    def handle_exit(self, sig: int, frame: Any) -> None:
        from functions.ws_bridge.app import begin_shutdown
        from functions.ws_bridge.main import app

        context = app.state.context
        context.hub.accepting = False
        try:
            begin_shutdown(context)
        except RuntimeError:  # no running loop (signal before start-up finished): uvicorn's own exit suffices
            pass
        super().handle_exit(sig, frame)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m functions.ws_bridge")
    # Cloud Run (K_SERVICE set) needs every interface; locally only loopback.
    default_host = "0.0.0.0" if os.environ.get("K_SERVICE") else "127.0.0.1"  # noqa: S104
    parser.add_argument("--host", default=os.environ.get("HOST", default_host))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8080")))
    args = parser.parse_args()
    from functions.ws_bridge.app import asgi
    from functions.ws_bridge.main import app

    settings = app.state.context.settings

    config = uvicorn.Config(
        asgi(app),
        host=args.host,
        port=args.port,
        ws="websockets-sansio",
        log_level="warning",
        access_log=False,
        ws_ping_interval=settings.heartbeat_interval_s,
        ws_ping_timeout=settings.heartbeat_interval_s,
        # Frames up to 4x the limit get an error frame; larger ones close with 1009 before being buffered.
        ws_max_size=settings.max_frame_bytes * 4,
        # Compression would cost ~40 KiB of zlib state per idle socket and CPU per frame, for small JSON frames.
        ws_per_message_deflate=False,
        timeout_graceful_shutdown=4,
        lifespan="on",
        backlog=4096,
    )
    BridgeServer(config).run()


if __name__ == "__main__":
    main()
