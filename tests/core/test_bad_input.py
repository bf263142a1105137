"""Bad input gives a clear error naming the file or key, and leaves nothing partial behind.

Library-level: truncated and corrupted Parquet, an empty concept name, a concept without
sentences, a module pattern that matches nothing, a model folder without weights, a NaN loss.
Through Snakemake: a truncated input table fails the rule, and the rule's log names the file.
"""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from failure_logs import failure_report
from lensflow.core import io, models
from lensflow.core.cache import CacheSpec, cache_activations, read_pooled
from lensflow.core.hooks import NoModuleMatched
from lensflow.expertlens.concepts import build_bank
from lensflow.expertlens.pipeline import check_membership
from run_checks import leftovers
from tiny_models import save_tiny, tiny_model, tiny_tokenizer
from workflow_helpers import copy_config, snakemake


def visible(folder):
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture
def table(tmp_path):
    path = tmp_path / "t.parquet"
    io.write_table(pd.DataFrame({"text_id": range(200), "text": [f"sentence {i}" for i in range(200)]}), path,
                   {"seed": 0})
    return path


def test_truncated_parquet_names_the_file(table):
    table.write_bytes(table.read_bytes()[: table.stat().st_size // 2])
    for read in (io.read_table, io.read_metadata, read_pooled):
        with pytest.raises(io.TableError, match=f"^{table}: not a readable Parquet file"):
            read(table)


def test_corrupted_parquet_names_the_file(table):
    data = bytearray(table.read_bytes())
    data[-60:-8] = b"\xff" * 52  # scribble over the footer's metadata (the magic bytes stay)
    table.write_bytes(bytes(data))
    with pytest.raises(io.TableError, match=f"^{table}: not a readable Parquet file"):
        io.read_table(table)
    (table.parent / "empty.parquet").write_bytes(b"")
    with pytest.raises(io.TableError, match="empty.parquet: not a readable Parquet file"):
        io.read_table(table.parent / "empty.parquet")


def test_missing_column_names_file_and_column(table):
    with pytest.raises(io.TableError, match=rf"{table}: missing column\(s\) \['label'\]"):
        io.read_table(table, required=["text_id", "label"])


def test_empty_concept_name_is_refused():
    with pytest.raises(ValueError, match="empty concept name ''"):
        build_bank({"cat": ["the cat sat"], "": ["a film"]}, n_negative=2, seed=0)
    membership = pd.DataFrame({"concept": ["cat", " "], "text_id": [0, 1], "label": ["positive", "positive"]})
    with pytest.raises(io.TableError, match=r"m.parquet: 1 row\(s\) with an empty concept name \(column 'concept'\)"):
        check_membership(membership, "m.parquet")


def test_concept_without_sentences_is_refused():
    with pytest.raises(ValueError, match=r"concept\(s\) \['dog'\] have no positive sentences"):
        build_bank({"cat": ["the cat sat"], "dog": []}, n_negative=2, seed=0)
    membership = pd.DataFrame({"concept": ["cat", "cat", "dog"], "text_id": [0, 1, 0],
                               "label": ["positive", "negative", "negative"]})
    with pytest.raises(io.TableError, match=r"membership.parquet: concept\(s\) \['dog'\] have no positive"):
        check_membership(membership, "membership.parquet")
    check_membership(membership[membership.concept == "cat"], "membership.parquet")  # a good one passes


def test_module_pattern_matching_nothing_names_it(tmp_path):
    texts = pd.DataFrame({"text_id": [0, 1], "text": ["the cat sat", "a good film"]})
    out = tmp_path / "cache" / "c.parquet"
    with pytest.raises(NoModuleMatched, match=r"module pattern 'model.layers.\*.attn' matches no module"):
        cache_activations(tiny_model(), tiny_tokenizer(), texts, CacheSpec(modules=["model.layers.*.attn"]), out)
    assert not out.parent.exists() or visible(out.parent) == []


def test_model_folder_without_weights(tmp_path):
    folder = save_tiny(tmp_path / "m")
    for w in folder.glob("*.safetensors"):
        w.unlink()
    with pytest.raises(models.ModelUnavailable, match=f"{folder}: not a model folder"):
        models.load(folder)
    out = tmp_path / "results" / "models" / "broken"
    with pytest.raises(models.ModelUnavailable, match=f"broken: local model folder '{folder}' has no config.json or "
                                                      "no weights"):
        models.materialise({"source": "local", "path": str(folder)}, "broken", out)
    assert visible(out.parent) == []  # no folder, no temporary


def test_nan_loss_stops_training_and_saves_nothing(tmp_path):
    from safetensors.torch import load_file, save_file

    from lensflow.lfp.finetune.dpo import DPOHyper, train_dpo

    base = save_tiny(tmp_path / "base")
    weights = base / "model.safetensors"
    state = load_file(weights)
    state["model.norm.weight"] = torch.full_like(state["model.norm.weight"], float("nan"))
    save_file(state, weights, metadata={"format": "pt"})
    pairs = pd.DataFrame({"prompt": ["the cat sat on", "this film is"], "chosen": ["the mat", "very good"],
                          "rejected": ["bad bad", "awful"]})
    hyper = DPOHyper(max_steps=2, batch_size=2, max_length=16, max_prompt_length=8, warmup_steps=0, seed=0)
    out, tsv = tmp_path / "run" / "model", tmp_path / "run" / "train_log.tsv"
    with pytest.raises(FloatingPointError, match=r"DPO tiny-nan: loss is nan at step 1; training diverged"):
        train_dpo(base, out, pairs, hyper, log_path_tsv=tsv, is_chat=False, name="tiny-nan")
    assert not out.exists() and not tsv.exists()
    assert [p for p in visible(out.parent) if p.startswith(".")] == []


def test_workflow_rule_log_names_a_truncated_input(tmp_path):
    """Through Snakemake: a truncated input table fails its consumer, whose log names the file."""
    work = tmp_path / "work"
    work.mkdir()
    config = copy_config(work)
    data = ["results/data/headlines.parquet", "results/data/reviews.parquet", "results/data/wordsim353.parquet"]
    res = snakemake(work, "--cores", "2", *data, configfile=config)
    assert res.returncode == 0, failure_report(res, work)
    bad = work / data[0]
    bad.write_bytes(bad.read_bytes()[:500])

    res = snakemake(work, "--cores", "1", "results/expertlens/concepts.parquet", configfile=config)
    assert res.returncode != 0
    report = failure_report(res, work)
    log = work / "results/logs/expertlens/concepts.log"
    assert f"===== {log}" in report, report
    assert f"TableError: {data[0]}: not a readable Parquet file" in log.read_text(), report
    for out in ("concepts.parquet", "mined_sentences.parquet"):
        assert not (work / "results/expertlens" / out).exists()
    assert leftovers(work / "results") == []
