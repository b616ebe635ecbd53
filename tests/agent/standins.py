"""Local HTTP stand-ins of the LLM providers' wire formats: the narrow seam the real adapters are tested at.

- OpenAI-compatible: ``POST /v1/chat/completions`` with ``stream: true`` answers Server-Sent Events of
  ``chat.completion.chunk`` objects, the last one carrying ``usage`` (as with ``stream_options.include_usage``),
  then ``data: [DONE]``.
- Gemini (Developer API): ``POST /v1[beta]/models/{model}:streamGenerateContent?alt=sse`` answers SSE of
  ``GenerateContentResponse`` JSON, the last one carrying ``usageMetadata``.

Behaviour per model name: ``*fail*`` -> HTTP 503, ``*flaky*`` -> 503 on the first request for that model then
success, ``*bad*`` -> HTTP 400, ``*cut*`` -> the stream stops half-way (connection closed). Every request is
recorded (path, model, body, headers) for assertions.

Run as a process for multi-process tests: ``python -m tests.agent.standins --port N`` (prints a ready line).
"""

from __future__ import annotations

import argparse
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ANSWER = ["Route ", "short ", "prompts ", "to ", "a ", "smaller ", "model."]


class StandIn(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.requests: list[dict[str, Any]] = []
        self.seen_models: dict[str, int] = {}
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def start(self) -> StandIn:
        threading.Thread(target=self.serve_forever, daemon=True, name="llm-standin").start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    server: StandIn
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    def _json_error(self, status: int, message: str) -> None:
        body = json.dumps({"error": {"code": status, "message": message, "status": "UNAVAILABLE"}}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # noqa: N802 - http.server API
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        gemini = re.match(r"^/v1(?:beta)?/models/([^:]+):streamGenerateContent", self.path)
        if self.path.rstrip("/").endswith("/chat/completions"):
            model = str(body.get("model"))
        elif gemini:
            model = gemini.group(1)
        else:
            self._json_error(404, f"no such path {self.path}")
            return
        with self.server.lock:
            count = self.server.seen_models.get(model, 0) + 1
            self.server.seen_models[model] = count
            self.server.requests.append(
                {"path": self.path, "model": model, "body": body, "headers": dict(self.headers.items())}
            )
        if "fail" in model or ("flaky" in model and count == 1):
            self._json_error(503, "model overloaded")
            return
        if "bad" in model:
            self._json_error(400, "invalid request")
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        chunks = self._gemini_chunks() if gemini else self._openai_chunks(model)
        for i, chunk in enumerate(chunks):
            if "cut" in model and i == 3:
                self.wfile.flush()
                self.connection.shutdown(2)
                return
            self.wfile.write(f"data: {json.dumps(chunk) if not isinstance(chunk, str) else chunk}\n\n".encode())
            self.wfile.flush()
        self.close_connection = True

    @staticmethod
    def _openai_chunks(model: str) -> list[Any]:
        chunks: list[Any] = [
            {
                "id": "c1",
                "object": "chat.completion.chunk",
                "model": model,
                "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}],
            }
        ]
        for token in ANSWER:
            chunks.append(
                {
                    "id": "c1",
                    "object": "chat.completion.chunk",
                    "model": model,
                    "choices": [{"index": 0, "delta": {"content": token}}],
                }
            )
        chunks.append(
            {
                "id": "c1",
                "object": "chat.completion.chunk",
                "model": model,
                "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            }
        )
        chunks.append(
            {
                "id": "c1",
                "object": "chat.completion.chunk",
                "model": model,
                "choices": [],
                "usage": {
                    "prompt_tokens": 120,
                    "completion_tokens": 30,
                    "total_tokens": 150,
                    "prompt_tokens_details": {"cached_tokens": 100},
                    "completion_tokens_details": {"reasoning_tokens": 12},
                },
            }
        )
        chunks.append("[DONE]")
        return chunks

    @staticmethod
    def _gemini_chunks() -> list[Any]:
        chunks: list[Any] = []
        for i, token in enumerate(ANSWER):
            chunk: dict[str, Any] = {
                "candidates": [{"content": {"role": "model", "parts": [{"text": token}]}, "index": 0}],
                "modelVersion": "gemini-standin",
            }
            if i == len(ANSWER) - 1:
                chunk["candidates"][0]["finishReason"] = "STOP"
                chunk["usageMetadata"] = {
                    "promptTokenCount": 200,
                    "cachedContentTokenCount": 150,
                    "candidatesTokenCount": 40,
                    "thoughtsTokenCount": 25,
                    "totalTokenCount": 265,
                }
            chunks.append(chunk)
        return chunks


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.agent.standins")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    server = StandIn(args.port)
    print(json.dumps({"ready": True, "port": server.server_address[1]}), flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
