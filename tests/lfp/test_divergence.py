"""Layer divergence on tiny random models, checked against a direct recomputation."""

import pandas as pd
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from lensflow.lfp.finetune.divergence import block_index, layer_divergence, select_layers

N_LAYERS = 4


def tiny_llama(seed=0):
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=32,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=N_LAYERS,
        num_attention_heads=2,
        num_key_value_heads=2,
    )
    return LlamaForCausalLM(cfg)


@pytest.fixture()
def models():
    base, tuned = tiny_llama(), tiny_llama()
    tuned.load_state_dict(base.state_dict())
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in tuned.named_parameters():
            # Every block moves a little; block 2 moves a lot; the embeddings move too
            # but must not count towards any block.
            scale = 0.5 if ".layers.2." in name else 0.01 * (1 + int("layers.1." in name))
            if "layers." in name or "embed" in name:
                p.add_(scale * torch.randn(p.shape, generator=g))
    return base, tuned


def recompute(base, tuned):
    out = {}
    tuned_params = dict(tuned.named_parameters())
    for name, p in base.named_parameters():
        if ".layers." not in name:
            continue
        layer = int(name.split(".layers.")[1].split(".")[0])
        d = torch.linalg.norm((p.detach() - tuned_params[name].detach()).flatten()).item()
        out[layer] = out.get(layer, 0.0) + d
    return out


def test_table_matches_direct_recomputation(models):
    base, tuned = models
    df = layer_divergence(base, tuned)
    assert list(df.columns) == ["layer", "divergence", "n_params", "n_tensors"]
    assert df["layer"].tolist() == list(range(N_LAYERS))
    expected = recompute(base, tuned)
    for row in df.itertuples():
        assert row.divergence == pytest.approx(expected[row.layer], rel=1e-6)
    # Every parameter of a Llama block: q,k,v,o, gate,up,down, two norms.
    per_block = sum(p.numel() for n, p in base.named_parameters() if ".layers.0." in n)
    assert (df["n_tensors"] == 9).all()
    assert (df["n_params"] == per_block).all()


def test_state_dicts_and_modules_agree(models):
    base, tuned = models
    from_modules = layer_divergence(base, tuned)
    from_sd = layer_divergence(base.state_dict(), tuned.state_dict())
    pd.testing.assert_frame_equal(from_modules, from_sd)


def test_perturbed_layer_ranks_first_and_selection(models):
    base, tuned = models
    df = layer_divergence(base, tuned)
    assert df.sort_values("divergence", ascending=False)["layer"].iloc[0] == 2
    assert select_layers(df, k=1) == [2]
    assert select_layers(df, k=2, which="highest") == [1, 2]
    # Blocks 0 and 3 moved least (same noise scale); the result is sorted by index.
    assert select_layers(df, k=2, which="lowest") == [0, 3]
    assert select_layers(df, k=2, which="first") == [0, 1]
    with pytest.warns(UserWarning):
        assert select_layers(df, k=10) == list(range(N_LAYERS))
    with pytest.raises(ValueError):
        select_layers(df, k=2, which="middle")


def test_tiny_update_survives_low_precision_storage():
    # An lr-1e-6-sized update on bf16-stored weights: the upcast difference sees it.
    # The norm, sqrt(3) * 2**-7, is not representable in bf16: a bf16 computation is off by ~0.1%.
    base = {"model.layers.0.mlp.w": torch.ones(3, dtype=torch.bfloat16)}
    tuned = {"model.layers.0.mlp.w": torch.ones(3, dtype=torch.bfloat16) + 2**-7}
    df = layer_divergence(base, tuned)
    assert df["divergence"].iloc[0] == pytest.approx(3**0.5 * 2**-7, rel=1e-6)
    # float32: a 1e-6 change on weights of size 0.02 is visible.
    b32 = {"transformer.h.0.attn.w": torch.full((4,), 0.02)}
    t32 = {"transformer.h.0.attn.w": torch.full((4,), 0.02 + 1e-6)}
    assert layer_divergence(b32, t32)["divergence"].iloc[0] == pytest.approx(2e-6, rel=1e-2)


@pytest.mark.parametrize(
    "name, idx",
    [
        ("model.layers.11.self_attn.q_proj.weight", 11),  # Llama / Gemma
        ("gpt_neox.layers.3.mlp.dense_4h_to_h.bias", 3),  # Pythia
        ("transformer.h.7.mlp.c_fc.weight", 7),  # GPT-2 / GPT-Neo
        ("model.language_model.layers.5.mlp.down_proj.weight", 5),  # Gemma 3
        ("model.layers.2.mlp.experts.9.w1.weight", 2),  # the block, not the expert
        ("model.embed_tokens.weight", None),
        ("transformer.wte.weight", None),
        ("lm_head.weight", None),
    ],
)
def test_block_index(name, idx):
    assert block_index(name) == idx


def test_mismatched_models_raise():
    a = {"model.layers.0.w": torch.zeros(2)}
    with pytest.raises(KeyError):
        layer_divergence(a, {"model.layers.1.w": torch.zeros(2)})
    with pytest.raises(ValueError):
        layer_divergence(a, {"model.layers.0.w": torch.zeros(3)})
    with pytest.raises(ValueError):
        layer_divergence({"encoder.block.0.w": torch.zeros(2)}, {"encoder.block.0.w": torch.zeros(2)})
    # A custom pattern handles other naming schemes.
    df = layer_divergence(
        {"encoder.block.0.w": torch.zeros(2)}, {"encoder.block.0.w": torch.ones(2)}, pattern=r"\.block\.(\d+)\."
    )
    assert df["divergence"].iloc[0] == pytest.approx(2**0.5)
