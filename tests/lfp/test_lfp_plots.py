"""lensflow.lfp.figures.sae / .probes: each figure writes a real PNG and PDF from small tables,
draws what its table says (checked on the captured figure), and empty input gives the "no data" figure."""

import matplotlib.collections
import matplotlib.pyplot as plt
import matplotlib.text
import numpy as np
import pandas as pd
import pytest

from figure_spy import texts
from lensflow.core import plots
from lensflow.lfp.figures import probes as pp
from lensflow.lfp.figures import sae as ps

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"




def is_no_data(fig):
    return any(t.startswith("no data") for t in texts(fig))


def check_files(tmp_path, stem):
    png, pdf = plots.output_paths(tmp_path / stem)
    assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 1000
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 500
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([png.name, pdf.name]), "temp files left"
    assert plt.get_fignums() == [], "figure left open"


def visible_axes(fig):
    return [ax for ax in fig.axes if ax.get_visible() and ax.axison]


# --- small tables ---------------------------------------------------------------------------------

def history_frame(layers=(2, 5, 9), variants=("n", "2n", "untied")):
    rows = []
    for layer in layers:
        for k, variant in enumerate(variants):
            for step in range(1, 6):
                rows.append(dict(layer=layer, variant=variant, step=step * 10, examples=step * 320,
                                 mse=1.0 / (step + k + layer), l1=2.0 + step, loss=1.0))
    return pd.DataFrame(rows)


def metrics_frame(alphas=(1e-4, 1e-3, 1e-2)):
    rows = []
    for alpha in alphas:
        variant = "n" if alpha == 1e-3 else f"l1-{alpha:g}"
        for layer in (3, 4, 6):
            rows.append(dict(variant=variant, alpha=alpha, layer=layer, heldout_mse=alpha * 10 + layer / 100,
                             heldout_fvu=alpha * 10 + layer / 100, heldout_l0=1 / alpha / 100 + layer))
    # other variants at other alphas must not enter the sweep
    rows.append(dict(variant="2n", alpha=0.5, layer=3, heldout_mse=9.0, heldout_fvu=9.0, heldout_l0=999.0))
    rows.append(dict(variant="untied", alpha=1e-3, layer=3, heldout_mse=7.0, heldout_fvu=7.0, heldout_l0=500.0))
    return pd.DataFrame(rows)


def overlap_frame():
    rng = np.random.default_rng(0)
    return pd.DataFrame([dict(layer=layer, small_feature=i, cosine=c) for layer in (1, 4)
                         for i, c in enumerate(rng.uniform(0, 1, 12))])


def words_frame():
    rng = np.random.default_rng(1)
    return pd.DataFrame({"word": [f"w{i}" for i in range(15)], "word_value": rng.uniform(-3, 3, 15),
                         "prediction": rng.uniform(-3, 3, 15), "count": rng.integers(0, 200, 15)})


# --- plot_sae_training ----------------------------------------------------------------------------

def test_sae_training_one_panel_per_layer_one_line_per_variant(tmp_path, captured):
    h = history_frame()
    ps.plot_sae_training(h, *plots.output_paths(tmp_path / "train"), variants=("n", "2n"))
    check_files(tmp_path, "train")
    fig = captured[0]
    assert not is_no_data(fig)
    axes = visible_axes(fig)
    assert [ax.get_title() for ax in axes] == ["layer 2", "layer 5", "layer 9"]
    for ax, layer in zip(axes, (2, 5, 9)):
        lines = {line.get_label(): line for line in ax.get_lines()}
        assert set(lines) == {"AE_n MSE", "AE_2n MSE"}  # "untied" is not among the plotted variants
        for variant in ("n", "2n"):
            g = h[(h.layer == layer) & (h.variant == variant)]
            np.testing.assert_allclose(lines[f"AE_{variant} MSE"].get_xdata(), g["examples"])
            np.testing.assert_allclose(lines[f"AE_{variant} MSE"].get_ydata(), g["mse"])
        assert ax.get_yscale() == "log"


@pytest.mark.parametrize("history", [pd.DataFrame(), None, "other-variants"])
def test_sae_training_without_rows_gives_no_data(tmp_path, captured, history):
    if isinstance(history, str):
        history = history_frame(variants=("untied", "lowest"))
    ps.plot_sae_training(history, *plots.output_paths(tmp_path / "train"))
    check_files(tmp_path, "train")
    assert is_no_data(captured[0])


# --- plot_l1_sweep --------------------------------------------------------------------------------

