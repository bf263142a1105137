"""The workflow as a whole: dry-runs of the shipped configs, lint, formatting, bad config, tiny run."""

import json
import math
import re
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
import yaml

from lensflow.core.cache import read_pooled
from lensflow.core.io import read_metadata
from run_checks import planned_jobs
from workflow_helpers import ROOT, copy_config, snakemake, tiny_workdir


@pytest.mark.parametrize("config", ["config.yaml", "paper.yaml"])
def test_dry_run_needs_no_network(tmp_path, config):
    res = snakemake(tmp_path, "-n", "--cores", "2", configfile=ROOT / "config" / config)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "cache_activations" in res.stdout + res.stderr
    assert not (tmp_path / "results").exists()


def test_paper_dry_run_plans_checkpoints_when_asked(tmp_path):
    target = "results/models/pythia-70m@step1000"
    res = snakemake(tmp_path, "-n", "--cores", "2", target, configfile=ROOT / "config" / "paper.yaml")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "materialise_model" in res.stdout + res.stderr


def test_paper_triples_come_from_test_splits(tmp_path):
    # LFP §3.3: triples from the IMDb / HH-RLHF test splits, not from the policies' training data
    targets = [f"results/lfp/triples/{t}.parquet" for t in ("vader", "hh", "toxic")]
    res = snakemake(tmp_path, "-n", "--cores", "2", *targets, configfile=ROOT / "config" / "paper.yaml")
    assert res.returncode == 0, res.stderr[-3000:]
    out = res.stdout + res.stderr
    assert planned_jobs(out)["lfp_triples"] == 3
    for split in ("imdb-test", "hh-rlhf-test"):
        assert f"results/data/{split}.parquet" in out
    for train in ("imdb", "hh-rlhf", "toxic-dpo"):
        assert f"results/data/{train}.parquet" not in out


def test_lint_and_format_are_clean():
    res = subprocess.run([sys.executable, "-m", "snakemake", "--lint"], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0 and "Congratulations" in res.stdout + res.stderr, res.stdout + res.stderr
    fmt = subprocess.run([sys.executable, "-m", "snakefmt", "--check", "Snakefile", "workflow/rules"], cwd=ROOT,
                         capture_output=True, text=True)
    assert fmt.returncode == 0, fmt.stderr


def test_bad_config_stops_before_any_job(tmp_path):
    cfg = yaml.safe_load((ROOT / "tests/config/tiny.yaml").read_text())
    cfg["activations"]["targets"][0]["model"] = "pythia-70m"
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(cfg))
    res = snakemake(tmp_path, "--cores", "1", configfile=tmp_path / "bad.yaml")
    assert res.returncode != 0
    assert "activations.targets.0.model" in res.stdout + res.stderr
    assert not (tmp_path / "results").exists()


