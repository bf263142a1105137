"""Held-out contexts for detection scoring of feature explanations (issue 16 item 6).

Detection scoring asks whether a feature's explanation lets a model tell contexts where the feature
fires from contexts where it does not. The test contexts must be ones the explainer never saw: every
text holding one of the feature's shown top records is left out for that feature.

Per feature, from the remaining (held-out) tokens:
  activating      windows ending at a token where the feature is active, one drawn at random from
                  each of n equal-count bins of its held-out positive activations ranked low to high,
                  so weak activations are tested as well as the strongest; each context records its
                  activation, its quantile among those activations (mid-rank / count) and its bin;
  non-activating  windows in which the feature is zero on every token (the window's maximum is 0),
                  drawn at random; where too few exist (a feature active almost everywhere), those
                  with the smallest window maximum, which is recorded.
Balanced: n = min(k, activating available, non-activating available) of each kind. A window is the
token and the `window` tokens before it in the same text, the same view the explainer had.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from lensflow.core import io
from lensflow.lfp.sae.model import load_saes
from lensflow.lfp.validation.records import _encode_features, _open_token_cache, _record_line, token_table

CONTEXT_COLUMNS = {"feature": "int64", "context": "int64", "activating": "bool", "text_id": "int64",
                   "position": "int64", "activation": "float64", "window_max": "float64", "quantile": "float64",
                   "bin": "int64"}


def feature_codes(cache_path, module: str, sae, features, batch_rows: int = 65536) -> tuple[pd.DataFrame, np.ndarray]:
    """Codes of the requested features on every token of a per-token cache.

    Returns (tokens: text_id, position sorted by both; codes [n_tokens, n_features] in that order).
    Memory: one float32 per token and requested feature (the detection features are a few per layer).
    """
    feats = np.asarray(list(features), dtype=np.int64)  # [f]
    pf = _open_token_cache(cache_path, module)
    tids, poss, codes = [], [], []
    for batch in pf.iter_batches(batch_size=batch_rows, columns=["text_id", "position", module]):
        col = batch.column(2)
        x = col.flatten().to_numpy(zero_copy_only=False).reshape(len(col), col.type.list_size)  # [rows, d_in]
        tids.append(batch.column(0).to_numpy().astype(np.int64))
        poss.append(batch.column(1).to_numpy().astype(np.int64))
        codes.append(_encode_features(sae, x, feats))  # [rows, f]
    tid = np.concatenate(tids) if tids else np.zeros(0, np.int64)
    pos = np.concatenate(poss) if poss else np.zeros(0, np.int64)
    c = np.concatenate(codes) if codes else np.zeros((0, len(feats)), np.float32)
    order = np.lexsort((pos, tid))
    return pd.DataFrame({"text_id": tid[order], "position": pos[order]}), c[order]


def window_max(codes: np.ndarray, text_ids: np.ndarray, window: int) -> np.ndarray:
    """[n, f]: per token, the maximum code over it and the `window` tokens before it in its text.

    Rows must be sorted by (text_id, position); a row's predecessors are the rows above it with the
    same text_id.
    """
    out = codes.astype(np.float64, copy=True)
    for o in range(1, min(window, len(codes) - 1) + 1):
        same = text_ids[o:] == text_ids[:-o]  # [n - o]
        out[o:] = np.where(same[:, None], np.maximum(out[o:], codes[:-o]), out[o:])
    return out


def _activating(values: np.ndarray, k: int, rng) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(indices into values, quantiles, bins): one draw per equal-count bin of the ranked values."""
    order = np.argsort(values, kind="stable")  # ascending activation
    quantile = np.empty(len(values))
    quantile[order] = (np.arange(len(values)) + 0.5) / max(len(values), 1)
    picks, bins = [], []
    for b, members in enumerate(np.array_split(order, min(k, len(values)))):
        picks.append(int(rng.choice(members)))
        bins.append(b)
    picks = np.asarray(picks, dtype=np.int64)
    return picks, quantile[picks], np.asarray(bins, dtype=np.int64)


