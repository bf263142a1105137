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

split_prompts splits an RL task's held-out evaluation prompts off the corpus first and gives
training its prompts from what is left (rl trains on them, rl_eval evaluates on the held-out ones).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lensflow.core.config_checks import rl_prompt_shortfall
from lensflow.core.splits import content_sha256


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


@dataclass(frozen=True)
class PromptSplit:
    """The VADER task's prompts, split before training: `heldout` only for evaluation, `train` for
    the policy. `sizes` is the record both the training and the evaluation outputs carry."""

    heldout: list[str]
    train: list[str]
    sizes: dict


def split_prompts(texts, tokenizer, n_heldout: int, n_train: int | None, *, min_train: int, min_chars: int,
                  prompt_tokens, seed: int, task: str) -> PromptSplit:
    """Held-out evaluation prompts and training prompts of an RL task, from one review corpus.

    Reviews are deduplicated by content (a repeated review would otherwise sit on both sides) and
    put in review_prompts' seeded order. Positions [0, n_heldout) are the held-out prompts,
    fixed first, so they do not depend on how many prompts training then takes (max_steps <= 0
    takes all the rest). Training takes the following positions, n_train of them (None: all),
    skipping any prompt whose text equals a held-out one (different reviews can open with the same
    words); the skipped count is in `sizes`. Training (lfp_rl) and evaluation (rl_eval) both call
    this, so the evaluation's prompts are exactly the ones training left alone.

    Raises ValueError naming the config keys when the corpus cannot supply n_heldout held-out and
    n_train (None: at least min_train, one batch) training prompts: for hub data the size is known
    only here, at the first job that reads it (config_checks.finetune_problems checks max_rows before).
    """
    unique = list(dict.fromkeys(t for t in texts if isinstance(t, str)))
    n_long = sum(len(t) > min_chars for t in unique)
    kw = dict(min_chars=min_chars, prompt_tokens=tuple(prompt_tokens), seed=seed)

    def short(have: str) -> ValueError:
        return ValueError(rl_prompt_shortfall(task, have, n_heldout, n_train, min_train, min_chars))

    if n_long < n_heldout + (n_train or min_train):
        raise short(f"the review table has {n_long} distinct reviews that long ({len(texts)} rows)")
    heldout = review_prompts(unique, tokenizer, n_heldout, **kw)
    train, end, dropped = _train_part(unique, tokenizer, n_heldout, n_long, n_train, set(heldout), kw)
    if len(train) < (n_train or min_train):
        raise short(f"after the held-out part only {len(train)} training prompts are left ({dropped} more were "
                    f"the same text as a held-out prompt; the table has {n_long} distinct reviews that long)")
    sizes = {"n_texts": len(texts), "n_unique_long": n_long, "n_heldout": n_heldout, "n_train": len(train),
             "n_train_dropped_as_heldout": dropped, "n_unused": n_long - end,
             "heldout_sha256": content_sha256(heldout)}
    return PromptSplit(heldout, train, sizes)


def _train_part(unique, tokenizer, start: int, n_long: int, n_train: int | None, heldout: set, kw: dict):
    """(training prompts, first position not looked at, prompts skipped as held-out texts): positions
    from `start` on, until n_train are kept (None: to the end). Tokenizes only what it needs, so a
    short run does not pay for the whole corpus."""
    train, pos, dropped = [], start, 0
    while pos < n_long and (n_train is None or len(train) < n_train):
        take = n_long - pos if n_train is None else min(n_train - len(train), n_long - pos)
        chunk = review_prompts(unique, tokenizer, take, start=pos, **kw)
        pos += take
        kept = [p for p in chunk if p not in heldout]
        train += kept
        dropped += len(chunk) - len(kept)
    return train, pos, dropped
