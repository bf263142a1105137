"""The measures of the ExpertLens causal check (lensflow.expertlens.causal.check): how likely the
model is to produce the concept word after a prompt.

  concept_probability  exact P(" word" | prompt), the product of the word's sub-token conditional
                       probabilities, teacher-forced in one batched forward. No sampling noise.
  generation_rate      selfcond's measure: the fraction of sampled continuations that contain the
                       word as a whole word (case-insensitive). Noisy, but it is what was reported.
"""

from __future__ import annotations

import re

import numpy as np
import torch


def word_ids(tokenizer, word: str) -> list[int]:
    """Token ids of " word" (leading space: the word as it follows a prompt mid-sentence)."""
    ids = tokenizer(" " + word, add_special_tokens=False).input_ids
    if not ids:
        raise ValueError(f"word {word!r} tokenizes to nothing")
    return ids


@torch.inference_mode()
def concept_logprob(model, tokenizer, prompts: list[str], word: str, device="cpu",
                    batch_size: int = 32) -> np.ndarray:
    """log P(" word" | prompt) per prompt [n_prompts], float64.

    Sequences prompt + word are right-padded, so each row's real tokens keep positions 0..L-1;
    the logits at positions len(prompt)-1 .. len(prompt)+m-2 predict the m word tokens.
    """
    target = word_ids(tokenizer, word)
    m = len(target)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    out = np.empty(len(prompts), dtype=np.float64)
    for start in range(0, len(prompts), batch_size):
        chunk = [tokenizer(p).input_ids for p in prompts[start:start + batch_size]]
        lengths = torch.tensor([len(c) for c in chunk])  # [b]
        width = int(lengths.max()) + m
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)  # [b, width]
        mask = torch.zeros_like(ids)
        for i, c in enumerate(chunk):
            ids[i, :len(c) + m] = torch.tensor(c + target)
            mask[i, :len(c) + m] = 1
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits  # [b, width, vocab]
        pos = (lengths - 1)[:, None] + torch.arange(m)[None, :]  # [b, m] positions predicting the word
        logp = torch.log_softmax(logits.float(), dim=-1)  # [b, width, vocab]
        picked = logp[torch.arange(len(chunk))[:, None], pos.to(device), torch.tensor(target, device=device)[None, :]]
        out[start:start + len(chunk)] = picked.double().sum(dim=1).cpu().numpy()  # [b]
    return out


def concept_probability(model, tokenizer, prompts: list[str], word: str, device="cpu",
                        batch_size: int = 32) -> np.ndarray:
    """P(" word" | prompt) per prompt [n_prompts]: product of the sub-tokens' conditional probabilities."""
    return np.exp(concept_logprob(model, tokenizer, prompts, word, device, batch_size))


def contains_word(text: str, word: str) -> bool:
    """Whole-word, case-insensitive match ("cat" in "The Cat." but not in "cats" or "concat")."""
    return re.search(rf"(?<!\w){re.escape(word)}(?!\w)", text, flags=re.IGNORECASE) is not None


@torch.inference_mode()
def generate_samples(model, tokenizer, prompts: list[str], max_new_tokens: int = 20, n_samples: int = 10,
                     seed: int = 0, device="cpu", batch_size: int = 256, top_p: float = 1.0) -> list[list[str]]:
    """n_samples sampled continuations per prompt (texts of the new tokens only).

    Plain ancestral sampling (temperature 1, no top-k; top_p=1 unless asked), so the rate estimates
    the model's own distribution. Rows are left-padded by hand (the tokenizer's padding side is left
    alone). The RNG is forked and seeded, so a call is deterministic given the seed and batch_size
    and does not disturb the caller's random state. Keep batch_size >= n_prompts * n_samples where
    memory allows: on CPU each decoding step has a large fixed cost, so one batch of 200 rows took
    half the CPU time of four batches of <= 64 (SmolLM2-135M).
    """
    from transformers import GenerationConfig

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    eos = model.generation_config.eos_token_id
    eos = tokenizer.eos_token_id if eos is None else eos
    cfg = GenerationConfig(do_sample=True, max_new_tokens=max_new_tokens, temperature=1.0, top_k=0, top_p=top_p,
                           pad_token_id=pad, eos_token_id=eos)
    rows = [(i, tokenizer(p).input_ids) for i, p in enumerate(prompts) for _ in range(n_samples)]
    texts: list[list[str]] = [[] for _ in prompts]
    devices = [device] if torch.device(device).type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        for start in range(0, len(rows), batch_size):
            chunk = rows[start:start + batch_size]
            width = max(len(ids) for _, ids in chunk)
            ids = torch.full((len(chunk), width), pad, dtype=torch.long)  # [b, width], left padded
            mask = torch.zeros_like(ids)
            for r, (_, c) in enumerate(chunk):
                ids[r, width - len(c):] = torch.tensor(c)
                mask[r, width - len(c):] = 1
            out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), generation_config=cfg)
            new = tokenizer.batch_decode(out[:, width:], skip_special_tokens=True)  # [b] texts
            for (i, _), text in zip(chunk, new):
                texts[i].append(text)
    return texts


def generation_rate(model, tokenizer, prompts: list[str], word: str, max_new_tokens: int = 20,
                    n_samples: int = 10, seed: int = 0, device="cpu", batch_size: int = 256,
                    top_p: float = 1.0) -> np.ndarray:
    """Per prompt [n_prompts], the fraction of n_samples continuations containing the word."""
    texts = generate_samples(model, tokenizer, prompts, max_new_tokens, n_samples, seed, device, batch_size, top_p)
    return np.array([np.mean([contains_word(t, word) for t in ts]) for ts in texts])
