"""The WebSocket floor: Starlette + uvicorn (what the bridge is built on) and nothing else.

The storm runs against it exactly as against the bridge: connect, ``{"type": "subscribe", "thread_id"}``
answered by ``{"type": "subscribed"}``, then ``POST /emit?thread_id=..&n=..`` sends n events (the last one
``agent_completed``) to every subscriber of the thread. Run: ``python -m tests.loadtest.empty_ws --port N``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from collections import defaultdict

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

subscribers: dict[str, set[WebSocket]] = defaultdict(set)


async def socket(ws: WebSocket) -> None:
    await ws.accept()
    threads: set[str] = set()
    try:
        while True:
            frame = json.loads(await ws.receive_text())
            if frame.get("type") == "subscribe":
                thread = str(frame.get("thread_id"))
                subscribers[thread].add(ws)
                threads.add(thread)
                await ws.send_text(json.dumps({"type": "subscribed", "thread_id": thread}))
    except (WebSocketDisconnect, ValueError):
        pass
    finally:
        for thread in threads:
            subscribers[thread].discard(ws)


async def emit(request: Request) -> JSONResponse:
    thread = request.query_params.get("thread_id", "")
    count = int(request.query_params.get("n", "5"))
    targets = list(subscribers.get(thread, ()))
    for seq in range(1, count + 1):
        kind = "agent_completed" if seq == count else "partial_result"
        frame = json.dumps({"type": kind, "run_id": "floor", "thread_id": thread, "seq": seq, "data": {}})
        await asyncio.gather(*(ws.send_text(frame) for ws in targets), return_exceptions=True)
    return JSONResponse({"sent_to": len(targets)})


async def live(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


app = Starlette(
    routes=[WebSocketRoute("/ws", socket), Route("/emit", emit, methods=["POST"]), Route("/health/live", live)]
)


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(prog="python -m tests.loadtest.empty_ws")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8080")))
    args = parser.parse_args()
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", backlog=4096)


if __name__ == "__main__":
    main()