def test_local_model_memory_counts_the_parameters_in_its_safetensors(tmp_path):
    """A local model's size is known at planning time from its safetensors headers (no weight read);
    its checkpoints and the policies tuned from it ask for memory by their own/base model's size."""
    from tiny_models import tiny_model

    work = tiny_workdir(tmp_path / "work")
    cfg = yaml.safe_load((ROOT / "tests/config/tiny.yaml").read_text())
    cfg["resources"]["model_memory"] = {"overhead_mb": 0, "copies": 100000}  # make the weights show
    config = tmp_path / "tiny-mem.yaml"
    config.write_text(yaml.safe_dump(cfg))
    targets = ["results/models/tiny-llama", "results/models/tiny-llama-3",
               "results/finetune/tiny-llama/vader/train_log.tsv"]
    res = snakemake(work, "-n", "--cores", "2", *targets, configfile=config)
    assert res.returncode == 0, res.stderr[-3000:]
    mem = {}
    for block in (res.stdout + res.stderr).split("\nrule ")[1:]:
        wc = re.search(r"wildcards: model=([^,\s]+)", block)
        if wc:
            mem[block.split(":", 1)[0], wc.group(1)] = int(re.search(r"resources: .*?\bmem_mb=(\d+)", block).group(1))
    n2, n3 = (sum(p.numel() for p in tiny_model("llama", n_layers=n).parameters()) for n in (2, 3))
    assert mem["materialise_model", "tiny-llama"] == math.ceil(100000 * n2 * 4 / 1e6)
    assert mem["materialise_model", "tiny-llama-3"] == math.ceil(100000 * n3 * 4 / 1e6) > mem[
        "materialise_model", "tiny-llama"]
    assert mem["lfp_rl", "tiny-llama"] == mem["materialise_model", "tiny-llama"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """The whole tiny DAG, run once for the tests below."""
    work = tiny_workdir(tmp_path_factory.mktemp("tiny"))
    config = copy_config(work)
    res = snakemake(work, "--cores", "2", configfile=config)
    assert res.returncode == 0, res.stderr[-8000:]
    return work, config


@pytest.mark.slow
def test_tiny_end_to_end(tiny_run):
    work, config = tiny_run
    pooled = work / "results/activations/tiny-llama/headlines/mlp-max.parquet"
    ids, acts = read_pooled(pooled)
    n_texts = len(pq.read_table(work / "results/data/headlines.parquet"))
    assert len(ids) == n_texts and set(acts) == {"model.layers.0.mlp", "model.layers.1.mlp"}
    meta = read_metadata(pooled)
    assert meta["model"] == "tiny-llama" and meta["corpus"] == "headlines" and meta["seed"] == 0
    tokens = pq.read_table(work / "results/activations/tiny-llama/headlines/mlp-tokens.parquet")
    assert tokens.num_rows == read_metadata(work / "results/activations/tiny-llama/headlines/mlp-tokens.parquet")["n_tokens"]
    inventory = (work / "results/tables/inventory.md").read_text()
    assert "tiny-llama" in inventory and "wordsim353" in inventory
    for log in ("models/tiny-llama.log", "data/headlines.log", "activations/tiny-llama/headlines/mlp-max.log"):
        assert (work / "results/logs" / log).is_file()
    again = snakemake(work, "-n", "--cores", "2", configfile=config)
    assert "Nothing to be done" in again.stdout + again.stderr


@pytest.mark.slow
def test_expertlens_outputs(tiny_run):
    work, _ = tiny_run
    import pandas as pd

    alignment = pd.read_parquet(work / "results/expertlens/alignment.parquet")
    assert {"neurons", "baseline"} <= set(alignment["source_type"])
    assert {"tiny-llama", "tiny-llama-3", "tiny-llama@step0", "tiny-llama@step1"} <= set(alignment["model"])
    # (the tiny tokenizer knows too few words for the input-embedding baseline to cover any pair)
    assert {"jaccard@0.5", "cosine_ap", "glove"} <= set(alignment["measure"])
    claims = pd.read_csv(work / "results/tables/expertlens_claims.csv")
    assert set(claims["verdict"]) <= {"supported", "not supported", "untestable"} and len(claims) > 5
    for fig in ("alignment", "expert_counts", "expert_layers", "stability", "scaling", "dynamics", "causal"):
        for ext in ("png", "pdf"):
            assert (work / f"results/figures/expertlens/{fig}.{ext}").stat().st_size > 1000
    concepts = pd.read_csv(work / "results/tables/expertlens_concepts.csv")
    assert concepts["reason"].notna().all()  # every candidate kept or dropped with a reason


@pytest.mark.slow
def test_finetune_outputs(tiny_run):
    work, _ = tiny_run
    import pandas as pd

    table = pd.read_csv(work / "results/tables/lfp_finetune.csv")
    assert set(table["task"]) == {"vader", "toxic"}
    div = pd.read_parquet(work / "results/finetune/tiny-llama/vader/divergence.parquet")
    assert len(div) == 2 and (div["divergence"] > 0).all()  # training moved every block
    prefs = read_metadata(work / "results/data/toxic-synthetic.parquet")
    assert prefs["synthetic"] is True
    # DPO judged on the pairs its training split off (issue 16 item 2), base vs tuned
    run = work / "results/finetune/tiny-llama/toxic"
    ev = pd.read_parquet(run / "eval_preferences.parquet")
    assert len(ev) == 12 and (ev["n"] > 0).all()
    split = json.loads((run / "model" / "lensflow_model.json").read_text())["source"]["pairs"]
    assert read_metadata(run / "eval_preferences.parquet")["pairs"]["heldout_sha256"] == split["heldout_sha256"]
    assert 0 < table.set_index("task").loc["toxic", "eval_n"] <= split["n_heldout"]  # too-long prompts dropped


@pytest.mark.slow
def test_lfp_outputs(tiny_run):
    work, _ = tiny_run
    import pandas as pd

    from lensflow.lfp.sae.model import load_saes

    run = work / "results/lfp/tiny-llama/vader"
    layers = json.loads((work / "results/finetune/tiny-llama/vader/layers.json").read_text())
    saes, meta = load_saes(run / "sae/n.safetensors")
    assert sorted(saes) == sorted(layers["highest"]) and meta["model"] == "tiny-llama" and meta["seed"] == 0
    big, _ = load_saes(run / "sae/2n.safetensors")
    assert all(big[layer].d_hidden == 2 * saes[layer].d_hidden for layer in saes)
    assert all(s.tied for s in saes.values())
    assert all(s.input_scale > 0 and s.input_scale != 1.0 for s in saes.values())  # lfp.sae.normalise_inputs
    cache = read_metadata(run / "activations.parquet")
    assert cache["model"] == "tiny-llama+vader" and cache["pooling"] == "none"  # the TUNED model's activations
    sae = pd.read_csv(work / "results/tables/lfp_sae.csv")
    assert {"n", "2n", "l1-0.01", "untied", "lowest"} <= set(sae["variant"])
    assert sae["heldout_fvu"].notna().all()
    probes = pd.read_csv(work / "results/tables/lfp_probes.csv")
    assert {"kendall_tau", "kendall_tau_xavier_baseline", "sign_accuracy_positive"} <= set(probes["measure"])
    assert "logistic_accuracy" in set(probes.loc[probes["task"] == "toxic", "measure"])
    # the base-model control: the base model's own cache, SAE and probe, and tuned - base in the tables
    assert read_metadata(run / "base/activations.parquet")["model"] == "tiny-llama"
    assert {"kendall_tau_base_model", "kendall_tau_tuned_minus_base"} <= set(probes["measure"])
    assert not (work / "results/lfp/tiny-llama/toxic/base_control.parquet").exists()  # vader only in tiny.yaml
    triples = pd.read_parquet(work / "results/lfp/triples/toxic.parquet")
    assert triples["synthetic"].all() and triples.groupby("triple_id").size().eq(3).all()
    ablation = pd.read_csv(work / "results/tables/lfp_ablation.csv")
    assert {"model", "sae", "related", "random"} <= set(ablation["condition"])
    claims = pd.read_csv(work / "results/tables/lfp_claims.csv")
    assert set(claims["verdict"]) <= {"supported", "not supported", "untestable"} and len(claims) >= 8
    for name in ("sae_training", "l1_sweep", "overlap", "probe_pca", "probe_error"):
        assert (work / f"results/figures/lfp/{name}_tiny-llama_vader.png").stat().st_size > 1000
    # toxic trains no L1 sweep in tiny.yaml: no placeholder figure is drawn for it
    assert not (work / "results/figures/lfp/l1_sweep_tiny-llama_toxic.png").exists()
    assert read_metadata(run / "sae/n_metrics.parquet")["normalise_inputs"] is True
    assert list((work / "results/lfp/explainer_cache").glob("*.json"))  # every explainer answer cached


@pytest.mark.slow
def test_single_figure_rebuilds_alone(tiny_run):
    work, config = tiny_run
    fig = work / "results/figures/expertlens/scaling.png"
    fig.unlink()
    plan = snakemake(work, "-n", "--cores", "1", "results/figures/expertlens/scaling.png", configfile=config)
    assert planned_jobs(plan.stdout) == {"fig_el_scaling": 1}, plan.stdout[-3000:]
    res = snakemake(work, "--cores", "1", "fig_el_scaling", configfile=config)
    assert res.returncode == 0 and fig.stat().st_size > 1000


@pytest.mark.parametrize("path", ["auto", "cached", "streaming"])
def test_expertise_path_picks_one_rule_and_its_inputs_at_dag_time(tmp_path, path):
    """expertlens.expertise.path: `streaming` plans el_expertise_streaming on the model and the sentences
    (a GPU job) and no el-units cache; `cached` and `auto` plan the cache and el_expertise (CPU)."""
    work = tiny_workdir(tmp_path)
    cfg = yaml.safe_load((ROOT / "tests/config/tiny.yaml").read_text())
    cfg["expertlens"]["expertise"] = {"path": path}
    (work / "c.yaml").write_text(yaml.safe_dump(cfg))
    res = snakemake(work, "-n", "--cores", "1", "results/expertlens/tiny-llama/mined/expertise.parquet",
                    configfile=work / "c.yaml")
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    jobs = planned_jobs(out)
    if path == "streaming":
        assert jobs.get("el_expertise_streaming") == 1 and "el_expertise" not in jobs
        assert "el-units" not in out and "cache_activations" not in jobs
        assert re.search(r"rule el_expertise_streaming:\n    input: results/models/tiny-llama, "
                         r"results/expertlens/datasets/mined/sentences.parquet", out)
    else:
        assert jobs.get("el_expertise") == 1 and "el_expertise_streaming" not in jobs
        assert jobs.get("cache_activations") == 1 and "results/activations/tiny-llama/el-mined/el-units.parquet" in out
