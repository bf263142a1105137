"""lensflow.core.plots / lensflow.expertlens.figures: every figure writes a real PNG and PDF, empty
tables give the "no data" figure, a failed write leaves nothing behind, and the clustering helpers are right."""

import itertools
import os

import matplotlib.figure
import matplotlib.pyplot as plt
import matplotlib.text
import numpy as np
import pandas as pd
import pytest
from scipy.cluster.hierarchy import leaves_list
from PIL import Image

from figure_spy import texts
from lensflow.core import plots
from lensflow.expertlens.figures import results as pe
from lensflow.expertlens.figures import stability as ps

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
RNG = np.random.default_rng(0)


# --- small synthetic tables in the documented schemas -------------------------------------------

def alignment_frame():
    rows = []
    for pairs, (model, measure) in itertools.product(["men", "wordsim353"], itertools.product(
            ["pythia-70m", "pythia-1b"], ["jaccard@0.5", "jaccard@0.6", "cosine_ap"])):
        rho = RNG.uniform(0.2, 0.8)
        rows.append(dict(source_type="neurons", model=model, dataset="onesec", measure=measure, pairs=pairs,
                         rho=rho, p=1e-5, ci_low=rho - 0.1, ci_high=rho + 0.08, n=120, ceiling=0.84))
    for pairs in ["men", "wordsim353"]:
        rows.append(dict(source_type="baseline", model="glove", dataset=np.nan, measure="glove", pairs=pairs,
                         rho=-0.05, p=0.5, ci_low=-0.2, ci_high=0.1, n=120, ceiling=np.nan))
    return pd.DataFrame(rows)


def counts_frame():
    rows = []
    for model, dataset, concept in itertools.product(["pythia-70m", "pythia-1b"], ["onesec"], "abcdef"):
        for tau in np.linspace(0.5, 1.0, 11):
            rows.append(dict(model=model, dataset=dataset, concept=concept, tau=tau,
                             n_experts=int(RNG.integers(1, 50) * 10 ** (3 * (1 - tau)) * (tau < 0.95))))
    return pd.DataFrame(rows)


def location_frame():
    rows = []
    for model, n_layers in [("pythia-70m", 6), ("pythia-1b", 16)]:
        kinds = ["attention.dense", "mlp.dense_4h_to_h"]
        for tau, layer, kind in itertools.product([0.5, 0.7, 0.9], range(n_layers), kinds):
            rows.append(dict(model=model, dataset="onesec", tau=tau, layer=layer, kind=kind,
                             n_experts=int(RNG.integers(0, 100) * (1 - tau) * 10), fraction=np.nan))
    return pd.DataFrame(rows)


def block_jaccard(sizes=(3, 3), within=0.6, between=0.02, seed=1):
    """Jaccard matrix with obvious blocks (plus a little noise), symmetric, ones on the diagonal."""
    rng = np.random.default_rng(seed)
    block = np.repeat(np.arange(len(sizes)), sizes)
    j = np.where(block[:, None] == block[None, :], within, between) + rng.uniform(0, 0.05, (block.size,) * 2)
    j = (j + j.T) / 2
    np.fill_diagonal(j, 1.0)
    return j, block


def stability_frame():
    rows = []
    for kind, (a, b, fixed) in [("across_models", ("pythia-70m", "pythia-1b", "onesec")),
                                ("across_datasets", ("onesec", "llama-gen", "pythia-70m")),
                                ("across_datasets", ("onesec", "mistral-gen", "pythia-70m"))]:
        for measure in ["jaccard@0.5", "cosine_ap"]:
            rho = RNG.uniform(0.3, 0.9)
            rows.append(dict(kind=kind, a=a, b=b, fixed=fixed, measure=measure, rho=rho,
                             ci_low=rho - 0.05, ci_high=rho + 0.04, n=300))
    return pd.DataFrame(rows)


def scaling_frame():
    rows = []
    for (model, n), measure, pairs in itertools.product(
            [("pythia-70m", 7.0e7), ("pythia-1b", 1.0e9), ("pythia-12b", 1.2e10)], ["jaccard@0.5", "cosine_ap"],
            ["men", "wordsim353"]):
        rho = RNG.uniform(0.5, 0.8)
        rows.append(dict(model=model, n_params=n, dataset="onesec", measure=measure, pairs=pairs, rho=rho,
                         ci_low=rho - 0.06, ci_high=rho + 0.05))
    return pd.DataFrame(rows)


