"""Review-prefix prompts for the VADER task (LFP paper §3.1).

The paper prompts the policy with IMDB reviews longer than 200 characters, truncated to their
first 2-9 tokens (a length drawn per prompt), and the policy writes the rest of the review.
Here: keep the long reviews, put them in a seeded random order, cut review i to its first k_i
tokens of the policy's own tokenizer, and decode those tokens back to text (TRL re-tokenizes
the prompt string itself).

Seed scheme (so train and held-out eval prompts never overlap): one
`np.random.default_rng(seed)` draws first a permutation of all long reviews, then one k per
position of that permutation. Prompts are positions [start, start + n_prompts) of that order,
so training can take [0, n) and evaluation [n, n + m) with the same seed, and a prompt's k
does not depend on how many prompts are asked for.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def review_prompts(texts: Sequence[str], tokenizer, n_prompts: int | None, min_chars: int = 200,
                   prompt_tokens: tuple[int, int] = (2, 9), seed: int = 0, start: int = 0) -> list[str]:
    """`n_prompts` review prefixes of k in [prompt_tokens[0], prompt_tokens[1]] tokens each.

    texts: the review corpus; only texts with more than `min_chars` characters are used.
    n_prompts: how many prompts; None = every long review from `start` on.
    start: offset into the seeded order (module docstring), for held-out slices.
    Deterministic for fixed texts, tokenizer, seed. Raises ValueError, naming min_chars, when
    the corpus has too few long reviews for [start, start + n_prompts).

    Re-tokenizing a decoded prefix gives back the same k tokens for word-level tokenizers and
    almost always for BPE; a rare merge across the cut can make it one token different.
    """
    lo, hi = (int(x) for x in prompt_tokens)
    if not 1 <= lo <= hi:
        raise ValueError(f"prompt_tokens must be (lo, hi) with 1 <= lo <= hi, got {prompt_tokens}")
    long_texts = [t for t in texts if isinstance(t, str) and len(t) > min_chars]
    n_long = len(long_texts)
    stop = n_long if n_prompts is None else start + int(n_prompts)
    if start < 0 or stop > n_long or stop <= start:
        raise ValueError(
            f"need reviews {start}..{stop - 1} of the seeded order, but only {n_long} of {len(texts)} texts are "
            f"longer than min_chars={min_chars} characters; lower min_chars or n_prompts (or use a bigger corpus)"
        )
    rng = np.random.default_rng(seed)
    order = rng.permutation(n_long)  # [n_long] review index at each position
    ks = rng.integers(lo, hi + 1, size=n_long)  # [n_long] prefix length (tokens) at each position
    prompts = []
    for pos in range(start, stop):
        ids = tokenizer(long_texts[order[pos]], add_special_tokens=False)["input_ids"]
        # No special tokens, no clean-up: the prompt is exactly the text those k tokens spell.
        prompts.append(tokenizer.decode(ids[: ks[pos]], skip_special_tokens=True, clean_up_tokenization_spaces=False))
    return prompts
