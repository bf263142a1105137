"""Disk-cached LLM answers shared by the explainer backends (http, local).

One JSON file per request, named by the sha256 of what determines the answer, written atomically;
a rerun therefore makes no HTTP call and runs no model. A backend may scrub secrets (the API key)
from every payload before it is stored or returned.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

from ..io import atomic_path

log = logging.getLogger("lensflow")
REDACTED = "[REDACTED]"


class ExplainerError(RuntimeError):
    """The explainer backend failed; the message says why (never containing the API key)."""


class CachedBackend:
    """Disk cache, hit/miss counters and choose() shared by both backends.

    One JSON file per request: <cache_dir>/<sha256 of the canonical request JSON>.json holding
    {"request": ..., "result": ...}; written to a temporary name and renamed, so never half-written.
    """

    def _init_cache(self, cache_dir: str | Path | None) -> None:
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        if self.cache_dir is not None:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.hits = self.misses = 0

    def _scrub(self, text: str) -> str:
        return text

    def _cached(self, request: dict, compute) -> dict:
        """The cached result for `request`, else compute() (scrubbed, then stored)."""
        blob = json.dumps(request, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        path = self.cache_dir / f"{hashlib.sha256(blob.encode()).hexdigest()}.json" if self.cache_dir else None
        if path is not None and path.exists():
            try:
                result = json.loads(path.read_text(encoding="utf-8"))["result"]
                self.hits += 1
                return result
            except (OSError, ValueError, KeyError) as e:
                log.warning("unreadable explainer cache file %s (%s); asking again", path.name, e)
        self.misses += 1
        payload = json.loads(self._scrub(json.dumps({"request": request, "result": compute()}, ensure_ascii=False)))
        if path is not None:
            with atomic_path(path) as tmp:  # temp file + rename: never a half-written answer
                tmp.write_text(json.dumps(payload, sort_keys=True, ensure_ascii=False, indent=1), encoding="utf-8")
        return payload["result"]

    def choose(self, messages: list[dict], options: list[str]) -> str | None:
        return self.choose_with_raw(messages, options)[0]
