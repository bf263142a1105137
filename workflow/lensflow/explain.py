"""The feature explainer (paper §3.4, spec item 9): an LLM explains each feature, then labels it.

The paper used GPT-4: it explains a feature in one sentence from its top activation records
(activations scaled 0-10, Bills et al. 2023), then says whether that explanation is related to a
plain-language description of the fine-tuning task. Two interchangeable backends answer here:

  OpenAIClient  any OpenAI-compatible chat-completions server, over httpx;
  LocalClient   a local Hugging Face instruct model (greedy; yes/no by option log-probability).

Both cache every answer on disk, one JSON file per request named by the sha256 of what determines
the answer, written atomically; a rerun therefore makes no HTTP call and runs no model. The API key
is read from the environment at request time only, never stored on the client, never part of a
cache key, and redacted from every cached payload, returned text, log message and error.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from pathlib import Path

import pandas as pd

from .io import atomic_path

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


class LocalClient(CachedBackend):
    """A local Hugging Face instruct model behind the same interface, greedy and disk-cached.

    `model_id` names the model in cache keys (default: the model's name_or_path); a cache needs one,
    since two random models with an empty name would otherwise share answers.
    """

    def __init__(self, model, tokenizer, device="cpu", max_new_tokens: int = 48, cache_dir: Path | None = None,
                 model_id: str | None = None):
        self.model, self.tokenizer, self.device = model.to(device).eval(), tokenizer, device
        self.max_new_tokens = int(max_new_tokens)
        self.model_id = model_id or getattr(model, "name_or_path", "") or ""
        if cache_dir is not None and not self.model_id:
            raise ValueError("LocalClient with a cache_dir needs a model_id (the model has no name_or_path)")
        self._init_cache(cache_dir)
        self.chat = bool(getattr(tokenizer, "chat_template", None))

    def prompt(self, messages: list[dict]) -> str:
        """The model's chat template if it has one, else a plain "User:/Assistant:" transcript."""
        if self.chat:
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        turns = [f"{m['role'].capitalize()}: {m['content']}" for m in messages]
        return "\n\n".join(turns) + "\n\nAssistant:"

    def _ids(self, text: str) -> list[int]:
        # A chat template already holds its special tokens (BOS); a plain prompt gets the tokenizer's.
        return self.tokenizer(text, add_special_tokens=not self.chat)["input_ids"]

    def complete(self, messages: list[dict]) -> str:
        request = {"model": self.model_id, "kind": "complete", "messages": messages,
                   "max_new_tokens": self.max_new_tokens}
        return self._cached(request, lambda: self._generate(messages))["text"]

    def _generate(self, messages: list[dict]) -> dict:
        import torch

        ids = torch.tensor([self._ids(self.prompt(messages))], device=self.device)  # [1, pos]
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        with torch.inference_mode():
            out = self.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                      max_new_tokens=self.max_new_tokens, pad_token_id=pad)  # [1, pos + new]
        return {"text": self.tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip()}

    def option_logprobs(self, messages: list[dict], options: list[str]) -> dict[str, float]:
        """Total log-probability of each option's tokens right after the prompt (one forward pass).

        Each option counts as the log-sum-exp over its spellings {option, Option}, so a model that
        prefers "Yes" to "yes" is not scored as doubting the answer.
        """
        request = {"model": self.model_id, "kind": "choose", "messages": messages, "options": list(options)}
        return self._cached(request, lambda: self._score(messages, options))

    def _score(self, messages: list[dict], options: list[str]) -> dict[str, float]:
        import torch

        text = self.prompt(messages)
        prompt_ids = self._ids(text)
        sep = "" if self.chat else " "
        spellings = [(o, s) for o in options for s in dict.fromkeys([o, o[:1].upper() + o[1:]])]
        seqs = []
        for _, s in spellings:
            full = self._ids(text + sep + s)  # tokenized together: the joint split the model would see
            cont = full[len(prompt_ids):] if full[: len(prompt_ids)] == prompt_ids else None
            if not cont:
                cont = self.tokenizer(sep + s, add_special_tokens=False)["input_ids"]
                full = prompt_ids + cont
            seqs.append((full, len(full) - len(cont)))
        width = max(len(f) for f, _ in seqs)
        ids = torch.zeros(len(seqs), width, dtype=torch.long)  # [n, pos]; right-padded
        mask = torch.zeros_like(ids)
        for i, (f, _) in enumerate(seqs):
            ids[i, : len(f)], mask[i, : len(f)] = torch.tensor(f), 1
        with torch.inference_mode():
            logits = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device)).logits
        totals: dict[str, list[float]] = {o: [] for o in options}
        for i, ((f, start), (o, _)) in enumerate(zip(seqs, spellings)):
            logp = torch.log_softmax(logits[i, start - 1 : len(f) - 1].float(), dim=-1).cpu()  # [n_cont, vocab]
            totals[o].append(float(logp[torch.arange(len(f) - start), torch.tensor(f[start:])].sum()))
        return {o: float(torch.logsumexp(torch.tensor(v), 0)) for o, v in totals.items()}

    def choose_with_raw(self, messages: list[dict], options: list[str]) -> tuple[str | None, str]:
        """(the most probable option, the per-option log-probs as text); None on an exact tie
        (e.g. every option maps to the same unknown token): no preference is no label."""
        scores = self.option_logprobs(messages, options)
        ranked = sorted(options, key=lambda o: -scores[o])
        best = None if len(ranked) > 1 and scores[ranked[0]] == scores[ranked[1]] else ranked[0]
        return best, "log p: " + ", ".join(f"{o}={scores[o]:.3f}" for o in options)


