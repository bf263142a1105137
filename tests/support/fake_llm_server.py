"""A fake OpenAI-compatible chat-completions server on 127.0.0.1, as pytest fixtures.

`server`: real HTTP (ThreadingHTTPServer in a daemon thread); it records every request, checks the
Authorization header, and can be told to fail, stall past the client's timeout, or echo the bearer
token back. `key`: a fresh API key in the environment variable ENV. Used by the explainer, rewriter
and generated-sentence tests (import the fixtures into the test module).
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

ENV = "LENSFLOW_TEST_EXPLAINER_KEY"


class FakeOpenAI:
    """State of the fake server; the handler reads and updates it under a lock."""

    def __init__(self):
        self.lock = threading.Lock()
        self.requests: list[dict] = []
        self.auth: list[str | None] = []
        self.expected_key: str | None = None  # None: accept anything
        self.fail_first, self.fail_status, self.retry_after = 0, 500, None
        self.sleep_first, self.sleep_s = 0, 0.0
        self.status_always: int | None = None
        self.answer = lambda request: "echo: " + request["messages"][-1]["content"][:40]

    def handle(self, handler: BaseHTTPRequestHandler):
        body = json.loads(handler.rfile.read(int(handler.headers["Content-Length"])))
        auth = handler.headers.get("Authorization")
        with self.lock:
            n = len(self.requests)
            self.requests.append(body)
            self.auth.append(auth)
        if n < self.sleep_first:
            time.sleep(self.sleep_s)
        if self.expected_key is not None and auth != f"Bearer {self.expected_key}":
            return 401, {"error": {"message": f"bad key: {auth}"}}, {}
        if self.status_always is not None:  # echo the bearer token to test redaction of error bodies
            return self.status_always, {"error": {"message": f"nope, got {auth}"}}, {}
        if n < self.fail_first:
            headers = {"Retry-After": str(self.retry_after)} if self.retry_after is not None else {}
            return self.fail_status, {"error": {"message": "try later"}}, headers
        content = self.answer(body if auth is None else {**body, "_auth": auth})
        return 200, {"id": f"cmpl-{n}", "choices": [{"index": 0, "message": {"role": "assistant",
                                                                               "content": content}}]}, {}


@pytest.fixture
def server():
    state = FakeOpenAI()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            status, payload, headers = state.handle(self)
            data = json.dumps(payload).encode()
            try:
                self.send_response(status)
                for k, v in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except OSError:  # the client gave up (timeout) and closed the socket
                pass

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=lambda: httpd.serve_forever(poll_interval=0.05), daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    yield state
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def key(monkeypatch):
    value = "sk-test-" + secrets.token_hex(16)
    monkeypatch.setenv(ENV, value)
    return value
