"""ExpertLens from cached responses to similarity: the steps between the cache and the statistics.

  responses (cache, one column per module)  + membership (concept, text_id, label)
    -> expertise: per concept and unit, AP of the unit's max-pooled response (positive vs negative)
    -> AP matrix [n_concepts, n_units] -> expert sets per tau -> Jaccard; cosine of AP vectors
Similarities are kept in one long format shared with the baselines:
  concept_a, concept_b (a < b), measure, value, both_empty
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from lensflow.core.io import TableError, read_metadata

from .expertise import expertise_table
from .naming import COSINE, jaccard_measure
from .similarity import cosine_matrix, expert_sets, jaccard_matrix

LAYER = re.compile(r"\.(\d+)\.")


def module_layer(module: str) -> int:
    """Block index from a module name (`model.layers.3.mlp.down_proj` -> 3; -1 if none)."""
    m = LAYER.search(module + ".")
    return int(m.group(1)) if m else -1


def module_kind(module: str) -> str:
    """The module's type within its block (`model.layers.3.mlp.down_proj` -> `mlp.down_proj`)."""
    m = LAYER.search(module + ".")
    return module[m.end():] if m else module


def check_membership(membership: pd.DataFrame, source) -> None:
    """A concept bank's membership must name every concept and give each at least one positive."""
    names = membership["concept"]
    blank = names.isna() | (names.astype(str).str.strip() == "")
    if blank.any():
        raise TableError(f"{source}: {int(blank.sum())} row(s) with an empty concept name (column 'concept')")
    positives = membership[membership["label"] == "positive"].groupby("concept").size()
    none = sorted(set(names) - set(positives.index))
    if none:
        raise TableError(f"{source}: concept(s) {none} have no positive sentences")


def iter_expertise(cache_path, membership: pd.DataFrame, threads: int = 1):
    """Expertise of every unit for every concept, one module at a time (memory: bank x one module).

    membership: concept, text_id, label ("positive" / "negative"), as written by the concept stage.
    threads: blocks of units computed at once (`lensflow.expertlens.expertise.expertise_table`).
    Yields one DataFrame per module (the cache's module order): concept, module, layer, kind, unit,
    ap, off_mean, on_p50, on_p90 (float32), concepts sorted, units 0..d-1 within each concept.
    """
    from lensflow.core.cache import read_pooled  # imports torch: only the expertise job needs it

    modules = read_metadata(cache_path).get("modules")
    if not modules:
        raise TableError(f"{cache_path}: no `modules` in its metadata; not an activation cache")
    concepts = None  # (concept, row positions [n_sentences], positive [n_sentences]): the same for every module
    for module in modules:
        text_ids, acts = read_pooled(cache_path, [module])
        x = acts[module]  # [n_texts, d]
        if concepts is None:
            concepts = _concept_rows(cache_path, text_ids, membership)
        index = pd.DataFrame({"module": module, "layer": module_layer(module), "kind": module_kind(module),
                              "unit": np.arange(x.shape[1])})
        out = []
        for concept, rows, positive in concepts:
            table = expertise_table(x, positive, index, threads=threads, rows=rows)  # x [n_texts, d]
            table.insert(0, "concept", concept)
            out.append(table)
        df = pd.concat(out, ignore_index=True)
        yield df.astype({c: np.float32 for c in ("ap", "off_mean", "on_p50", "on_p90")})


def _concept_rows(cache_path, text_ids: np.ndarray, membership: pd.DataFrame) -> list[tuple]:
    """Per concept (sorted): its sentences' row positions in the cache and their positive labels."""
    row = pd.Series(np.arange(len(text_ids)), index=text_ids)
    out = []
    for concept, rows in membership.groupby("concept", sort=True):
        missing = set(rows["text_id"]) - set(row.index)
        if missing:
            raise TableError(f"{cache_path}: no responses for {len(missing)} sentences of concept {concept!r}")
        out.append((concept, row[rows["text_id"]].to_numpy(), (rows["label"] == "positive").to_numpy()))
    return out


def compute_expertise(cache_path, membership: pd.DataFrame) -> pd.DataFrame:
    """All of iter_expertise in one frame (small runs and tests; the workflow streams it to disk)."""
    return pd.concat(iter_expertise(cache_path, membership), ignore_index=True)


def _upper(names, matrix, measure, both_empty=None) -> pd.DataFrame:
    """Long format of a symmetric [c, c] matrix: one row per unordered pair, concept_a < concept_b."""
    order = np.argsort(names)
    names = np.asarray(names)[order]
    matrix = matrix[np.ix_(order, order)]
    i, j = np.triu_indices(len(names), k=1)
    return pd.DataFrame({
        "concept_a": names[i], "concept_b": names[j], "measure": measure, "value": matrix[i, j],
        "both_empty": False if both_empty is None else both_empty[np.ix_(order, order)][i, j],
    })


def similarities(concepts: list[str], ap: np.ndarray, taus) -> pd.DataFrame:
    """Jaccard of expert sets at every tau ("jaccard@0.5", ...) and the cosine of AP vectors."""
    out = []
    for tau in taus:
        masks, _ = expert_sets(ap, tau)
        jac, empty = jaccard_matrix(masks)
        del masks  # [c, units] bool: gone before the next tau's masks are built
        out.append(_upper(concepts, jac, jaccard_measure(tau), empty))
    out.append(_upper(concepts, cosine_matrix(ap), COSINE))
    return pd.concat(out, ignore_index=True)


def covered_pairs(similarity: pd.DataFrame, pairs: pd.DataFrame) -> pd.DataFrame:
    """Join human pairs (word_a, word_b, score) onto one measure's similarities, in either order.

    A pair counts when both words are concepts; a pair listed twice keeps its mean score.
    """
    a = np.minimum(pairs["word_a"].str.lower(), pairs["word_b"].str.lower())
    b = np.maximum(pairs["word_a"].str.lower(), pairs["word_b"].str.lower())
    human = pd.DataFrame({"concept_a": a, "concept_b": b, "human": pairs["score"]})
    human = human[human["concept_a"] != human["concept_b"]].groupby(["concept_a", "concept_b"], as_index=False).mean()
    return similarity.merge(human, on=["concept_a", "concept_b"], how="inner")
