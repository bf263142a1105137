"""The generated concept data set: an instruct model writes the positive sentences.

ExpertLens had LLMs write its concept sentences; so does a local model or an endpoint here. Each
sample is one prompt -> one completion -> its first sentence, kept only if it is a complete sentence that
mentions the concept as a whole word or one of its simple inflections ("dogs" for dog; the rule
and its limits: concepts.inflections; a form that is another concept does not count) and does not
talk about the word itself (reject_reason says why a sample was dropped; the counts go to the
metadata). Two writers:
  local     a materialised causal LM (generate_sentences): prompts of many concepts share a
            generate() call (left padding);
  endpoint  an OpenAI-compatible chat-completions server (generate_sentences_endpoint), through
            explain.OpenAIClient (retries, disk cache, key redaction), one request per sample.
Either way rounds repeat for the concepts still short (_rounds), within a budget of `max_tries` x
n_per_concept samples per concept, so a model that never uses a word cannot loop. A data set in
which no concept got enough usable sentences is an error at this step (require_usable), with each
concept's rejection counts, rather than an empty bank that fails later steps.
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter

import torch

from lensflow.core.llm.http import OpenAIClient
from lensflow.core.sampling import Sampling, sample_texts

from .concepts import contains_word, inflections

log = logging.getLogger("lensflow")

MIN_CONCEPTS = 2  # a bank must hold a pair of concepts to compare
# The top-k that transformers' generate() applied unasked (GenerationConfig's default 50) when this
# writer used it; kept, so the sentences come from the same distribution as before (issue 13).
GENERATE_TOP_K = 50
DEFAULT_PROMPT = 'Write one short, simple sentence that uses the word "{concept}".'
_END = re.compile(r"(?<=[.!?])[\"'\u201d)]*\s")  # a sentence end followed by whitespace
_QUOTES = "\"'\u201c\u201d`*"
_LIST = re.compile(r"^(?:\d+[.)]|[-*\u2022])\s+")  # "1. ", "2) ", "- ": a list marker
_LEAD = re.compile(r"^[^:\"]*\b(?:sentence|example|here)\b[^:\"]*:\s+", re.IGNORECASE)  # "Here's one: "
_META = re.compile(r"\b(the word|sentences?|example)\b")


def first_sentence(text: str) -> str:
    """The first sentence of a completion: first non-empty line not ending in ':' (a lead-in such
    as 'Here is a sentence:'), without a list marker or an inline lead-in ('Example: ...'), cut
    after its first . ! or ?, wrapping quotes and markdown stars stripped (models often quote the
    sentence they write)."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    line = next((ln for ln in lines if not ln.endswith(":")), "")
    line = _LEAD.sub("", _LIST.sub("", line)).lstrip(_QUOTES)
    m = _END.search(line + " ")
    sent = line[: m.start()] if m else line
    return sent.strip().strip(_QUOTES).strip()


def is_meta(sentence: str, concept: str) -> bool:
    """Does the sentence talk about the word instead of using it? ('A sentence with the word
    "cat".', 'I love "cats".') Small models do this often; such sentences would make every concept
    look alike."""
    low = sentence.lower()
    forms = "|".join(re.escape(f) for f in sorted(inflections(concept)))
    quoted = re.search(r"[\"\u201c\u2018'](?:" + forms + r")[\"\u201d\u2019'.,!?]", low)
    talk = [m for m in _META.findall(low) if m not in (concept.lower(), f"the {concept.lower()}")]
    return bool(talk or quoted)


def reject_reason(sentence: str, concept: str, min_chars: int = 20, max_chars: int = 300,
                  exclude=()) -> str | None:
    """Why a first sentence is not a usable positive (None: it is). Checked in this order:
    length, incomplete (no final . ! ?: cut off by max_new_tokens), no_word (neither the concept
    nor one of its simple inflections is there as a whole word; forms in `exclude`, the other
    concepts, do not count), meta (a sentence about the word itself)."""
    if not min_chars <= len(sentence) <= max_chars:
        return "length"
    if sentence[-1:] not in ".!?":
        return "incomplete"
    if not contains_word(sentence, concept, inflect=True, exclude=exclude):
        return "no_word"
    if is_meta(sentence, concept):
        return "meta"
    return None


def keep(sentence: str, concept: str, min_chars: int = 20, max_chars: int = 300, exclude=()) -> bool:
    """A usable positive: a sane length, complete, mentions the concept, not about the word."""
    return reject_reason(sentence, concept, min_chars, max_chars, exclude) is None


def _prompts(tokenizer, concepts: list[str], template: str) -> tuple[list[str], bool]:
    """Prompt strings per concept, through the chat template when the tokenizer has one.

    Returns (prompts, templated); templated prompts already hold their special tokens (BOS), so
    they must be tokenized with add_special_tokens=False.
    """
    plain = [template.format(concept=c) for c in concepts]
    if not getattr(tokenizer, "chat_template", None):
        return plain, False
    from lensflow.core.llm.local import render_chat  # the one chat rendering of every local model

    return [render_chat(tokenizer, [{"role": "user", "content": p}]) for p in plain], True