def test_l1_sweep_plots_only_the_n_width_sweep(tmp_path, captured):
    m = metrics_frame()
    ps.plot_l1_sweep(m, *plots.output_paths(tmp_path / "sweep"))
    check_files(tmp_path, "sweep")
    fig = captured[0]
    assert not is_no_data(fig)
    sweep = m[m.variant.isin(["n", "l1-0.0001", "l1-0.01"])]
    for ax, col in zip(visible_axes(fig), ["heldout_fvu", "heldout_l0"]):
        assert ax.get_xscale() == "log"
        dots = [c for c in ax.collections if isinstance(c, matplotlib.collections.PathCollection)]
        assert len(dots) == 1
        np.testing.assert_allclose(np.sort(dots[0].get_offsets()[:, 1]), np.sort(sweep[col]))
        (mean_line,) = [line for line in ax.get_lines() if line.get_label() == "mean over layers"]
        expect = sweep.groupby("alpha")[col].mean()
        np.testing.assert_allclose(mean_line.get_xdata(), expect.index)
        np.testing.assert_allclose(mean_line.get_ydata(), expect.values)


@pytest.mark.parametrize("metrics", ["one-alpha", "empty", "only-other-variants"])
def test_l1_sweep_with_fewer_than_two_alphas_gives_no_data(tmp_path, captured, metrics):
    m = {"one-alpha": lambda: metrics_frame(alphas=(1e-3,)),  # n plus 2n/untied at other alphas
         "empty": pd.DataFrame,
         "only-other-variants": lambda: metrics_frame().query("variant in ['2n', 'untied']")}[metrics]()
    ps.plot_l1_sweep(m, *plots.output_paths(tmp_path / "sweep"))
    check_files(tmp_path, "sweep")
    assert is_no_data(captured[0])
    assert any("fewer than two L1 coefficients" in t for t in texts(captured[0]))


# --- plot_overlap ---------------------------------------------------------------------------------

def test_overlap_draws_sorted_cosines_per_layer_and_chance(tmp_path, captured):
    ov = overlap_frame()
    ps.plot_overlap(ov, *plots.output_paths(tmp_path / "overlap"), chance=0.31)
    check_files(tmp_path, "overlap")
    fig = captured[0]
    ax = visible_axes(fig)[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    for layer in (1, 4):
        cos = ov.loc[ov.layer == layer, "cosine"].to_numpy()
        label = f"layer {layer} (MMCS {cos.mean():.2f})"
        assert label in lines
        np.testing.assert_allclose(lines[label].get_ydata(), np.sort(cos)[::-1])
    chance = lines["random dictionaries (MMCS 0.31)"]
    assert list(chance.get_ydata()) == [0.31, 0.31]


def test_overlap_empty_gives_no_data(tmp_path, captured):
    ps.plot_overlap(pd.DataFrame(columns=["layer", "cosine"]), *plots.output_paths(tmp_path / "overlap"))
    check_files(tmp_path, "overlap")
    assert is_no_data(captured[0])


# --- plot_error_vs_frequency ----------------------------------------------------------------------

def test_error_vs_frequency_dots(tmp_path, captured):
    w = words_frame()
    pp.plot_error_vs_frequency(w, *plots.output_paths(tmp_path / "freq"), rho=-0.42, p=0.003)
    check_files(tmp_path, "freq")
    ax = visible_axes(captured[0])[0]
    (dots,) = ax.collections
    xy = dots.get_offsets()
    np.testing.assert_allclose(xy[:, 0], w["count"] + 1)
    np.testing.assert_allclose(xy[:, 1], (w["prediction"] - w["word_value"]).abs())
    assert ax.get_xscale() == "log"
    assert ax.get_title() == "Spearman rho = -0.42 (p = 0.003, 15 words)"


@pytest.mark.parametrize("words", ["empty", "no-count"])
def test_error_vs_frequency_without_counts_gives_no_data(tmp_path, captured, words):
    w = words_frame().iloc[:0] if words == "empty" else words_frame().drop(columns="count")
    pp.plot_error_vs_frequency(w, *plots.output_paths(tmp_path / "freq"))
    check_files(tmp_path, "freq")
    assert is_no_data(captured[0])


# --- plot_probe_pca -------------------------------------------------------------------------------

def test_probe_pca_colours_by_polarity(tmp_path, captured):
    rng = np.random.default_rng(2)
    coords = rng.normal(size=(30, 2))
    labels = pd.Series(["positive", "negative", "neutral"] * 10)
    pp.plot_probe_pca(coords, labels, np.array([0.4567, 0.1234]), *plots.output_paths(tmp_path / "pca"))
    check_files(tmp_path, "pca")
    ax = visible_axes(captured[0])[0]
    by_label = {c.get_label(): c.get_offsets() for c in ax.collections}
    assert set(by_label) == {"positive", "negative"}
    np.testing.assert_allclose(by_label["positive"], coords[0::3])
    np.testing.assert_allclose(by_label["negative"], coords[1::3])
    assert ax.get_xlabel() == "PC1 (45.7% of variance)" and ax.get_ylabel() == "PC2 (12.3% of variance)"


@pytest.mark.parametrize("coords", [None, np.empty((0, 2))])
def test_probe_pca_without_inputs_gives_no_data(tmp_path, captured, coords):
    pp.plot_probe_pca(coords, pd.Series([], dtype=object), [0.5, 0.2], *plots.output_paths(tmp_path / "pca"))
    check_files(tmp_path, "pca")
    assert is_no_data(captured[0])
