"""The generated concept data set: an instruct model writes the positive sentences.

ExpertLens had LLMs write its concept sentences; here any materialised causal LM can. Each sample
is one prompt -> one completion -> its first sentence, kept only if it is a complete sentence that
mentions the concept as a whole word (concepts.contains_word) and does not talk about the word
itself (reject_reason says why a sample was dropped; the counts go to the metadata). Prompts of many concepts share a
generate() call (left padding), and rounds repeat for the concepts still short, within a budget of
`max_tries` x n_per_concept samples per concept, so a model that never uses a word cannot loop.
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter

import torch

from .concepts import contains_word

log = logging.getLogger("lensflow")

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
    "cat".') Small models do this often; such sentences would make every concept look alike."""
    low = sentence.lower()
    quoted = re.search(r"[\"\u201c\u2018']" + re.escape(concept.lower()) + r"[\"\u201d\u2019'.,!?]", low)
    talk = [m for m in _META.findall(low) if m not in (concept.lower(), f"the {concept.lower()}")]
    return bool(talk or quoted)


def reject_reason(sentence: str, concept: str, min_chars: int = 20, max_chars: int = 300) -> str | None:
    """Why a first sentence is not a usable positive (None: it is). Checked in this order:
    length, incomplete (no final . ! ?: cut off by max_new_tokens), no_word (the concept is not
    there as a whole word), meta (a sentence about the word itself)."""
    if not min_chars <= len(sentence) <= max_chars:
        return "length"
    if sentence[-1:] not in ".!?":
        return "incomplete"
    if not contains_word(sentence, concept):
        return "no_word"
    if is_meta(sentence, concept):
        return "meta"
    return None


def keep(sentence: str, concept: str, min_chars: int = 20, max_chars: int = 300) -> bool:
    """A usable positive: a sane length, complete, mentions the concept, not about the word."""
    return reject_reason(sentence, concept, min_chars, max_chars) is None


def _prompts(tokenizer, concepts: list[str], template: str) -> tuple[list[str], bool]:
    """Prompt strings per concept, through the chat template when the tokenizer has one.

    Returns (prompts, templated); templated prompts already hold their special tokens (BOS), so
    they must be tokenized with add_special_tokens=False.
    """
    plain = [template.format(concept=c) for c in concepts]
    if not getattr(tokenizer, "chat_template", None):
        return plain, False
    return [tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                          add_generation_prompt=True) for p in plain], True


@torch.inference_mode()
def complete(model, tokenizer, prompts: list[str], templated: bool, max_new_tokens: int, temperature: float,
             top_p: float, batch_size: int, device) -> tuple[list[str], int]:
    """Sample one completion per prompt; returns (decoded new text per prompt, new tokens generated).

    Pads on the left (restored afterwards): with right padding a short prompt's row would continue
    after its pad tokens and produce garbage.
    """
    side, pad = tokenizer.padding_side, tokenizer.pad_token
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    stop_ids = torch.tensor([tokenizer.eos_token_id, tokenizer.pad_token_id], device=device)
    texts, n_new = [], 0
    try:
        for lo in range(0, len(prompts), batch_size):
            enc = tokenizer(prompts[lo : lo + batch_size], return_tensors="pt", padding=True,
                            add_special_tokens=not templated).to(device)
            out = model.generate(**enc, do_sample=True, temperature=temperature, top_p=top_p,
                                 max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id)
            new = out[:, enc["input_ids"].shape[1]:]  # [b, <= max_new_tokens]: left padding aligns prompt ends
            # real tokens of a row: up to and including its first stop token (EOS, or the pad after it)
            stop = torch.isin(new, stop_ids).long()  # [b, t]
            n_new += int(((stop.cumsum(1) - stop) == 0).sum())
            texts += tokenizer.batch_decode(new, skip_special_tokens=True)
    finally:
        tokenizer.padding_side, tokenizer.pad_token = side, pad
    return texts, n_new


def generate_sentences(model, tokenizer, concepts: list[str], n_per_concept: int,
                       prompt_template: str = DEFAULT_PROMPT, max_new_tokens: int = 32,
                       temperature: float = 1.0, top_p: float = 0.95, batch_size: int = 32, seed: int = 0,
                       device="cpu", max_tries: int = 4, min_chars: int = 20, max_chars: int = 300,
                       stats: dict | None = None) -> dict[str, list[str]]:
    """concept -> up to n_per_concept distinct generated sentences mentioning it.

    Round r reseeds torch with seed + r and asks each unfinished concept for the samples it still
    lacks divided by the keep rate so far (clipped to [0.25, 1]; round 0 asks exactly n_per_concept),
    never more than its remaining budget of max_tries * n_per_concept. Asking for the expected
    number up front means fewer, fuller rounds; on CPU a half-empty tail round costs nearly a full
    one. Same seed, model, device and batch size -> same sentences. `stats`, if given, is filled
    with samples / kept / new_tokens / rounds counts and `rejected` (reason -> count, see
    reject_reason; plus "duplicate" and "surplus") for logging and metadata.
    """
    texts, templated = _prompts(tokenizer, concepts, prompt_template)
    prompt = dict(zip(concepts, texts))
    got: dict[str, dict[str, None]] = {c: {} for c in concepts}  # ordered sets
    budget = {c: max_tries * n_per_concept for c in concepts}
    st = {"samples": 0, "kept": 0, "new_tokens": 0, "rounds": 0, "rejected": Counter()}
    for r in range(max_tries * n_per_concept):  # every round spends >= 1 sample of some budget
        rate = min(1.0, max(0.25, st["kept"] / st["samples"])) if st["samples"] else 1.0
        ask = [(c, min(math.ceil((n_per_concept - len(got[c])) / rate), budget[c])) for c in concepts]
        ask = [(c, k) for c, k in ask if k > 0 and len(got[c]) < n_per_concept]
        if not ask:
            break
        order = [c for c, k in ask for _ in range(k)]
        torch.manual_seed(seed + r)
        texts, n_new = complete(model, tokenizer, [prompt[c] for c in order], templated, max_new_tokens,
                                temperature, top_p, batch_size, device)
        for c, text in zip(order, texts):
            budget[c] -= 1
            s = first_sentence(text)
            why = reject_reason(s, c, min_chars, max_chars) or ("duplicate" if s in got[c] else None)
            if why:
                st["rejected"][why] += 1
            elif len(got[c]) < n_per_concept:
                got[c][s] = None
                st["kept"] += 1
            else:  # good, but the concept is full (over-asking)
                st["rejected"]["surplus"] += 1
        st["samples"] += len(order)
        st["new_tokens"] += n_new
        st["rounds"] += 1
        log.info("generation round %d: %d samples, %d/%d concepts complete, rejected so far %s", r,
                 len(order), sum(len(v) >= n_per_concept for v in got.values()), len(concepts),
                 dict(st["rejected"]))
    if stats is not None:
        stats.update(st, rejected=dict(st["rejected"]))
    return {c: list(v) for c, v in got.items()}

