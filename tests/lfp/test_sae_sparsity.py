"""The SAE sparse-code check (lensflow.lfp.sae.sparsity) and its claims row, on constructed metrics."""

import numpy as np
import pandas as pd
import pytest

from lensflow.lfp.claims import sparsity_claims
from lensflow.lfp.sae.sparsity import sparsity_check


def row(variant, layer, fvu, per_dim, l0, *, task="toxic", alpha=1e-3, width=1, tied=True, selection="highest",
        d_hidden=100):
    return dict(model="m", task=task, variant=variant, layer=layer, width=width, tied=tied, alpha=alpha,
                selection=selection, d_hidden=d_hidden * width, heldout_fvu=fvu, heldout_fvu_per_dim=per_dim,
                heldout_l0=l0)


@pytest.fixture
def metrics():
    return pd.DataFrame([
        # vader: AE_n meets the target on layer 1 only; the sweep's alpha 0.003 gets layer 2 there
        row("n", 1, 0.10, 0.15, 5, task="vader"),
        row("n", 2, 0.30, 0.32, 30, task="vader"),
        row("l1-0.003", 1, 0.25, 0.27, 3, task="vader", alpha=0.003),
        row("l1-0.003", 2, 0.18, 0.19, 8, task="vader", alpha=0.003),
        # not the sweep: other width, untied, other layers -- excellent numbers that must not count
        row("2n", 1, 0.01, 0.01, 1, task="vader", width=2),
        row("2n", 2, 0.01, 0.01, 1, task="vader", width=2),
        row("untied", 2, 0.01, 0.01, 1, task="vader", tied=False),
        row("lowest", 2, 0.01, 0.01, 1, task="vader", selection="lowest"),
        # toxic, no sweep: a layer whose total FVU hides one huge dimension (per-dim 0.40) fails
        row("n", 5, 0.002, 0.40, 5),
        row("n", 6, 0.15, 0.18, 9),
    ])


def test_check_per_layer_and_the_huge_dimension_case(metrics):
    c = sparsity_check(metrics, fvu_max=0.2, l0_fraction_max=0.1).set_index(["task", "layer"])
    assert c.loc[("vader", 1), "meets_target"] and not c.loc[("vader", 2), "meets_target"]
    assert not c.loc[("toxic", 5), "meets_target"]  # FVU 0.002 but per-dimension 0.40
    assert c.loc[("toxic", 6), "meets_target"]
    assert c.loc[("vader", 2), "l0_fraction"] == pytest.approx(0.3)
    assert len(c) == 4  # AE_n rows only


def test_sweep_is_ae_n_settings_at_other_alphas(metrics):
    c = sparsity_check(metrics, fvu_max=0.2, l0_fraction_max=0.1).set_index(["task", "layer"])
    v1, v2 = c.loc[("vader", 1)], c.loc[("vader", 2)]
    assert v1["sweep_alphas"] == v2["sweep_alphas"] == "0.001,0.003"
    # layer 1: both are sparse enough; AE_n's worse FVU (0.15) beats 0.27. Layer 2: only alpha 0.003 is sparse.
    assert (v1["sparse_best_alpha"], v1["sparse_best_fvu"]) == (0.001, 0.10)
    assert (v2["sparse_best_alpha"], v2["sparse_best_fvu"], v2["sparse_best_fvu_per_dim"]) == (0.003, 0.18, 0.19)
    assert v2["sparse_best_l0_fraction"] == pytest.approx(0.08)
    assert v1["reachable_in_sweep"] and v2["reachable_in_sweep"]
    t = c.loc[("toxic", 5)]
    assert t["sweep_alphas"] == "" and t["reachable_in_sweep"] is None and np.isnan(t["sparse_best_fvu"])


def test_nothing_sparse_enough_in_the_sweep():
    m = pd.DataFrame([row("n", 1, 0.10, 0.12, 40), row("l1-0.01", 1, 0.5, 0.5, 20, alpha=0.01)])
    c = sparsity_check(m, fvu_max=0.2, l0_fraction_max=0.1).iloc[0]
    assert not c["meets_target"] and c["reachable_in_sweep"] is not None and not c["reachable_in_sweep"]
    assert np.isnan(c["sparse_best_alpha"])
    note = sparsity_claims(sparsity_check(m, 0.2, 0.1), 0.2, 0.1)[0]["note"]
    assert "target reached on 0 of 1 layers" in note and "no alpha sparse enough on 1 layer(s)" in note


