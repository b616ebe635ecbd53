"""`python -m functions.ws_bridge --port N`: uvicorn with WebSocket pings as heartbeats and a SIGTERM that
first closes every socket with 1012 so clients reconnect elsewhere (Cloud Run gives 10 s)."""

from __future__ import annotations

import argparse
import asyncio
import os

import uvicorn


class BridgeServer(uvicorn.Server):
    def handle_exit(self, sig: int, frame: object) -> None:
        from functions.ws_bridge.main import close_all

        try:
            asyncio.get_running_loop().create_task(close_all())
        except RuntimeError:
            pass
        super().handle_exit(sig, frame)  # type: ignore[arg-type]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m functions.ws_bridge")
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8080")))
    args = parser.parse_args()
    from functions.ws_bridge.main import app, settings

    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        ws="websockets",
        log_level="warning",
        ws_ping_interval=settings.heartbeat_interval_s,
        ws_ping_timeout=settings.heartbeat_interval_s,
        ws_max_size=settings.max_frame_bytes * 4,
        timeout_graceful_shutdown=8,
        lifespan="on",
    )
    BridgeServer(config).run()


if __name__ == "__main__":
    main()
