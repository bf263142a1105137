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


MIN_SHARED_PREFIX = 8  # tokens; below this a separate prefix forward is not worth it


def _shared_prefix(rows: list[list[int]]) -> int:
    """Length of the token prefix every row shares, leaving each row at least one token of its own."""
    n = min(len(r) for r in rows) - 1
    first = rows[0]
    for i in range(max(n, 0)):
        if any(r[i] != first[i] for r in rows[1:]):
            return i
    return max(n, 0)


def _window(model) -> int | None:
    """The smallest attention window of a model with local / sliding-window layers (Gemma 2/3,
    Mistral: sliding_window; GPT-Neo: window_size), None where every layer attends globally."""
    cfg = model.config
    sizes = [getattr(cfg, k, None) for k in ("sliding_window", "window_size")]
    sizes = [int(v) for v in sizes if isinstance(v, int) and v > 0]
    return min(sizes) if sizes else None


@torch.inference_mode()
def _prefill(model, rows: list[list[int]], pad_id: int, device, max_new_tokens: int = 0):
    """Run the prompts (token id lists) -> (cache, last logits [b, vocab], attention mask [b, t],
    next position [b]). Rows are left-padded; positions count from each row's first real token.

    A prefix every row shares (a chat template's system turn, an instruction) is run once and its
    KV cache copied to every row: the rows' own tails then follow it after their padding, which the
    mask hides (on the generated-sentence writer the shared prefix is most of each prompt). Not
    where a local attention window could reach the padding between prefix and tail: there the
    pads would take window slots that real tokens hold in an unpadded run.
    """
    shared = _shared_prefix(rows) if len(rows) > 1 else 0
    window = _window(model)
    if window is not None and max(len(r) for r in rows) + max_new_tokens > window:
        shared = 0
    shared = shared if shared >= MIN_SHARED_PREFIX else 0
    tails = [r[shared:] for r in rows]
    width = max(len(t) for t in tails)
    ids = torch.tensor([[pad_id] * (width - len(t)) + t for t in tails], device=device)  # [b, width]
    mask = torch.tensor([[0] * (width - len(t)) + [1] * len(t) for t in tails], device=device)
    extra, cache = _forward_kwargs(model), None
    if shared:
        head = torch.tensor([rows[0][:shared]], device=device)  # [1, shared]
        cache = model(input_ids=head, use_cache=True, **extra).past_key_values
        cache.batch_repeat_interleave(len(rows))
        mask = torch.cat([mask.new_ones(len(rows), shared), mask], dim=1)  # [b, shared + width]
    pos = (mask.cumsum(-1) - 1).clamp_(min=0)[:, -width:]  # [b, width]
    out = model(input_ids=ids, attention_mask=mask, position_ids=pos, past_key_values=cache, use_cache=True,
                **extra)
    return out.past_key_values, out.logits[:, -1, :], mask, pos[:, -1] + 1


@torch.inference_mode()
def sample_batch(model, rows: list[list[int]], sampling: Sampling, stop_ids: list[int], pad_id: int = 0,
                 device="cpu") -> list[list[int]]:
    """New token ids of each prompt (a list of token ids) of one batch, each up to and including its
    first stop id, at most max_new_tokens."""
    cache, logits, mask, next_pos = _prefill(model, rows, pad_id, device, sampling.max_new_tokens)
    stops = torch.tensor(stop_ids, device=logits.device, dtype=torch.long)
    live_rows = torch.arange(len(rows), device=logits.device)  # which prompt each live row is
    new: list[list[int]] = [[] for _ in rows]
    for step in range(sampling.max_new_tokens):
        if step < sampling.min_new_tokens and len(stop_ids):
            logits = logits.clone()
            logits[:, stops] = float("-inf")
        tok = draw(logits, sampling)  # [live]
        for r, t in zip(live_rows.tolist(), tok.tolist()):
            new[r].append(t)
        live = ~torch.isin(tok, stops)  # [live]
        if step + 1 == sampling.max_new_tokens or not live.any():
            break
        if not live.all():  # ended rows leave the batch, and their KV cache rows with them
            keep = live.nonzero().squeeze(1)
            cache.batch_select_indices(keep)
            live_rows, tok, mask, next_pos = live_rows[keep], tok[keep], mask[keep], next_pos[keep]
        mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)  # [live, t + step + 1]
        out = model(input_ids=tok[:, None], attention_mask=mask, position_ids=next_pos[:, None],
                    past_key_values=cache, use_cache=True)
        logits, next_pos = out.logits[:, -1, :], next_pos + 1
    return new


def sample_texts(model, tokenizer, prompts: list[str], sampling: Sampling, *, batch_size: int, device,
                 add_special_tokens: bool = True, stop_ids: list[int] | None = None) -> tuple[list[str], int]:
    """One completion per prompt, in order -> (decoded new text per prompt, tokens generated).

    Batches of `batch_size` prompts, padded on the left (see _prefill); decoded with special
    tokens dropped (the EOS that ended a row among them).
    Tokens generated counts every sampled token, the EOS included. The caller seeds torch.
    """
    stop_ids = eos_ids(model, tokenizer) if stop_ids is None else list(stop_ids)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    rows = tokenizer(list(prompts), add_special_tokens=add_special_tokens)["input_ids"]
    texts, n_new = [], 0
    for lo in range(0, len(rows), batch_size):
        new = sample_batch(model, rows[lo : lo + batch_size], sampling, stop_ids, pad_id, device)
        n_new += sum(len(t) for t in new)
        texts += tokenizer.batch_decode(new, skip_special_tokens=True)
    return texts, n_new