def complete(model, tokenizer, prompts: list[str], templated: bool, max_new_tokens: int, temperature: float,
             top_p: float, batch_size: int, device, top_k: int = GENERATE_TOP_K) -> tuple[list[str], int]:
    """Sample one completion per prompt; returns (decoded new text per prompt, new tokens generated,
    each row's EOS included). The shared sampling loop (lensflow.core.sampling), left-padded."""
    return sample_texts(model, tokenizer, prompts, Sampling(max_new_tokens, temperature, top_k, top_p),
                        batch_size=batch_size, device=device, add_special_tokens=not templated)


def generate_sentences(model, tokenizer, concepts: list[str], n_per_concept: int,
                       prompt_template: str = DEFAULT_PROMPT, max_new_tokens: int = 32,
                       temperature: float = 1.0, top_p: float = 0.95, batch_size: int = 32, seed: int = 0,
                       device="cpu", max_tries: int = 4, min_chars: int = 20, max_chars: int = 300,
                       stats: dict | None = None) -> dict[str, list[str]]:
    """concept -> up to n_per_concept distinct sentences a local model wrote for it (see _rounds).

    Round r reseeds torch with seed + r. Same seed, model, device and batch size -> same sentences.
    """
    texts, templated = _prompts(tokenizer, concepts, prompt_template)
    prompt = dict(zip(concepts, texts))

    def sample(order: list[str], r: int) -> tuple[list[str], int]:
        torch.manual_seed(seed + r)
        return complete(model, tokenizer, [prompt[c] for c in order], templated, max_new_tokens,
                        temperature, top_p, batch_size, device)

    return _rounds(concepts, n_per_concept, sample, max_tries, min_chars, max_chars, stats)


class EndpointGenerator(OpenAIClient):
    """An OpenAI-compatible chat-completions endpoint as the sentence writer.

    explain.OpenAIClient as it is (httpx, retries, disk cache, key redaction); its requests here
    also carry top_p and a per-sample `seed`. The seed is part of the request and so of the cache
    key: sample k of a concept is its own cached answer, so k samples are k requests (a request
    without it would be answered from the cache with the first sample every time), and a rerun
    with the same settings sends nothing. Servers that honour `seed` (vLLM, llama.cpp, OpenAI
    best-effort) then also reproduce a sample when the cache is gone.
    """

    def __init__(self, base_url: str, model: str, *, top_p: float = 1.0, **kwargs):
        super().__init__(base_url, model, **kwargs)
        self.top_p = float(top_p)

    def sample(self, messages: list[dict], seed: int) -> tuple[str, int]:
        """(completion text, completion tokens as the server reported them, 0 if it did not)."""
        request = {"base_url": self.base_url, "model": self.model, "messages": messages,
                   "temperature": self.temperature, "top_p": self.top_p, "max_tokens": self.max_tokens,
                   "seed": int(seed)}
        result = self._cached(request, lambda: self._ask({k: v for k, v in request.items() if k != "base_url"}))
        usage = (result.get("response") or {}).get("usage") or {}
        return result["text"], int(usage.get("completion_tokens") or 0)


def generate_sentences_endpoint(client: EndpointGenerator, concepts: list[str], n_per_concept: int,
                                prompt_template: str = DEFAULT_PROMPT, seed: int = 0, max_tries: int = 4,
                                min_chars: int = 20, max_chars: int = 300,
                                stats: dict | None = None) -> dict[str, list[str]]:
    """concept -> up to n_per_concept distinct sentences an endpoint wrote for it (see _rounds).

    Sample k (k = 0, 1, ... counted per concept) of concept c is one chat request, the user
    message prompt_template.format(concept=c), with seed seed + k; requests go one at a time, and
    every answer is cached (EndpointGenerator), so a rerun sends no request.
    """
    asked: Counter = Counter()

    def sample(order: list[str], r: int) -> tuple[list[str], int]:
        texts, n_new = [], 0
        for c in order:
            text, n = client.sample([{"role": "user", "content": prompt_template.format(concept=c)}], seed + asked[c])
            asked[c] += 1
            texts.append(text)
            n_new += n
        return texts, n_new

    return _rounds(concepts, n_per_concept, sample, max_tries, min_chars, max_chars, stats)


