"""The shared sampling loop (lensflow.core.sampling) against transformers' own generate().

Greedy (top_k=1) must give generate()'s tokens exactly, with left padding, rows ending at different
steps and leaving the batch; sampled tokens must follow generate()'s distribution (its logits
warpers applied to the same logits), checked by frequency over many draws.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

from lensflow.core.sampling import Sampling, draw, sample_batch, sample_texts
from tiny_models import WORDS, tiny_model, tiny_tokenizer

PROMPTS = ["the cat sat on the mat", "a dog", "good film and great plot with a very good actor", "bad"]


def _model(family: str):
    """tiny_models' RoPE models, and GPT-Neo: learned absolute positions, where a row's left padding
    would shift every position if they were not counted from its first real token."""
    if family != "gptneo":
        return tiny_model(family)
    from transformers import GPTNeoConfig, GPTNeoForCausalLM

    torch.manual_seed(0)
    cfg = GPTNeoConfig(vocab_size=len(WORDS) + 4, hidden_size=16, num_layers=2, num_heads=2,
                       attention_types=[[["global", "local"], 1]], window_size=8, max_position_embeddings=64,
                       intermediate_size=32, pad_token_id=0, bos_token_id=2, eos_token_id=3)
    return GPTNeoForCausalLM(cfg).eval()


def _rows(tok, prompts):
    return tok(prompts)["input_ids"]


def _hf_probs(logits: torch.Tensor, temperature: float, top_k: int, top_p: float) -> torch.Tensor:
    scores = TemperatureLogitsWarper(temperature)(None, logits.clone())
    if top_k:
        scores = TopKLogitsWarper(top_k)(None, scores)
    if top_p < 1:
        scores = TopPLogitsWarper(top_p)(None, scores)
    return scores.softmax(-1)


@pytest.mark.parametrize("temperature,top_k,top_p,scale", [
    (1.0, 0, 1.0, 3.0),  # pure sampling
    (1.0, 0, 0.9, 3.0),  # nucleus inside the preselection
    (0.7, 0, 0.95, 0.05),  # nearly flat over 1000 tokens: the nucleus needs the full sort
    (1.0, 50, 0.95, 1.0),  # top-k then top-p (generate()'s default top_k with a top_p)
    (1.3, 5, 1.0, 1.0),
])
def test_draw_follows_generate_distribution(temperature, top_k, top_p, scale):
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 1000, generator=gen) * scale
    want = _hf_probs(logits, temperature, top_k, top_p)  # [2, 1000]
    n = 40_000
    torch.manual_seed(0)
    tokens = draw(logits.repeat_interleave(n, 0), Sampling(8, temperature, top_k, top_p)).view(2, n)
    for row in range(2):
        got = torch.bincount(tokens[row], minlength=1000).double() / n
        assert float(got[want[row] == 0].sum()) == 0.0  # never a token generate() would remove
        # total variation between the empirical and generate()'s distribution: sampling noise only
        tv = 0.5 * float((got - want[row].double()).abs().sum())
        support = int((want[row] > 0).sum())
        assert tv < 0.5 * np.sqrt(support / n) + 0.01, (tv, support)


def test_draw_rejects_bad_settings():
    with pytest.raises(ValueError, match="temperature"):
        Sampling(8, temperature=0)
    with pytest.raises(ValueError, match="top_p"):
        Sampling(8, top_p=0)


@pytest.mark.parametrize("shared", [False, True], ids=["distinct", "shared-prefix"])
@pytest.mark.parametrize("family", ["llama", "gptneox", "gptneo"])
def test_greedy_equals_generate_with_left_padding_and_rows_ending(family, shared):
    model, tok = _model(family), tiny_tokenizer()
    tok.padding_side = "left"
    prompts = PREFIXED if shared else PROMPTS
    enc = tok(prompts, return_tensors="pt", padding=True)
    # the stop ids: tokens the greedy continuations do emit, so rows end at different steps
    ref = model.generate(**enc, do_sample=False, max_new_tokens=12, pad_token_id=0, eos_token_id=None)
    cont = ref[:, enc["input_ids"].shape[1]:]
    stop = [int(cont[0, 3]), int(cont[2, 1])]
    ref = model.generate(**enc, do_sample=False, max_new_tokens=12, pad_token_id=0, eos_token_id=stop)
    want = []
    for row in ref[:, enc["input_ids"].shape[1]:].tolist():
        ends = [i for i, t in enumerate(row) if t in stop]
        want.append(row[: ends[0] + 1] if ends else row)
    got = sample_batch(model, _rows(tok, prompts), Sampling(12, top_k=1), stop)
    assert got == want
    assert len({len(r) for r in got}) > 1  # rows did end at different steps


def test_min_new_tokens_and_max_new_tokens():
    model, tok = tiny_model("llama"), tiny_tokenizer()
    tok.padding_side = "left"
    enc = _rows(tok, PROMPTS)
    first = sample_batch(model, enc, Sampling(6, top_k=1), [])
    stop = [first[0][0], first[1][0], first[2][0], first[3][0]]  # every row's greedy first token
    assert [len(r) for r in sample_batch(model, enc, Sampling(6, top_k=1), stop)] == [1, 1, 1, 1]
    rows = sample_batch(model, enc, Sampling(6, top_k=1, min_new_tokens=3), stop)
    assert all(3 <= len(r) <= 6 for r in rows) and all(t not in stop for r in rows for t in r[:3])


def test_sample_texts_is_seeded_and_restores_the_tokenizer():
    model, tok = tiny_model("llama"), tiny_tokenizer()
    tok.padding_side = "right"

    def run(seed):
        torch.manual_seed(seed)
        return sample_texts(model, tok, PROMPTS, Sampling(8), batch_size=3, device="cpu")

    a, b, c = run(0), run(0), run(1)
    assert a == b and a[0] != c[0]
    assert len(a[0]) == len(PROMPTS) and 0 < a[1] <= 8 * len(PROMPTS)
    assert tok.padding_side == "right"


SHARED = "the film was very good and the story was great but the"  # 12 tokens every prompt starts with
PREFIXED = [f"{SHARED} {tail}" for tail in ("end", "actor was bad", "plot", "scene with a cat and a dog")]


@pytest.mark.parametrize("prompts", [PROMPTS, PREFIXED], ids=["distinct", "shared-prefix"])
@pytest.mark.parametrize("family", ["llama", "gptneox", "gptneo"])
def test_padded_rows_see_what_an_unpadded_forward_sees(family, prompts):
    """Positions start at each row's first real token and the cache carries them on: the logits of
    the last step equal a fresh forward of the row's own prompt + tokens, without padding."""
    model, tok = _model(family), tiny_tokenizer()
    tok.padding_side = "left"
    seen = []
    handle = model.register_forward_hook(lambda m, a, out: seen.append(out.logits[:, -1, :].clone()))
    try:
        new = sample_batch(model, _rows(tok, prompts), Sampling(5, top_k=1), [])
    finally:
        handle.remove()
    # the shared prefix ran once, except through GPT-Neo's local window (8 here), which would see the pads
    assert seen[0].shape[0] == (1 if prompts is PREFIXED and family != "gptneo" else len(prompts))
    for row, prompt in enumerate(prompts):
        ids = tok(prompt, return_tensors="pt")["input_ids"]
        full = torch.cat([ids, torch.tensor([new[row][:-1]])], dim=1)
        want = model(input_ids=full).logits[0, -1]
        torch.testing.assert_close(seen[-1][row], want, rtol=1e-4, atol=1e-5)