def test_claims_count_layers_and_say_what_the_sweep_found(metrics):
    rows = {r["statistic"].split(", ")[1]: r for r in
            sparsity_claims(sparsity_check(metrics, 0.2, 0.1), fvu_max=0.2, l0_fraction_max=0.1)}
    v, t = rows["m / vader"], rows["m / toxic"]
    assert (v["value"], v["n"], v["verdict"]) == (1, 2, "not supported")
    assert "target reached on 2 of 2 layers" in v["note"] and "(the worse of FVU and per-dim FVU) runs from 0.150 (layer 1, alpha 0.001) to 0.190 (layer 2, alpha 0.003)" in v["note"]
    assert "worst layer 2: FVU 0.300" in v["note"]
    assert (t["value"], t["n"], t["verdict"]) == (1, 2, "not supported")  # layer 5's per-dim FVU fails it
    assert "worst layer 5" in t["note"] and "no L1 sweep" in t["note"]
    ok = sparsity_claims(sparsity_check(metrics[metrics.layer == 6], 0.2, 0.1), 0.2, 0.1)[0]
    assert (ok["value"], ok["n"], ok["verdict"]) == (1, 1, "supported")


def test_claims_read_the_check_back_from_csv_as_lfp_tables_does(metrics, tmp_path):
    check = sparsity_check(metrics, 0.2, 0.1)
    check.to_csv(tmp_path / "s.csv", index=False)
    back = pd.read_csv(tmp_path / "s.csv")  # "" -> NaN, True/False/"" -> an object column
    assert sparsity_claims(back, 0.2, 0.1) == sparsity_claims(check, 0.2, 0.1)


def test_sparse_best_is_ranked_by_the_worse_fvu():
    # alpha 0.003 has the lower total FVU but hides a huge dimension (per-dim 0.5): 0.005 is better
    m = pd.DataFrame([row("n", 1, 0.1, 0.1, 40), row("l1-0.003", 1, 0.01, 0.5, 5, alpha=0.003),
                      row("l1-0.005", 1, 0.2, 0.3, 3, alpha=0.005)])
    c = sparsity_check(m, 0.2, 0.1).iloc[0]
    assert (c["sparse_best_alpha"], c["sparse_best_fvu"], c["sparse_best_fvu_per_dim"]) == (0.005, 0.2, 0.3)


def test_the_linear_code_reference_per_layer_and_in_the_note(tmp_path):
    m = pd.DataFrame([row("n", 1, 0.30, 0.35, 30), row("n", 2, 0.30, 0.35, 30), row("2n", 1, 0.01, 0.01, 1, width=2)])
    m["linear_k"] = [10, 10, 20]
    m["linear_fvu"] = [0.05, 0.40, 0.0]  # layer 1: a linear code of 10% meets it; layer 2: not even that
    m["linear_fvu_per_dim"] = [0.15, 0.45, 0.0]
    c = sparsity_check(m, 0.2, 0.1).set_index("layer")
    assert c.loc[1, "linear_meets_target"] and not c.loc[2, "linear_meets_target"]
    assert (c.loc[1, "linear_k"], c.loc[2, "linear_fvu_per_dim"]) == (10, 0.45)
    note = sparsity_claims(c.reset_index(), 0.2, 0.1)[0]["note"]
    assert "best linear code at L0 10" in note and "meets it on 1 of 2 layers" in note and "0.150-0.450" in note
    c.reset_index().to_csv(tmp_path / "s.csv", index=False)
    assert sparsity_claims(pd.read_csv(tmp_path / "s.csv"), 0.2, 0.1) == sparsity_claims(c.reset_index(), 0.2, 0.1)
    without = sparsity_check(m.drop(columns=["linear_k", "linear_fvu", "linear_fvu_per_dim"]), 0.2, 0.1)
    assert without["linear_meets_target"].isna().all()
    assert "linear code" not in sparsity_claims(without, 0.2, 0.1)[0]["note"]
