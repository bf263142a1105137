"""Sampling completions from a causal LM in left-padded batches: the one sampling loop of every stage
(ExpertLens' generated sentences, the synthetic preference pairs, RL evaluation, the ablation).

Why not `model.generate()`: on a CPU it spends time where no sample comes from.
- A row that has ended (EOS) stays in the batch until the longest row ends; here it leaves the
  batch, and its rows of the KV cache are dropped (on the generated-sentence job about a third of
  the decode steps were such rows: 19.8 real tokens per row of 28).
- generate() draws a token with torch.multinomial, one exponential random number per vocabulary
  entry per row per step (~60 ms a step for 64 rows x 49k tokens on one core); here one uniform
  number per row against the cumulative distribution of the kept tokens, and top-p looks at the
  top PRESELECT tokens first, sorting the whole vocabulary only for rows whose top tokens hold less
  than top_p of the mass.
The distribution is generate()'s (temperature, then top-k, then top-p, as transformers'
TemperatureLogitsWarper / TopKLogitsWarper / TopPLogitsWarper, and min_new_tokens as its
MinNewTokensLengthLogitsProcessor); the random numbers are not, so samples differ from generate()'s
ones for the same seed. Same seed, model, prompts, device and batch size -> same samples.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch

PRESELECT = 256  # top-p looks at this many tokens first (the nucleus of a trained LM is usually far smaller)


@dataclass(frozen=True)
class Sampling:
    """How tokens are drawn. top_k 0: no top-k; top_p 1.0: no nucleus; temperature > 0."""

    max_new_tokens: int
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    min_new_tokens: int = 0

    def __post_init__(self):
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0 (got {self.temperature}); use top_k=1 for greedy")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")


def eos_ids(model, tokenizer) -> list[int]:
    """Every id that ends a completion: the tokenizer's EOS and the model's generation_config ones."""
    ids = model.generation_config.eos_token_id
    ids = [] if ids is None else [ids] if isinstance(ids, int) else list(ids)
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids = [tokenizer.eos_token_id, *ids]
    return ids


def _pick(probs: torch.Tensor) -> torch.Tensor:
    """One index per row of unnormalised probabilities [b, n], by inverse CDF -> [b]."""
    cdf = probs.cumsum(-1)  # [b, n]
    u = torch.rand(probs.shape[0], 1, device=probs.device, dtype=cdf.dtype) * cdf[:, -1:]
    return torch.searchsorted(cdf, u, right=True).squeeze(1).clamp_(max=probs.shape[1] - 1)


def _nucleus(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Zero what top-p removes from descending-sorted probabilities [b, n] (summing to 1 over the
    whole distribution): a token stays while the mass before it is < top_p (the first always stays)."""
    before = probs.cumsum(-1) - probs  # [b, n]
    return probs.masked_fill(before >= top_p, 0.0)


def draw(logits: torch.Tensor, sampling: Sampling) -> torch.Tensor:
    """Next tokens [b] from the last position's logits [b, vocab] (float)."""
    logits = logits.float() / sampling.temperature
    vocab = logits.shape[-1]
    if sampling.top_k > 0:  # nucleus within the top k, renormalised there (as generate)
        vals, idx = logits.topk(min(sampling.top_k, vocab), dim=-1)  # [b, k], descending
        probs = vals.softmax(-1)
        if sampling.top_p < 1:
            probs = _nucleus(probs, sampling.top_p)
        return idx.gather(1, _pick(probs)[:, None]).squeeze(1)
    if sampling.top_p >= 1:  # pure sampling over the whole vocabulary
        return _pick(logits.softmax(-1))
    vals, idx = logits.topk(min(PRESELECT, vocab), dim=-1)  # [b, PRESELECT]
    probs = (vals - logits.logsumexp(-1, keepdim=True)).exp()  # true probabilities, descending
    full = probs.sum(-1) < sampling.top_p  # rows whose nucleus reaches past the preselection
    if full.any():  # sort those rows' whole vocabulary (same rule, just more tokens)
        p_all, i_all = logits[full].softmax(-1).sort(dim=-1, descending=True)
        tok_full = i_all.gather(1, _pick(_nucleus(p_all, sampling.top_p))[:, None]).squeeze(1)
    tokens = idx.gather(1, _pick(_nucleus(probs, sampling.top_p))[:, None]).squeeze(1)
    if full.any():
        tokens[full] = tok_full
    return tokens


