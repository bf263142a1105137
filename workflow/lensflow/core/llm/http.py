"""An OpenAI-compatible chat-completions backend for the explainer (and endpoint generation).

The API key is read from the environment at request time only, never stored on the client, never
part of a cache key, and redacted from every cached payload, returned text, log message and error.
"""

from __future__ import annotations

import logging
import os
import re
import time
from pathlib import Path

from .cache import REDACTED, CachedBackend, ExplainerError

log = logging.getLogger("lensflow")


def first_option(text: str, options: list[str]) -> str | None:
    """The option whose word appears earliest in `text` (case-insensitive); None if none does."""
    hits = [(m.start(), i) for i, o in enumerate(options)
            if (m := re.search(rf"\b{re.escape(o.lower())}\b", text.lower()))]
    return options[min(hits)[1]] if hits else None


class OpenAIClient(CachedBackend):
    """Chat completions from an OpenAI-compatible server, with retries and a disk cache.

    `api_key_env` names the environment variable holding the key (None: a keyless local server).
    Retried: timeouts, connection errors, 429 and 5xx, `max_retries` times with delays
    backoff * 2**attempt (or the server's Retry-After when it is at most `max_retry_after` s).
    Other statuses fail at once. Counters: hits, misses (cache), http_calls (every POST attempt).
    """

    def __init__(self, base_url: str, model: str, *, cache_dir: str | Path, api_key_env: str | None = "OPENAI_API_KEY",
                 timeout: float = 60, max_retries: int = 4, backoff: float = 1.0, temperature: float = 0.0,
                 max_tokens: int = 64, max_retry_after: float = 30.0):
        self.base_url, self.model, self.api_key_env = base_url.rstrip("/"), model, api_key_env
        self.timeout, self.max_retries, self.backoff = float(timeout), int(max_retries), float(backoff)
        self.temperature, self.max_tokens, self.max_retry_after = float(temperature), int(max_tokens), max_retry_after
        self._init_cache(cache_dir)
        self.http_calls, self._http = 0, None

    def _scrub(self, text: str) -> str:
        key = os.environ.get(self.api_key_env) if self.api_key_env else None
        return text.replace(key, REDACTED) if key else text

    def complete(self, messages: list[dict]) -> str:
        request = {"base_url": self.base_url, "model": self.model, "messages": messages,
                   "temperature": self.temperature, "max_tokens": self.max_tokens}
        return self._cached(request, lambda: self._ask({k: v for k, v in request.items() if k != "base_url"}))["text"]

    def _ask(self, payload: dict) -> dict:
        body = self._post(payload)
        try:
            return {"text": body["choices"][0]["message"]["content"] or "", "response": body}
        except (KeyError, IndexError, TypeError):
            raise ExplainerError(f"unexpected response from {self.base_url}: {self._scrub(str(body))[:300]}") from None

    def choose_with_raw(self, messages: list[dict], options: list[str]) -> tuple[str | None, str]:
        """(the first option word in the completion or None, the completion)."""
        text = self.complete(messages)
        return first_option(text, options), text

    def _headers(self) -> dict:
        """Request headers; the key is read from the environment now and kept nowhere else."""
        if self.api_key_env is None:
            return {"Content-Type": "application/json"}
        if not os.environ.get(self.api_key_env):
            raise ExplainerError(f"environment variable {self.api_key_env} is not set (it must hold the API "
                                 f"key for {self.base_url}; pass api_key_env=None for a keyless server)")
        return {"Content-Type": "application/json", "Authorization": f"Bearer {os.environ[self.api_key_env]}"}

    def _post(self, payload: dict) -> dict:
        """POST with retries; the parsed JSON body of the first successful response."""
        import httpx

        headers = self._headers()  # before any request: a missing key sends nothing
        if self._http is None:
            self._http = httpx.Client(timeout=self.timeout)
        url, last = f"{self.base_url}/chat/completions", ""
        for attempt in range(self.max_retries + 1):
            delay = self.backoff * 2**attempt
            self.http_calls += 1
            try:
                resp = self._http.post(url, json=payload, headers=headers)
            except httpx.TransportError as e:  # timeouts, refused/reset connections
                last = f"{type(e).__name__}: {self._scrub(str(e))[:200]}"
            else:
                if resp.is_success:
                    try:
                        return resp.json()
                    except ValueError:
                        raise ExplainerError(f"non-JSON {resp.status_code} response from {url}: "
                                             f"{self._scrub(resp.text)[:300]!r}") from None
                snippet = self._scrub(resp.text)[:300]
                if resp.status_code != 429 and resp.status_code < 500:
                    raise ExplainerError(f"HTTP {resp.status_code} from {url} (not retried): {snippet!r}")
                last = f"HTTP {resp.status_code}: {snippet!r}"
                retry_after = resp.headers.get("Retry-After", "")
                if re.fullmatch(r"\d+(\.\d*)?", retry_after) and float(retry_after) <= self.max_retry_after:
                    delay = float(retry_after)  # an HTTP-date Retry-After counts as "not small"
            if attempt < self.max_retries:
                log.warning("explainer request failed (%s); retry %d/%d in %.1fs", last, attempt + 1,
                            self.max_retries, delay)
                time.sleep(delay)
        raise ExplainerError(f"{url} failed after {self.max_retries + 1} attempts (timeout {self.timeout}s); "
                             f"last error: {last}")

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None
