"""A loopback OpenAI-compatible chat-completions server for tests and benchmarks.

A real stdlib ``ThreadingHTTPServer`` on 127.0.0.1 (so litellm is exercised end to end,
sync and async, with no mocking of its transport) that answers
``POST /v1/chat/completions`` after ``latency`` seconds with the text returned by
``responder(body)``, and can inject faults::

    with StubServer(latency=0.2) as server:
        server.fail_next("429", 2)          # the next two requests get HTTP 429
        client = LLMClient(store, model="openai/stub", api_base=server.url, params={"api_key": "test"})

Fault kinds: ``"429"`` (rate limited, with ``Retry-After: 0``), ``"500"`` (server error), ``"401"`` (key rejected),
``"timeout"`` (hold the request for ``hang`` seconds, then drop the connection) and
``"malformed"`` (HTTP 200 with a body that is not JSON).

``server.served`` lists ``(status, monotonic time, request body)`` for every response whose
bytes were all handed to the socket (a client that vanished mid-write is not counted), and
``served_count(200)`` counts the completions answered; durability tests compare it with
what the client stored.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

FAULTS = ("429", "500", "timeout", "malformed", "401")


def echo_responder(body: dict[str, Any]) -> str:
    """The default answer: names the model and repeats the start of the last user message."""
    last = next((m.get("content") or "" for m in reversed(body.get("messages", [])) if m.get("role") == "user"), "")
    if isinstance(last, list):  # content parts
        last = " ".join(p.get("text", "") for p in last if isinstance(p, dict))
    return f"stub answer to: {str(last)[:80]}"


def _count_tokens(text: str) -> int:
    return max(1, len(text.split())) if text else 0


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence stderr
        pass

    def _send(self, status: int, payload: bytes, headers: dict[str, str] | None = None,
              body: dict[str, Any] | None = None) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(payload)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            return
        if body is not None:
            self.server.stub._served(status, body)

    def do_GET(self) -> None:  # noqa: N802
        if self.path.rstrip("/").endswith("/models"):
            self._send(200, json.dumps({"object": "list", "data": [{"id": "stub", "object": "model"}]}).encode())
        else:
            self._send(404, b'{"error": {"message": "not found"}}')

    def do_POST(self) -> None:  # noqa: N802
        stub = self.server.stub
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            self._send(400, b'{"error": {"message": "request body is not JSON", "type": "invalid_request_error"}}')
            return
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._send(404, b'{"error": {"message": "not found"}}')
            return
        fault = stub._take_fault(body)
        if stub.latency:
            time.sleep(stub.latency)
        if fault == "429":
            self._send(429, b'{"error": {"message": "rate limited (stub)", "type": "rate_limit_error", "code": "rate_limit_exceeded"}}',
                       {"Retry-After": "0"}, body)
            return
        if fault == "401":
            self._send(401, b'{"error": {"message": "invalid api key (stub)", "type": "invalid_request_error", "code": "invalid_api_key"}}', body=body)
            return
        if fault == "500":
            self._send(500, b'{"error": {"message": "internal error (stub)", "type": "server_error"}}', body=body)
            return
        if fault == "timeout":
            stub._hang_event.wait(stub.hang)
            self.close_connection = True
            return
        if fault == "malformed":
            self._send(200, b'{"id": "chatcmpl-stub", "choices": [{"message": ', body=body)
            return
        try:
            text = stub.responder(body)
        except Exception as exc:  # noqa: BLE001 - a responder bug becomes a 500 the client can see
            self._send(500, json.dumps({"error": {"message": f"responder failed: {exc}", "type": "server_error"}}).encode(), body=body)
            return
        prompt_tokens = sum(_count_tokens(str(m.get("content") or "")) for m in body.get("messages", []))
        completion_tokens = _count_tokens(text)
        payload = {
            "id": f"chatcmpl-stub-{stub._next_id()}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "stub"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        }
        self._send(200, json.dumps(payload).encode(), body=body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    stub: StubServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):  # a client that vanished is normal
            super().handle_error(request, client_address)


class StubServer:
    """An OpenAI-compatible chat-completions server on 127.0.0.1 (see the module docs)."""

    def __init__(self, *, latency: float = 0.0, responder: Callable[[dict[str, Any]], str] | None = None,
                 hang: float = 3.0, port: int = 0) -> None:
        self.latency = latency
        self.responder: Callable[[dict[str, Any]], str] = responder or echo_responder
        self.hang = hang
        self.requests: list[dict[str, Any]] = []
        self.faults_served: list[str] = []
        self.served: list[tuple[int, float, dict[str, Any]]] = []
        self._faults: deque[str] = deque()
        self._lock = threading.Lock()
        self._ids = 0
        self._hang_event = threading.Event()
        self._httpd = _Server(("127.0.0.1", port), _Handler)
        self._httpd.stub = self
        self._thread: threading.Thread | None = None

    # -- faults ---------------------------------------------------------------------
    def fail_next(self, kind: str, n: int = 1) -> None:
        """The next ``n`` requests get fault ``kind`` ("429", "500", "timeout", "malformed")."""
        if kind not in FAULTS:
            raise ValueError(f"unknown fault {kind!r}; use one of {', '.join(FAULTS)}")
        with self._lock:
            self._faults.extend([kind] * n)

    def _take_fault(self, body: dict[str, Any]) -> str | None:
        with self._lock:
            self.requests.append(body)
            fault = self._faults.popleft() if self._faults else None
            if fault:
                self.faults_served.append(fault)
            return fault

    def _served(self, status: int, body: dict[str, Any]) -> None:
        with self._lock:
            self.served.append((status, time.monotonic(), body))

    def served_count(self, status: int | None = 200) -> int:
        """Responses fully written to their client (with ``status``; every status when ``None``)."""
        with self._lock:
            return sum(1 for s, _, _ in self.served if status is None or s == status)

    def _next_id(self) -> int:
        with self._lock:
            self._ids += 1
            return self._ids

    # -- lifecycle ------------------------------------------------------------------
    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> StubServer:
        if self._thread is None:
            self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                            name="stub-llm-server", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._hang_event.set()  # release hanging handlers
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> StubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
