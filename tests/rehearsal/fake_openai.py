"""A local OpenAI-compatible chat-completions server that answers the workflow's requests in kind.

The rehearsal points paper.yaml's explainer (GPT-4o) and rewriter (a vLLM LLaMA-3) at it. It
answers by what the request asks: a yes/no judgment (task relevance; detection scoring of an
explanation on one context, lensflow.lfp.validation.detection), a rewrite in the asked style, or a one-line
feature explanation; each answer is derived from a hash of the request, so runs are repeatable
and answers differ between requests (the rewrites of one entry must differ to form a triple).
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOPICS = ["sentiment words", "the end of a sentence", "names of people", "food and drink", "questions",
          "polite refusals", "insults", "movie plots"]


def answer(body: dict) -> str:
    last = body["messages"][-1]["content"]
    h = int(hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest(), 16)
    if re.search(r"answer (with one word: )?yes or no", last, re.I) or "yes or no" in last:
        return ("yes", "no")[h % 2]
    style = re.search(r"so that it is (\w+)", last)
    if style:  # the dialogue's own words, a different draw per style: tokenizers with a small word
        # vocabulary (the Gemma stand-in's) must still see three different texts
        words = re.findall(r"[a-z]{3,}", last.split("Rewrite the assistant")[0].lower())
        draw = random.Random(h).sample(words, min(len(words), 12))
        return " ".join(draw).capitalize() + "."
    return f"{TOPICS[h % len(TOPICS)]} in the records ({h % 97})."


@contextmanager
def serve():
    """Run the server on a free loopback port in a daemon thread; yields its /v1 base URL."""
    requests = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            requests.append(body)
            content = answer(body)
            data = json.dumps({"id": f"cmpl-{len(requests)}", "model": body.get("model"),
                               "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                                            "finish_reason": "stop"}],
                               "usage": {"completion_tokens": len(content.split())}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=lambda: httpd.serve_forever(poll_interval=0.05), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    finally:
        httpd.shutdown()
        httpd.server_close()
