"""Tiny randomly initialised causal LMs with a real (tiny) tokenizer, built inside the tests.

No hub, no canned outputs: a word-level tokenizer over a small vocabulary and a 2-layer model of
the requested family, saved as a plain folder exactly like the ones `materialise_model` writes.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

WORDS = (
    "the a cat dog sat on mat good bad film movie great awful plot actor love hate is was and "
    "of to in it this that very not but with for as his her they we you story scene end"
).split()


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {w: i for i, w in enumerate(["<pad>", "<unk>", "<s>", "</s>", *WORDS])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", bos_token="<s>", eos_token="</s>"
    )


def tiny_model(family: str = "llama", seed: int = 0, n_layers: int = 2):
    torch.manual_seed(seed)
    vocab = len(WORDS) + 4
    if family == "llama":
        cfg = LlamaConfig(vocab_size=vocab, hidden_size=16, intermediate_size=32, num_hidden_layers=n_layers,
                          num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64,
                          pad_token_id=0, bos_token_id=2, eos_token_id=3)
        return LlamaForCausalLM(cfg).eval()
    cfg = GPTNeoXConfig(vocab_size=vocab, hidden_size=16, intermediate_size=32, num_hidden_layers=n_layers,
                        num_attention_heads=2, max_position_embeddings=64, pad_token_id=0, bos_token_id=2,
                        eos_token_id=3)
    return GPTNeoXForCausalLM(cfg).eval()


def save_tiny(folder: Path, family: str = "llama", seed: int = 0, n_layers: int = 2) -> Path:
    """Write a tiny model + tokenizer as a local model folder (safetensors)."""
    model, tok = tiny_model(family, seed, n_layers), tiny_tokenizer()
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return Path(folder)