def dynamics_frame():
    rows = []
    for model, step in itertools.product(["pythia-70m", "pythia-1b"], [0, 1, 512, 1000, 4000, 36000, 72000, 143000]):
        rho = 0.7 * np.log1p(step) / np.log1p(143000) + RNG.uniform(0, 0.05)
        rows.append(dict(model=model, step=step, dataset="onesec", measure="jaccard@0.5", pairs="men", rho=rho,
                         ci_low=rho - 0.07, ci_high=rho + 0.07))
    return pd.DataFrame(rows)


def causal_frame():
    rows = []
    for model, concept in itertools.product(["pythia-70m", "pythia-1b"], ["cat", "bread", "hammer"]):
        for cond, mean in [("baseline", 1e-5), ("experts", 3e-2), ("random", 1.2e-5)]:
            m = mean * RNG.uniform(0.5, 2)
            rows.append(dict(model=model, concept=concept, condition=cond, mean=m, ci_low=m / 2, ci_high=m * 2))
    return pd.DataFrame(rows)


def call_domains(png, pdf, **kw):
    j, block = block_jaccard((4, 4, 3))
    names = [f"c{i}" for i in range(len(block))]
    cats = {n: ["animals", "food", "tools"][b] for n, b in zip(names, block)}
    pe.plot_domains(names, j, png, pdf, tau=0.5, categories=cats, **kw)


FIGURES = {  # name -> (call with data, call with an empty table)
    "alignment": (lambda png, pdf, **kw: pe.plot_alignment(alignment_frame(), png, pdf, **kw),
                  lambda png, pdf, **kw: pe.plot_alignment(pd.DataFrame(), png, pdf, **kw)),
    "expert_counts": (lambda png, pdf, **kw: pe.plot_expert_counts(counts_frame(), png, pdf, **kw),
                      lambda png, pdf, **kw: pe.plot_expert_counts(counts_frame().iloc[:0], png, pdf, **kw)),
    "expert_layers": (lambda png, pdf, **kw: pe.plot_expert_layers(location_frame(), png, pdf, **kw),
                      lambda png, pdf, **kw: pe.plot_expert_layers(location_frame().iloc[:0], png, pdf, **kw)),
    "domains": (call_domains,
                lambda png, pdf, **kw: pe.plot_domains([], np.zeros((0, 0)), png, pdf, **kw)),
    "stability": (lambda png, pdf, **kw: ps.plot_stability(stability_frame(), png, pdf, **kw),
                  lambda png, pdf, **kw: ps.plot_stability(stability_frame().iloc[:0], png, pdf, **kw)),
    "scaling": (lambda png, pdf, **kw: ps.plot_scaling(scaling_frame(), png, pdf, **kw),
                lambda png, pdf, **kw: ps.plot_scaling(pd.DataFrame(), png, pdf, **kw)),
    "dynamics": (lambda png, pdf, **kw: ps.plot_dynamics(dynamics_frame(), png, pdf, **kw),
                 lambda png, pdf, **kw: ps.plot_dynamics(dynamics_frame().iloc[:0], png, pdf, **kw)),
    "causal": (lambda png, pdf, **kw: pe.plot_causal(causal_frame(), png, pdf, **kw),
               lambda png, pdf, **kw: pe.plot_causal(pd.DataFrame(), png, pdf, **kw)),
}




def assert_figure_files(tmp_path, stem):
    png, pdf = plots.output_paths(tmp_path / stem)
    assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 2000
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 1000
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([png.name, pdf.name]), "temp files left"


# --- every figure -------------------------------------------------------------------------------

@pytest.mark.parametrize("name", FIGURES)
def test_figure_writes_png_and_pdf(tmp_path, captured, name):
    FIGURES[name][0](*plots.output_paths(tmp_path / name))
    assert_figure_files(tmp_path, name)
    assert not any(t.startswith("no data") for t in texts(captured[0])), "real data drew the placeholder"
    assert plt.get_fignums() == [], "figure left open"


@pytest.mark.parametrize("name", FIGURES)
def test_empty_table_gives_no_data_figure(tmp_path, captured, name):
    FIGURES[name][1](*plots.output_paths(tmp_path / name), no_data_reason="nothing configured")
    assert_figure_files(tmp_path, name)
    assert "no data: nothing configured" in texts(captured[0])
    assert plt.get_fignums() == []


def test_png_has_150_dpi(tmp_path):
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1])
    plots.save_figure(fig, tmp_path / "f.png", tmp_path / "f.pdf")
    with Image.open(tmp_path / "f.png") as im:
        assert im.info["dpi"] == pytest.approx((150, 150), abs=0.5)
    assert plt.get_fignums() == []


