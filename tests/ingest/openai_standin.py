"""A local OpenAI-compatible stand-in: ``POST /v1/chat/completions`` answers a fixed completion whose usage the
test chooses (prompt tokens including cached ones, completion tokens including reasoning ones), as the OpenAI
API reports them. Real HTTP on 127.0.0.1, so the real ``openai`` client and its instrumentation run unchanged."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response


class Standin:
    def __init__(self) -> None:
        self.usage: dict[str, Any] = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
        self.model = "gpt-4o-mini-2024-07-18"
        self.url = ""
        self.calls = 0

    def __call__(self, environ: Any, start_response: Any) -> Any:
        request = Request(environ)
        if request.method != "POST" or not request.path.endswith("/chat/completions"):
            return Response("not found", status=404)(environ, start_response)
        self.calls += 1
        asked = json.loads(request.get_data() or b"{}")
        body = {
            "id": f"chatcmpl-{self.calls}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model if asked.get("model", "").startswith("gpt-4o-mini") else asked.get("model"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "Sure."},
                    "finish_reason": "stop",
                }
            ],
            "usage": self.usage,
        }
        return Response(json.dumps(body), content_type="application/json")(environ, start_response)


@contextmanager
def openai_standin() -> Iterator[Standin]:
    app = Standin()
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    app.url = f"http://127.0.0.1:{server.server_port}/v1"
    try:
        yield app
    finally:
        server.shutdown()
