"""The tiny run's sparse-code check carries its linear-code reference end to end: lfp_sae measures it
for AE_n only (from lfp.sae.target.l0_fraction, through the rule's params), the sparsity table and the
claims note read it, and the base-model control's AE_n (lfp_base_sae) leaves it out."""

import math

import pandas as pd
import pytest
import yaml

pytestmark = pytest.mark.slow


def test_linear_reference_reaches_the_sparsity_table_for_ae_n_only(clean_run):
    results = clean_run.results
    l0_fraction = yaml.safe_load(clean_run.config.read_text())["lfp"]["sae"].get("target", {}).get("l0_fraction", 0.1)
    check = pd.read_csv(results / "tables" / "lfp_sae_sparsity.csv")
    assert len(check) and check["linear_fvu"].notna().all() and check["linear_fvu_per_dim"].notna().all()
    expected_k = [min(math.floor(l0_fraction * d + 1e-9), d // 2) for d in check["d_hidden"]]
    assert check["linear_k"].astype(int).tolist() == expected_k
    assert ((check["linear_fvu"] >= 0) & (check["linear_fvu"] <= 1.0 + 1e-6)).all()
    claims = pd.read_csv(results / "tables" / "lfp_claims.csv")
    notes = claims[claims["claim"].str.startswith("SAE training check")]["note"]
    assert len(notes) and notes.str.contains("best linear code at L0").all()
    for task_dir in (results / "lfp").glob("*/*"):
        if (task_dir / "sae" / "n_metrics.parquet").exists():
            assert "linear_fvu" in pd.read_parquet(task_dir / "sae" / "n_metrics.parquet").columns
        for other in (task_dir / "sae").glob("*_metrics.parquet"):
            if other.name != "n_metrics.parquet":
                assert "linear_fvu" not in pd.read_parquet(other).columns, other
        base = task_dir / "base" / "sae" / "n_metrics.parquet"
        if base.exists():
            assert "linear_fvu" not in pd.read_parquet(base).columns