def _rounds(concepts: list[str], n_per_concept: int, sample, max_tries: int, min_chars: int, max_chars: int,
            stats: dict | None) -> dict[str, list[str]]:
    """The sampling loop of both backends; sample(order, r) -> (one completion per concept in
    `order`, new tokens generated).

    Round r asks each unfinished concept for the samples it still lacks divided by the keep rate
    so far (clipped to [0.25, 1]; round 0 asks exactly n_per_concept), never more than its
    remaining budget of max_tries * n_per_concept. Asking for the expected number up front means
    fewer, fuller rounds; on CPU a half-empty tail round costs nearly a full one. `stats`, if
    given, is filled with samples / kept / new_tokens / rounds counts, `inflected` (kept sentences
    that have only an inflected form of the concept, e.g. "dogs" but not "dog"), `rejected`
    (reason -> count, see reject_reason; plus "duplicate" and "surplus") and `by_concept`
    (concept -> samples, kept, rejected) for logging, metadata and require_usable's message.
    """
    got: dict[str, dict[str, None]] = {c: {} for c in concepts}  # ordered sets
    budget = {c: max_tries * n_per_concept for c in concepts}
    st = {"samples": 0, "kept": 0, "inflected": 0, "new_tokens": 0, "rounds": 0, "rejected": Counter()}
    # per concept too: when a concept ends up short, its own reasons say why (require_usable)
    per = {c: {"samples": 0, "kept": 0, "rejected": Counter()} for c in concepts}
    others = {c: set(concepts) - {c} for c in concepts}  # their forms are theirs, not c's (inflections)
    for r in range(max_tries * n_per_concept):  # every round spends >= 1 sample of some budget
        rate = min(1.0, max(0.25, st["kept"] / st["samples"])) if st["samples"] else 1.0
        ask = [(c, min(math.ceil((n_per_concept - len(got[c])) / rate), budget[c])) for c in concepts]
        ask = [(c, k) for c, k in ask if k > 0 and len(got[c]) < n_per_concept]
        if not ask:
            break
        order = [c for c, k in ask for _ in range(k)]
        texts, n_new = sample(order, r)
        for c, text in zip(order, texts):
            budget[c] -= 1
            per[c]["samples"] += 1
            s = first_sentence(text)
            why = reject_reason(s, c, min_chars, max_chars, others[c]) or ("duplicate" if s in got[c] else None)
            if not why and len(got[c]) >= n_per_concept:
                why = "surplus"  # good, but the concept is full (over-asking)
            if why:
                st["rejected"][why] += 1
                per[c]["rejected"][why] += 1
            else:
                got[c][s] = None
                st["kept"] += 1
                per[c]["kept"] += 1
                st["inflected"] += not contains_word(s, c)
        st["samples"] += len(order)
        st["new_tokens"] += n_new
        st["rounds"] += 1
        log.info("generation round %d: %d samples, %d/%d concepts complete, rejected so far %s", r,
                 len(order), sum(len(v) >= n_per_concept for v in got.values()), len(concepts),
                 dict(st["rejected"]))
    if stats is not None:
        stats.update(st, rejected=dict(st["rejected"]),
                     by_concept={c: {**v, "rejected": dict(v["rejected"])} for c, v in per.items()})
    return {c: list(v) for c, v in got.items()}


# Rejection reasons (reject_reason's, and _rounds' own) in words, for the error a user reads.
REASONS = {
    "length": "too short or too long",
    "incomplete": "cut off before a final . ! or ?",
    "no_word": "did not use the concept word",
    "meta": "talked about the word instead of using it",
    "duplicate": "repeated an earlier sentence",
    "surplus": "came after the concept was full",
}


def _concept_line(concept: str, st: dict | None) -> str:
    """'cat: 0 usable of 12 samples; 12 did not use the concept word (no_word)'"""
    if not st:
        return f"{concept}: never sampled"
    why = sorted((st["rejected"] or {}).items(), key=lambda kv: (-kv[1], kv[0]))
    reasons = "; ".join(f"{n} {REASONS.get(r, r)} ({r})" for r, n in why) or "no rejections"
    return f"{concept}: {st['kept']} usable of {st['samples']} samples; {reasons}"


def require_usable(dataset: str, generator: str, got: dict[str, list[str]], stats: dict, min_positive: int) -> None:
    """Stop here when fewer than MIN_CONCEPTS concepts got min_positive usable sentences: ExpertLens
    compares concepts pairwise, so such a bank has nothing to compare, and every step after it
    (activation caching, similarity, domains) would fail far from the cause. The message names the
    data set and, per concept, why its samples were rejected (stats from _rounds)."""
    usable = sum(len(v) >= min_positive for v in got.values())
    if usable >= MIN_CONCEPTS:
        return
    by = stats.get("by_concept", {})
    lines = [_concept_line(c, by.get(c)) for c in got] or ["(no concepts: none is kept in the concepts table)"]
    raise ValueError(
        f"generated data set '{dataset}': only {usable} concept(s) got min_positive={min_positive} usable "
        f"sentences from {generator}; a bank needs at least {MIN_CONCEPTS} to compare (a weak or mis-prompted "
        f"generator? see "
        f"expertlens.datasets.{dataset}.prompt / max_new_tokens / generator). Per concept:\n  " + "\n  ".join(lines))
