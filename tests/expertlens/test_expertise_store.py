"""The streamed expertise table (lensflow.expertlens.expertise_store) against direct in-memory computations."""

import numpy as np
import pandas as pd
import pytest

from lensflow.core import io
from lensflow.expertlens.expertise import count_above
from lensflow.expertlens.expertise_store import max_ap, read_ap_matrix, read_concepts, write_expertise

CONCEPTS = ["dog", "cat", "film", "tree"]
MODULES = [("model.layers.0.mlp", 7), ("model.layers.0.self_attn.o_proj", 5), ("model.layers.3.mlp", 9)]


def module_tables(seed=0):
    rng = np.random.default_rng(seed)
    for module, d in MODULES:
        rows = [(c, module, int(module.split(".")[2]), module.split(".", 3)[3], u) for c in CONCEPTS for u in range(d)]
        df = pd.DataFrame(rows, columns=["concept", "module", "layer", "kind", "unit"])
        ap = np.round(rng.random(len(df)), 2)  # ties on purpose
        yield df.assign(ap=ap, off_mean=rng.normal(size=len(df)), on_p50=rng.normal(size=len(df)),
                        on_p90=rng.normal(size=len(df))).astype(
            {c: np.float32 for c in ("ap", "off_mean", "on_p50", "on_p90")}).sample(frac=1, random_state=seed)


GRID, TAUS = np.linspace(0.5, 1.0, 11), [0.5, 0.8]


def test_streamed_table_equals_the_in_memory_one(tmp_path):
    path = tmp_path / "expertise.parquet"
    res = write_expertise(module_tables(), path, {"model": "m"}, GRID, TAUS)
    full = pd.concat(list(module_tables()), ignore_index=True)
    back = io.read_table(path)
    key = ["concept", "module", "unit"]
    assert back.sort_values(key).reset_index(drop=True)[full.columns].equals(
        full.sort_values(key).reset_index(drop=True))
    meta = io.read_metadata(path)
    assert meta["model"] == "m" and meta["concepts"] == sorted(CONCEPTS)
    assert meta["modules"] == [list(m) for m in MODULES] and res["n_units"] == 21
    # counts: AP > t over all units of a concept
    for concept, g in full.groupby("concept"):
        got = res["counts"][res["counts"]["concept"] == concept]["n_experts"].to_numpy()
        assert (got == count_above(g["ap"].to_numpy(), GRID)).all()
    # location: experts per (tau, layer, kind), fractions per tau
    for tau in TAUS:
        want = full[full["ap"] > tau].groupby(["layer", "kind"]).size()
        loc = res["location"][res["location"]["tau"] == tau].set_index(["layer", "kind"])
        assert loc["n_experts"].sort_index().equals(want.sort_index().rename("n_experts"))
        assert loc["fraction"].sum() == pytest.approx(1.0)
    # max AP per concept
    assert max_ap(path).to_dict() == pytest.approx(full.groupby("concept")["ap"].max().to_dict())


def test_ap_matrix_is_the_pivot_in_module_order(tmp_path):
    path = tmp_path / "expertise.parquet"
    write_expertise(module_tables(seed=3), path, {}, GRID, TAUS)
    concepts, ap = read_ap_matrix(path)
    full = pd.concat(list(module_tables(seed=3)), ignore_index=True)
    order = {m: i for i, (m, _) in enumerate(MODULES)}
    wide = full.assign(o=full["module"].map(order)).pivot_table(index="concept", columns=["o", "unit"], values="ap")
    # float32 as stored: a float64 copy would double el_similarity's memory (~20 GB for pythia-12b)
    assert concepts == list(wide.index) and ap.dtype == np.float32
    assert np.array_equal(ap, wide.to_numpy(dtype=np.float32))


def test_read_concepts_returns_only_their_rows(tmp_path):
    path = tmp_path / "expertise.parquet"
    write_expertise(module_tables(), path, {}, GRID, TAUS)
    rows = read_concepts(path, ["cat", "tree"], ["concept", "module", "unit", "ap"])
    assert set(rows["concept"]) == {"cat", "tree"} and len(rows) == 2 * 21 and list(rows.columns)[:2] == ["concept",
                                                                                                         "module"]


def test_a_module_with_other_concepts_fails_and_leaves_nothing(tmp_path):
    tables = list(module_tables())
    tables[1] = tables[1][tables[1]["concept"] != "cat"]
    path = tmp_path / "expertise.parquet"
    with pytest.raises(ValueError, match="has concepts"):
        write_expertise(iter(tables), path, {}, GRID, TAUS)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="no module"):
        write_expertise(iter([]), path, {}, GRID, TAUS)
    assert list(tmp_path.iterdir()) == []


def test_a_table_from_elsewhere_is_named(tmp_path):
    path = tmp_path / "other.parquet"
    io.write_table(pd.DataFrame({"concept": ["a"], "ap": [0.5]}), path, {})
    with pytest.raises(io.TableError, match="other.parquet"):
        read_ap_matrix(path)
    with pytest.raises(io.TableError, match="other.parquet"):
        max_ap(path)