def draw_contexts(tokens: pd.DataFrame, codes: np.ndarray, features, shown: dict, k: int, window: int,
                  seed: int) -> pd.DataFrame:
    """Balanced held-out detection contexts of each feature (columns: CONTEXT_COLUMNS).

    tokens/codes: feature_codes' output, codes[:, j] belonging to features[j]. shown: {feature: text
    ids of its records shown to the explainer}, all left out. Feature f draws with
    np.random.default_rng([seed, f]). A feature with no activating or no context left has no rows.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    tid = tokens["text_id"].to_numpy()
    pos = tokens["position"].to_numpy()
    wmax = window_max(codes, tid, window)  # [n, f]
    rows = []
    for j, f in enumerate(int(x) for x in features):
        rng = np.random.default_rng([seed, f])
        held = ~np.isin(tid, sorted(shown.get(f, ())))  # [n]
        act_idx = np.flatnonzero(held & (codes[:, j] > 0))
        non_pool = np.flatnonzero(held & (codes[:, j] <= 0))
        n = min(k, len(act_idx), len(non_pool))
        if n == 0:
            continue
        picks, quantile, bins = _activating(codes[act_idx, j], n, rng)
        act = act_idx[picks]
        # non-activating: zero windows first (random order), then the smallest window maxima
        shuffled = rng.permutation(non_pool)
        non = shuffled[np.argsort(wmax[shuffled, j], kind="stable")][:n]
        parts = [pd.DataFrame({"feature": f, "activating": kind, "text_id": tid[idx], "position": pos[idx],
                               "activation": codes[idx, j], "window_max": wmax[idx, j], "quantile": q, "bin": b})
                 for kind, idx, q, b in ((True, act, quantile, bins), (False, non, np.full(n, np.nan),
                                                                       np.full(n, -1)))]
        both = pd.concat(parts, ignore_index=True)
        # shuffled, so the order of the questions says nothing about the answers
        rows.append(both.iloc[rng.permutation(len(both))].assign(context=np.arange(len(both))))
    if not rows:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in CONTEXT_COLUMNS.items()})
    df = pd.concat(rows, ignore_index=True)
    return df[list(CONTEXT_COLUMNS)].astype(CONTEXT_COLUMNS).reset_index(drop=True)


def context_texts(contexts: pd.DataFrame, tokens: pd.DataFrame, tokenizer, window: int) -> list[str]:
    """Each context as the explainer's record line without its score: `... text «token»`.

    tokens: (text_id, position, token_id) covering the contexts' texts (records.token_table).
    """
    ids = {int(t): g.sort_values("position")["token_id"].to_numpy() for t, g in tokens.groupby("text_id")}
    missing = set(contexts["text_id"].astype(int)) - set(ids)
    if missing:
        raise ValueError(f"token table lacks texts {sorted(missing)[:5]} that the contexts refer to")
    return [_record_line(ids[int(t)], int(p), tokenizer, window, None)
            for t, p in zip(contexts["text_id"], contexts["position"])]


def run_contexts(activations, saes_path, layers_path, tokenizer_dir, explanations: pd.DataFrame,
                 records: pd.DataFrame, k: int, window: int, seed: int, device="cpu") -> pd.DataFrame:
    """Held-out contexts of every explained feature of a run, with their text, over its highest layers
    (draw_contexts per layer; texts of the records shown to the explainer are left out)."""
    from transformers import AutoTokenizer  # heavy: only the rule's job needs it

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    saes, _ = load_saes(saes_path, device=device)
    meta = io.read_metadata(activations)
    module_of = dict(zip(meta["layers"], meta["modules"]))
    out = []
    for layer in json.loads(open(layers_path).read())["highest"]:
        feats = sorted(explanations.loc[explanations["layer"] == layer, "feature"].astype(int))
        if not feats:
            continue
        tokens, codes = feature_codes(activations, module_of[layer], saes[layer], feats)
        mine = records[records["layer"] == layer]
        shown = {int(f): set(g["text_id"].astype(int)) for f, g in mine.groupby("feature")}
        out.append(draw_contexts(tokens, codes, feats, shown, k, window, seed).assign(layer=layer))
    if not out:
        return pd.DataFrame(columns=["layer", "feature", "context", "activating", "text"])
    contexts = pd.concat(out, ignore_index=True)
    if not len(contexts):
        return contexts.assign(text=[])
    # one read of the token ids of every context's text, whatever its layer
    ids = token_table(activations, text_ids=contexts["text_id"].unique())
    return contexts.assign(text=context_texts(contexts, ids, tok, window))