def _forward_kwargs(model) -> dict:
    """logits_to_keep=1 where the model takes it: the prefill then projects only the last position
    onto the vocabulary (the LM head is a fifth of a 135M model's FLOPs)."""
    return {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(model.forward).parameters else {}


@torch.inference_mode()
def sample_batch(model, enc: dict, sampling: Sampling, stop_ids: list[int]) -> list[list[int]]:
    """New token ids of each row of one left-padded batch `enc` (input_ids, attention_mask on the
    model's device), each up to and including its first stop id, at most max_new_tokens."""
    ids, mask = enc["input_ids"], enc["attention_mask"]  # [b, t]
    b = ids.shape[0]
    stops = torch.tensor(stop_ids, device=ids.device, dtype=ids.dtype)
    pos = (mask.long().cumsum(-1) - 1).clamp_(min=0)  # [b, t]: pads on the left do not count
    extra = _forward_kwargs(model)
    out = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, **extra)
    cache, logits = out.past_key_values, out.logits[:, -1, :]  # [b, vocab]
    rows = torch.arange(b, device=ids.device)  # which prompt each live row is
    next_pos = pos[:, -1] + 1  # [b]
    new: list[list[int]] = [[] for _ in range(b)]
    for step in range(sampling.max_new_tokens):
        if step < sampling.min_new_tokens and len(stop_ids):
            logits = logits.clone()
            logits[:, stops] = float("-inf")
        tok = draw(logits, sampling)  # [live]
        for r, t in zip(rows.tolist(), tok.tolist()):
            new[r].append(t)
        live = ~torch.isin(tok, stops)  # [live]
        if step + 1 == sampling.max_new_tokens or not live.any():
            break
        if not live.all():  # ended rows leave the batch, and their KV cache rows with them
            keep = live.nonzero().squeeze(1)
            cache.batch_select_indices(keep)
            rows, tok, mask, next_pos = rows[keep], tok[keep], mask[keep], next_pos[keep]
        mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)  # [live, t + step + 1]
        out = model(input_ids=tok[:, None], attention_mask=mask, position_ids=next_pos[:, None],
                    past_key_values=cache, use_cache=True)
        logits, next_pos = out.logits[:, -1, :], next_pos + 1
    return new


def sample_texts(model, tokenizer, prompts: list[str], sampling: Sampling, *, batch_size: int, device,
                 add_special_tokens: bool = True, stop_ids: list[int] | None = None) -> tuple[list[str], int]:
    """One completion per prompt, in order -> (decoded new text per prompt, tokens generated).

    Batches of `batch_size` prompts, padded on the left (the tokenizer's side and pad token are
    restored afterwards); decoded with special tokens dropped (the EOS that ended a row among them).
    Tokens generated counts every sampled token, the EOS included. The caller seeds torch.
    """
    stop_ids = eos_ids(model, tokenizer) if stop_ids is None else list(stop_ids)
    side, pad = tokenizer.padding_side, tokenizer.pad_token
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    texts, n_new = [], 0
    try:
        for lo in range(0, len(prompts), batch_size):
            enc = tokenizer(list(prompts[lo : lo + batch_size]), return_tensors="pt", padding=True,
                            add_special_tokens=add_special_tokens).to(device)
            new = sample_batch(model, enc, sampling, stop_ids)
            n_new += sum(len(t) for t in new)
            texts += tokenizer.batch_decode(new, skip_special_tokens=True)
    finally:
        tokenizer.padding_side, tokenizer.pad_token = side, pad
    return texts, n_new
