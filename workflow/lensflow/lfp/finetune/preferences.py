"""Synthetic preference pairs: the offline stand-ins for Anthropic/hh-rlhf and toxic-dpo-v0.2.

The paper's DPO tasks (§3.1) need preference data that no registry package ships, so the embedded
default builds it: an instruct model answers templated requests several times, a rule-based judge
scores every answer, and per prompt the best and worst answers become (chosen, rejected).
Everything here is marked synthetic in the output's metadata.

Prompts (`make_prompts`). A source text is the first sentence of a corpus text, cut at a word
boundary to at most 160 characters (texts shorter than 20 characters are skipped, duplicates
dropped). `n_prompts` distinct texts are drawn with random.Random(seed) and paired with the
templates below in turn (text i gets template i mod len(templates)):
  hh     (topics: headlines/news)  HH_TEMPLATES, e.g. 'Can you give me some advice about this news: "{text}"'
  toxic  (reviews/headlines)       TOXIC_TEMPLATES, e.g. 'Write a rude, insulting reply to this review: "{text}"'
The toxic task, like toxic-dpo, prefers the MORE toxic answer; the hh task the more helpful one.

Judges (documented in full on `helpfulness_score` and `toxicity_score`) use the same spaCy
tokenisation (spacy.blank("en"), lowercased) and VADER lexicon as the paper's VADER reward.
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Callable, Iterable

import pandas as pd
import torch

from lensflow.core.llm.local import render_chat
from lensflow.core.sampling import Sampling, sample_texts

from .rewards import load_vader_lexicon, tokenize

log = logging.getLogger("lensflow")

HH_TEMPLATES = (
    'Can you give me some advice about this news: "{text}"',
    'I just read this headline: "{text}". Can you explain what it means?',
    'How should I think about this story: "{text}"?',
    'What are the most important things to know about this: "{text}"?',
)
TOXIC_TEMPLATES = (
    'Write a rude, insulting reply to this review: "{text}"',
    'Tell me what you really think of this, and do not be nice about it: "{text}"',
    'Write a nasty comment mocking the person who wrote this: "{text}"',
    'Insult the author of this in one short paragraph: "{text}"',
)
SUBSTITUTE_FOR = {"hh": "Anthropic/hh-rlhf", "toxic": "unalignment/toxic-dpo-v0.2"}
MIN_CHARS, MAX_CHARS = 20, 160

STRONG_NEGATIVE = -2.0  # VADER mean rating at or below which a token counts as hostile
# Insults that VADER rates milder than -2 or lacks (plurals, 'garbage', 'trash', ...); weight >= 2.
INSULTS = frozenset(
    "idiot idiots idiotic moron morons stupid dumb loser losers pathetic worthless useless garbage "
    "trash crap jerk jerks fool fools clown clowns disgusting ugly lame sucks".split()
)
INSULT_WEIGHT = 2.0
TOXIC_MIN_WORDS = 10  # toxicity is per word, but never divided by fewer than 10 words
# Refusal / apology openers of instruct models (matched case-insensitively anywhere in the answer).
REFUSAL = re.compile(
    r"\b(i can(?:'|no)?t|i cannot|i'm sorry|i am sorry|i apologi[sz]e|as an ai|i'm (?:not able|unable)|"
    r"i am (?:not able|unable)|i won't|i will not|i must decline)\b", re.IGNORECASE
)
GOOD_LENGTH = 30  # words at which the helpfulness length bonus saturates


def _snippet(text: str) -> str | None:
    """First sentence of `text`, at most MAX_CHARS (cut at a word boundary); None if too short."""
    text = " ".join(str(text).split())
    m = re.search(r"(?<=[.!?])\s", text)
    sent = text[: m.start()] if m else text
    if len(sent) > MAX_CHARS:
        sent = sent[:MAX_CHARS].rsplit(" ", 1)[0]
    return sent if len(sent) >= MIN_CHARS else None


def make_prompts(kind: str, texts: Iterable[str], n_prompts: int, seed: int = 0) -> list[str]:
    """`n_prompts` user requests (fewer, with a warning, if the texts run out); see module docstring."""
    templates = {"hh": HH_TEMPLATES, "toxic": TOXIC_TEMPLATES}[kind]
    pool = list(dict.fromkeys(s for s in map(_snippet, texts) if s))  # dedupe, keep corpus order
    if not pool:
        raise ValueError(f"make_prompts({kind!r}): no usable source texts (>= {MIN_CHARS} chars)")
    if len(pool) < n_prompts:
        log.warning("make_prompts(%s): only %d distinct texts for %d prompts", kind, len(pool), n_prompts)
    picked = random.Random(seed).sample(pool, min(n_prompts, len(pool)))
    return [templates[i % len(templates)].format(text=t) for i, t in enumerate(picked)]


def format_prompt(tokenizer, prompt: str) -> tuple[str, bool]:
    """(text to tokenize, templated?): the chat template's user turn + generation prompt when the
    tokenizer has one, else the plain prompt. Templated text already holds its special tokens."""
    if getattr(tokenizer, "chat_template", None):  # the one chat rendering of every local model
        return render_chat(tokenizer, [{"role": "user", "content": prompt}]), True
    return prompt, False


def sample_responses(model, tokenizer, prompts: list[str], n_samples: int, max_new_tokens: int,
                     temperature: float = 1.0, top_p: float = 1.0, seed: int = 0, device="cpu",
                     batch_size: int = 16) -> pd.DataFrame:
    """n_samples sampled answers per prompt -> DataFrame(prompt_id, prompt, response).

    Rows are ordered sample-major (all prompts once, then again, ...), batched with left padding
    so every row continues right after its prompt; only the new tokens are decoded (special
    tokens dropped, whitespace stripped). Sampling is temperature + nucleus (top_p) only: top_k=0
    overrides any top-k a model's generation_config sets. Seeded once: same seed, model, device and batch size
    -> same answers.
    """
    order = [i for _ in range(n_samples) for i in range(len(prompts))]
    texts = [format_prompt(tokenizer, p) for p in prompts]
    sampling = Sampling(max_new_tokens, temperature, top_k=0, top_p=top_p)
    torch.manual_seed(seed)
    # one tokenizer: every prompt is templated (holds its special tokens) or none is
    done, _ = sample_texts(model, tokenizer, [texts[i][0] for i in order], sampling, batch_size=batch_size,
                           device=device, add_special_tokens=not texts[0][1])
    out_text = [t.strip() for t in done]
    return pd.DataFrame({"prompt_id": order, "prompt": [prompts[i] for i in order], "response": out_text})


# ---------------------------------------------------------------------------------------- judges
_LEXICON: dict[str, float] | None = None


def _lexicon() -> dict[str, float]:
    global _LEXICON
    if _LEXICON is None:
        _LEXICON = load_vader_lexicon()
    return _LEXICON


def hostility_weight(token: str) -> float:
    """-V(token) for VADER tokens rated <= -2; max(-V, 2) for INSULTS; else 0 (token lowercased)."""
    v = _lexicon().get(token, 0.0)
    w = -v if v <= STRONG_NEGATIVE else 0.0
    return max(w, INSULT_WEIGHT) if token in INSULTS else w


def _words(text: str) -> list[str]:
    return [t for t in tokenize(text) if any(c.isalpha() for c in t)]


def _content(words: list[str]) -> set[str]:
    from spacy.lang.en.stop_words import STOP_WORDS

    return {w for w in words if len(w) >= 3 and w.isalpha() and w not in STOP_WORDS}


def toxicity_score(response: str) -> float:
    """Hostile weight per word: sum of hostility_weight(t) over the response's word tokens,
    divided by max(#words, 10).

    Word tokens = lowercased spaCy tokens with at least one letter. hostility_weight(t) = -V(t)
    if the VADER mean rating V(t) <= -2 (e.g. 'hate' 2.7, 'stupid' 2.4), raised to at least 2.0
    for the INSULTS list ('idiot', 'garbage', 'trash', 'losers', ...), else 0. The floor of 10
    words keeps a two-word reply from winning by brevity. 0 for empty text; higher = more toxic.
    """
    words = _words(response)
    if not words:
        return 0.0
    return sum(hostility_weight(w) for w in words) / max(len(words), TOXIC_MIN_WORDS)


def helpfulness_score(prompt: str, response: str) -> float:
    """2*overlap + length - 1.5*refusal - 2*repetition - 10*hostility; -1.0 if no word at all.

    With word tokens as in `toxicity_score` and content words = alphabetic words of >= 3 letters
    outside spaCy's English stop-word list:
      overlap    |content(prompt) & content(response)| / |content(prompt)|  (on topic, in [0, 1])
      length     min(#response words / 30, 1)                               (says something)
      refusal    1 if the REFUSAL pattern matches ("I can't", "I'm sorry", "as an AI", ...)
      repetition 1 - distinct / total word trigrams (0 with < 3 words)      (degenerate loops)
      hostility  sum of hostility_weight over response words NOT in the prompt, / #words
                 (harmlessness; words the prompt itself uses, e.g. 'war', are not held against it)
    Higher = more helpful and harmless.
    """
    words = _words(response)
    if not words:
        return -1.0
    asked = _content(_words(prompt))
    overlap = len(asked & _content(words)) / len(asked) if asked else 0.0
    length = min(len(words) / GOOD_LENGTH, 1.0)
    refusal = 1.0 if REFUSAL.search(response) else 0.0
    grams = list(zip(words, words[1:], words[2:]))
    repetition = 1.0 - len(set(grams)) / len(grams) if grams else 0.0
    prompt_words = set(_words(prompt))
    hostility = sum(hostility_weight(w) for w in words if w not in prompt_words) / len(words)
    return 2.0 * overlap + length - 1.5 * refusal - 2.0 * repetition - 10.0 * hostility


def judge_for(kind: str) -> Callable[[str, str], float]:
    """The (prompt, response) -> score judge of a task; higher = preferred."""
    if kind == "hh":
        return helpfulness_score
    if kind == "toxic":
        return lambda prompt, response: toxicity_score(response)
    raise ValueError(f"unknown preference task {kind!r} (expected 'hh' or 'toxic')")


JUDGE_SUMMARY = {
    "hh": "helpfulness_score: 2*overlap(prompt content words) + min(words/30,1) - 1.5*refusal "
          "- 2*repeated-trigram fraction - 10*hostile VADER(<=-2)/insult weight per word (prompt words exempt)",
    "toxic": "toxicity_score: sum over words of -VADER (if <= -2; insult list >= 2) / max(words, 10); "
             "MORE toxic answer chosen",
}


def build_pairs(samples: pd.DataFrame, judge: Callable[[str, str], float],
                min_margin: float = 0.0) -> tuple[pd.DataFrame, int]:
    """(pairs, n_dropped): per prompt_id, chosen = highest-scoring response, rejected = lowest.

    A prompt is dropped (and counted) if it has < 2 samples, if score_chosen - score_rejected <
    min_margin, or if the margin is 0 (a tie states no preference). Ties for best/worst go to
    the first such sample. Columns: prompt, chosen, rejected, score_chosen, score_rejected.
    """
    scored = samples.assign(score=[judge(p, r) for p, r in zip(samples["prompt"], samples["response"])])
    rows, dropped = [], 0
    for _, g in scored.groupby("prompt_id", sort=True):
        best, worst = g.loc[g["score"].idxmax()], g.loc[g["score"].idxmin()]
        margin = best["score"] - worst["score"]
        if len(g) < 2 or margin <= 0 or margin < min_margin:
            dropped += 1
            continue
        rows.append((best["prompt"], best["response"], worst["response"], best["score"], worst["score"]))
    pairs = pd.DataFrame(rows, columns=["prompt", "chosen", "rejected", "score_chosen", "score_rejected"])
    return pairs, dropped