EXPLAIN_SYSTEM = (
    "We're studying features of a sparse autoencoder trained on a language model's MLP activations. "
    "Each feature looks for some particular thing in a short document. Look at the parts of the "
    "document the feature activates for and summarize in a single sentence what the feature is looking "
    "for. Don't list examples of words.\n\nEach record is a stretch of text with the activating token "
    "marked «like this», followed by its activation in parentheses. Activation values range from 0 to "
    "10; the higher the value, the stronger the match."
)
LEAD = "the main thing this feature does is find"


def explain_feature(client, records_text: str, layer: int, feature: int) -> str:
    """One-sentence explanation of a feature from its records; "" when the model gives none."""
    messages = [
        {"role": "system", "content": EXPLAIN_SYSTEM},
        {"role": "user", "content": f"Feature {feature} of layer {layer}\nRecords:\n{records_text}\n\n"
                                    f"Complete this sentence, in one sentence: {LEAD} ..."},
    ]
    return clean_explanation(client.complete(messages))


def clean_explanation(text: str) -> str:
    """The first sentence, without an echoed lead-in, quotes or list markers."""
    text = " ".join(text.strip().split())
    text = re.sub(rf"^(explanation:\s*)?({re.escape(LEAD)}|{re.escape(LEAD.replace('find', 'to find'))})\s*",
                  "", text, flags=re.I)
    text = text.lstrip("-*:•. \"'").strip()
    first = re.split(r"(?<=[.!?])\s", text, maxsplit=1)[0]
    return first.strip().strip("\"'").strip()[:400]


def classify_related(client, explanation: str, task_description: str) -> tuple[bool | None, str]:
    """Is the feature related to the fine-tuning task? (True/False, raw answer); None if unparseable."""
    messages = [
        {"role": "system", "content": "You judge whether a feature of a fine-tuned language model is related "
                                      "to the task it was fine-tuned on. Answer with one word: yes or no."},
        {"role": "user", "content": f"Fine-tuning task: {task_description}\nFeature explanation: {explanation}\n"
                                    "Is this feature related to the fine-tuning task? Answer yes or no."},
    ]
    if hasattr(client, "choose_with_raw"):
        choice, raw = client.choose_with_raw(messages, ["yes", "no"])
    else:  # any object with choose(messages, options) will do
        choice = client.choose(messages, ["yes", "no"])
        raw = str(choice)
    return {"yes": True, "no": False}.get(choice), raw


def explain_features(client, records_by_feature: dict, layer: int, task_description: str) -> pd.DataFrame:
    """Explain and label each feature: DataFrame(layer, feature, explanation, related, answer).

    `related` is a nullable boolean: <NA> where the explanation was empty or the label unparseable.
    """
    rows = []
    for feature in sorted(records_by_feature):
        explanation = explain_feature(client, records_by_feature[feature], layer, int(feature))
        related, answer = classify_related(client, explanation, task_description) if explanation \
            else (None, "(no explanation to classify)")
        rows.append({"layer": int(layer), "feature": int(feature), "explanation": explanation,
                     "related": related, "answer": answer})
    df = pd.DataFrame(rows, columns=["layer", "feature", "explanation", "related", "answer"])
    df["related"] = df["related"].astype("boolean")
    n_bad = int(df["related"].isna().sum())
    if n_bad:
        log.warning("layer %d: %d of %d features have no usable relevance label", layer, n_bad, len(df))
    return df