@pytest.mark.parametrize("fail_on", ["png", "pdf"])
def test_failed_write_leaves_no_file(tmp_path, monkeypatch, fail_on):
    """A crash while writing either file leaves neither output nor a temp file, and closes the figure."""
    real = matplotlib.figure.Figure.savefig

    def broken(self, fname, *args, format=None, **kwargs):
        if format == fail_on:
            with open(fname, "wb") as f:
                f.write(b"partial")  # what a crash mid-write leaves in the file
            raise RuntimeError("disk full")
        return real(self, fname, *args, format=format, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        pe.plot_alignment(alignment_frame(), tmp_path / "a.png", tmp_path / "a.pdf")
    assert list(tmp_path.iterdir()) == []
    assert plt.get_fignums() == []


def test_failed_write_keeps_previous_outputs(tmp_path, monkeypatch):
    png, pdf = tmp_path / "a.png", tmp_path / "a.pdf"
    png.write_bytes(b"old png")
    pdf.write_bytes(b"old pdf")

    def broken(self, *args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", broken)
    with pytest.raises(RuntimeError):
        ps.plot_scaling(scaling_frame(), png, pdf)
    assert png.read_bytes() == b"old png" and pdf.read_bytes() == b"old pdf"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pdf", "a.png"]


def test_error_while_drawing_closes_figure(tmp_path):
    bad = alignment_frame().drop(columns="rho")
    with pytest.raises(ValueError, match="rho"):
        pe.plot_alignment(bad, tmp_path / "a.png", tmp_path / "a.pdf")
    assert plt.get_fignums() == [] and list(tmp_path.iterdir()) == []


def test_unknown_style_keyword_is_an_error(tmp_path):
    with pytest.raises(TypeError, match="colour"):
        pe.plot_causal(causal_frame(), tmp_path / "c.png", tmp_path / "c.pdf", colour="red")


def test_title_override(tmp_path, captured):
    ps.plot_dynamics(dynamics_frame(), tmp_path / "d.png", tmp_path / "d.pdf", title="Pythia over training")
    assert captured[0].get_suptitle() == "Pythia over training"


# --- figure-specific behaviour ------------------------------------------------------------------

def test_scaling_missing_measure_says_so(tmp_path, captured):
    ps.plot_scaling(scaling_frame(), tmp_path / "s.png", tmp_path / "s.pdf", measure="jaccard@0.9")
    assert any(t.startswith("no data: measure 'jaccard@0.9' not in table") for t in texts(captured[0]))


def test_scaling_filters_to_chosen_measure(tmp_path, captured):
    ps.plot_scaling(scaling_frame(), tmp_path / "s.png", tmp_path / "s.pdf")
    ax = captured[0].axes[0]
    assert ax.get_xscale() == "log"
    assert len(ax.get_lines()) == 2 + 2  # one line per (dataset, pairs) + its cap markers
    assert "Alignment vs model size (jaccard@0.5)" == captured[0].get_suptitle()


def test_causal_log_scale_when_values_span_orders(tmp_path, captured):
    pe.plot_causal(causal_frame(), tmp_path / "c.png", tmp_path / "c.pdf")
    flat = causal_frame().assign(mean=0.2, ci_low=0.1, ci_high=0.3)
    pe.plot_causal(flat, tmp_path / "d.png", tmp_path / "d.pdf")
    assert captured[0].axes[0].get_yscale() == "log"
    assert captured[1].axes[0].get_yscale() == "linear"


def test_alignment_one_panel_per_pair_set_with_ceiling(tmp_path, captured):
    pe.plot_alignment(alignment_frame(), tmp_path / "a.png", tmp_path / "a.pdf")
    axes = [ax for ax in captured[0].axes if ax.get_visible() and ax.axison]
    assert [ax.get_title() for ax in axes] == ["human pairs: men", "human pairs: wordsim353"]
    labels = [t.get_text() for t in axes[0].get_yticklabels()]
    assert labels[0] == "pythia-1b · onesec · jaccard@0.5 (n=120)"  # neurons first, tau ascending
    assert labels[-1] == "glove (n=120)"  # baseline last; blank dataset and repeated name dropped
    dashed = [ln for ln in axes[0].get_lines() if ln.get_linestyle() == "--"]
    assert len(dashed) == 1 and dashed[0].get_xdata()[0] == pytest.approx(0.84)


def test_expert_layers_second_row_only_with_several_kinds(tmp_path, captured):
    loc = location_frame()
    pe.plot_expert_layers(loc, tmp_path / "l.png", tmp_path / "l.pdf")
    pe.plot_expert_layers(loc[loc["kind"] == "attention.dense"], tmp_path / "m.png", tmp_path / "m.pdf")
    assert len(captured[0].axes) == 4 and len(captured[1].axes) == 2
    # relative depth: both models span 0..1 although one has 6 layers and the other 16
    for ax in captured[1].axes:
        x = ax.get_lines()[0].get_xdata()
        assert x[0] == 0 and x[-1] == 1


def test_expert_layers_fractions_sum_to_one(tmp_path, captured):
    loc = location_frame()
    pe.plot_expert_layers(loc, tmp_path / "l.png", tmp_path / "l.pdf")
    for line in captured[0].axes[0].get_lines():
        assert np.sum(line.get_ydata()) == pytest.approx(1.0)


# --- clustering helpers -------------------------------------------------------------------------

def test_cluster_concepts_recovers_blocks():
    j, block = block_jaccard((3, 3))
    perm = np.random.default_rng(3).permutation(len(block))  # order must not matter
    j, block = j[np.ix_(perm, perm)], block[perm]
    labels = pe.cluster_concepts([f"c{i}" for i in range(len(block))], j, n_clusters=2)
    assert len(set(labels)) == 2
    for b in (0, 1):
        assert len(set(labels[block == b])) == 1
    assert labels[block == 0][0] != labels[block == 1][0]


def test_cluster_concepts_checks_names():
    with pytest.raises(ValueError, match="names"):
        pe.cluster_concepts(["a", "b"], np.eye(3), 2)


def test_mds_layout_recovers_planar_distances():
    pts = np.random.default_rng(0).uniform(size=(8, 2))
    d = np.linalg.norm(pts[:, None] - pts[None], axis=-1)
    xy = pe.mds_layout(d)
    assert np.linalg.norm(xy[:, None] - xy[None], axis=-1) == pytest.approx(d, abs=1e-9)


def test_domains_colours_labels_by_category(tmp_path, captured):
    call_domains(tmp_path / "d.png", tmp_path / "d.pdf")
    dendro = captured[0].axes[0]
    colours = {t.get_text(): t.get_color() for t in dendro.get_yticklabels()}
    assert colours["c0"] == colours["c3"] != colours["c4"]  # c0..c3 animals, c4.. food
    legend = captured[0].axes[1].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["animals", "food", "tools"]


def test_domains_mds_layout_and_bad_layout(tmp_path, captured):
    call_domains(tmp_path / "d.png", tmp_path / "d.pdf", layout="mds")
    assert "MDS layout" in captured[0].axes[1].get_title()
    with pytest.raises(ValueError, match="layout"):
        call_domains(tmp_path / "e.png", tmp_path / "e.pdf", layout="spring")


def test_circle_layout_puts_domains_on_contiguous_arcs():
    j, block = block_jaccard((4, 4, 3))
    xy = pe.circle_layout(leaves_list(pe.concept_linkage(j)))
    assert np.linalg.norm(xy, axis=1) == pytest.approx(1.0)
    angle_order = np.argsort(np.arctan2(xy[:, 0], xy[:, 1]) % (2 * np.pi))  # clockwise from the top
    runs = np.count_nonzero(np.diff(block[angle_order]) != 0)
    assert runs == 2  # three domains -> two boundaries along the circle


def test_no_data_figure_keeps_the_title(tmp_path, captured):
    ps.plot_dynamics(pd.DataFrame(), tmp_path / "d.png", tmp_path / "d.pdf")
    assert captured[0].get_suptitle() == "Alignment over training (jaccard@0.5)"
    assert "no data: no checkpoints configured" in texts(captured[0])


def test_outputs_get_normal_permissions(tmp_path):
    """Temp files come from savefig, not mkstemp, so outputs are not owner-only (0600)."""
    old = os.umask(0o022)
    try:
        pe.plot_causal(causal_frame(), tmp_path / "c.png", tmp_path / "c.pdf")
    finally:
        os.umask(old)
    assert (tmp_path / "c.png").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "c.pdf").stat().st_mode & 0o777 == 0o644


def test_expert_layers_many_taus_get_a_colourbar(tmp_path, captured):
    loc = location_frame()
    loc = pd.concat([loc.assign(tau=loc["tau"] + d) for d in (0.0, 0.01, 0.02, 0.03)], ignore_index=True)
    loc = loc[loc["kind"] == "attention.dense"]  # 12 taus, one kind: one row of panels + colourbar
    pe.plot_expert_layers(loc, tmp_path / "l.png", tmp_path / "l.pdf", n_layers={"pythia-70m": 6})
    assert len(captured[0].axes) == 3 and captured[0].axes[0].get_legend() is None
