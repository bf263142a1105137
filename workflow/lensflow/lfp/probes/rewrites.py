"""Contrastive triples for the hh / toxic tasks from an instruct LLM's rewrites (paper §3.3).

The paper had LLaMA-3-8B rewrite test entries of Anthropic-HH-RLHF into a positive, a neutral and
a negative version. Here any client with `complete(messages) -> str` does it (lensflow.lfp.validation.explanations's
OpenAIClient for an OpenAI-compatible endpoint such as a vLLM server, or LocalClient for a local
instruct model; both cache every answer on disk). Each entry is the user's prompt and the answer
the preference data chose; the LLM rewrites that answer three times, one request per style, and
the triple keeps the prompt fixed, so its elements differ only in the answer.

Simplification, documented: the paper first grades each entry 1-5 for toxicity, danger and bias
and writes the rewrites "based on the grading"; here every entry gets all three rewrites. A triple
whose rewrites come back empty (or identical to another element) is dropped and counted.
"""

from __future__ import annotations

import logging
import random
import re

import numpy as np

from ..sae.task_texts import exchange
from .triples import POLARITIES, triples_frame

log = logging.getLogger("lensflow")

# The style of each rewrite in hh terms; toxic swaps positive and negative (toxicity is rewarded).
STYLES = {
    "positive": "helpful, honest and harmless: it answers the user kindly and usefully",
    "neutral": "neutral: it neither helps nor harms, a short plain reply without opinion or emotion",
    "negative": "harmful: rude, toxic and dismissive towards the user, with insults",
}
SYSTEM = ("You rewrite an AI assistant's reply to a user for a research data set on reward models. "
          "Keep the topic and roughly the length of the original reply; change only its tone and "
          "helpfulness as asked. Reply with the rewritten assistant reply only, no preamble.")
MAX_CHARS = 600


def rewrite_messages(prompt: str, answer: str, style: str) -> list[dict]:
    """The chat request for one rewrite of `answer` (to `prompt`) in `style` (a key of STYLES)."""
    return [{"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"{exchange(prompt, answer)}\n\n"
                                        f"Rewrite the assistant's reply so that it is {STYLES[style]}."}]


def clean_rewrite(text: str) -> str:
    """The rewritten reply without a lead-in label, surrounding quotes or extra whitespace."""
    text = " ".join(str(text).split())
    text = re.sub(r"^(here is|here's)[^:]{0,60}:\s*", "", text, flags=re.I)
    text = re.sub(r"^(rewritten (assistant )?reply|assistant)\s*:\s*", "", text, flags=re.I)
    return text.strip().strip("\"'“”").strip()[:MAX_CHARS]


def llm_rewrite_triples(entries: list[tuple[str, str]], kind: str, n_triples: int, client,
                        seed: int = 0) -> tuple:
    """Up to `n_triples` rewrite triples from (prompt, answer) entries: (DataFrame, n_dropped).

    Entries are drawn with random.Random(seed); each gives exchange(prompt, rewrite) ("User: ...\\nAssistant: ...")
    per polarity (hh: positive = helpful; toxic: positive = harmful). Rows are not synthetic (they
    are the paper's construction); word None, word_value NaN, span -1/-1, source_text_id = index
    into `entries`. A triple with an empty or duplicated element is dropped (n_dropped).
    """
    if kind not in ("hh", "toxic"):
        raise ValueError(f"unknown rewrite task {kind!r} (expected 'hh' or 'toxic')")
    if not entries:
        raise ValueError("llm_rewrite_triples: no entries")
    rng = random.Random(seed)
    order = rng.sample(range(len(entries)), len(entries))
    rows, dropped, tid = [], 0, 0
    for eid in order:
        if tid >= n_triples:
            break
        prompt, answer = (str(x) for x in entries[eid])  # exchange() tidies whitespace turn by turn
        styles = {p: p for p in POLARITIES}
        if kind == "toxic":
            styles["positive"], styles["negative"] = "negative", "positive"
        texts = {p: clean_rewrite(client.complete(rewrite_messages(prompt, answer, s))) for p, s in styles.items()}
        if not all(texts.values()) or len(set(texts.values())) < 3:
            dropped += 1
            continue
        for polarity in POLARITIES:
            rows.append((tid, polarity, exchange(prompt, texts[polarity]), -1, -1, None, np.nan, eid, False))
        tid += 1
    if dropped:
        log.warning("%d entries dropped: an empty or duplicated rewrite", dropped)
    return triples_frame(rows), dropped
