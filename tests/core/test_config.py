"""Config validation: every kind of bad config is rejected with a message naming the key."""

import copy
from pathlib import Path

import pytest
import yaml

from lensflow.core.config import ConfigError, expand_models, load_config, validate_config

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = yaml.safe_load((ROOT / "config/config.yaml").read_text())


def test_shipped_configs_validate_and_get_defaults():
    for name in ("config.yaml", "paper.yaml"):
        cfg = load_config(ROOT / "config" / name)
        assert cfg["activations"]["caches"]
        assert all("hook" in c for c in cfg["activations"]["caches"].values())  # default filled in
        assert cfg["resources"]["gpu_job"]["mem_mb"] > 0


def _set(path, value):
    def mutate(cfg):
        *head, last = path
        node = cfg
        for k in head:
            node = node[k]
        node[last] = value
    return mutate


def _drop(path):
    def mutate(cfg):
        *head, last = path
        node = cfg
        for k in head:
            node = node[k]
        del node[last]
    return mutate


BAD = {
    "unknown top-level key": (_set(["modelz"], {}), "modelz"),
    "unknown nested key": (_set(["models", "smollm2-135m", "revsion"], "x"), "models.smollm2-135m.revsion"),
    "wrong type": (_set(["activations", "batch_size"], "sixteen"), "activations.batch_size"),
    "out of range": (_set(["activations", "batch_size"], 0), "activations.batch_size"),
    "negative seed": (_set(["seed"], -1), "seed"),
    "bad enum (model source)": (_set(["models", "smollm2-135m", "source"], "ftp"), "models.smollm2-135m.source"),
    "bad enum (pooling)": (_set(["activations", "caches", "mlp-max", "pooling"], "median"), "activations.caches.mlp-max.pooling"),
    "bad bf16_autocast": (_set(["activations", "bf16_autocast"], "sometimes"), "activations.bf16_autocast"),
    "missing model source": (_drop(["models", "smollm2-135m", "source"]), "models.smollm2-135m.source"),
    "hub model without id": (_set(["models", "smollm2-135m"], {"source": "hub"}), "models.smollm2-135m.id"),
    "package data without path": (_drop(["data", "reviews", "path"]), "data.reviews.path"),
    "missing data kind": (_drop(["data", "reviews", "kind"]), "data.reviews.kind"),
    "no models at all": (_set(["models"], {}), "models"),
    "dangling model reference": (_set(["activations", "targets", 0, "model"], "pythia-70m"), "activations.targets.0.model"),
    "dangling corpus reference": (_set(["activations", "targets", 0, "corpus"], "simlex999"), "activations.targets.0.corpus"),
    "dangling cache reference": (_set(["activations", "targets", 0, "cache"], "resid"), "activations.targets.0.cache"),
    "empty module list": (_set(["activations", "caches", "mlp-max", "modules"], []), "activations.caches.mlp-max.modules"),
    "key for another source": (_set(["models", "smollm2-135m", "revision"], "step1"), "models.smollm2-135m.revision"),
    "keep_labels without label_column": (_set(["data", "headlines", "keep_labels"], ["a"]), "data.headlines.keep_labels"),
    "expertlens model not in registry": (_set(["expertlens", "models", 1], "pythia-1b"), "expertlens.models.1"),
    "expertlens pairs not word pairs": (_set(["expertlens", "pairs", 0], "reviews"), "expertlens.pairs.0"),
    "generated data set without generator": (_drop(["expertlens", "datasets", "generated", "generator"]),
                                             "expertlens.datasets.generated.generator"),
    "bad generation backend": (_set(["expertlens", "datasets", "generated", "backend"], "http"),
                               "expertlens.datasets.generated.backend"),
    "openai generation without base_url": (_set(["expertlens", "datasets", "generated"],
                                                {"source": "generated", "backend": "openai", "model": "m"}),
                                           "expertlens.datasets.generated.base_url"),
    "openai generation with a registry generator": (_set(["expertlens", "datasets", "generated", "backend"], "openai"),
                                                    "expertlens.datasets.generated.generator"),
    "endpoint key on a local generator": (_set(["expertlens", "datasets", "generated", "base_url"], "http://x/v1"),
                                          "expertlens.datasets.generated.base_url"),
    "generator on a mined data set": (_set(["expertlens", "datasets", "mined", "generator"], "smollm2-135m"),
                                      "expertlens.datasets.mined.generator"),
    "dynamics model without checkpoints": (_set(["expertlens", "dynamics"], ["smollm2-135m"]), "expertlens.dynamics.0"),
    "bad registry name": (_set(["models", "my model!"], {"source": "local", "path": "x"}), "models"),
    "openai rewriter without base_url": (_set(["lfp", "triples", "rewriter"], {"backend": "openai", "model": "m"}),
                                         "lfp.triples.rewriter.base_url"),
    "local rewriter without model": (_set(["lfp", "triples", "rewriter"], {"backend": "local"}),
                                     "lfp.triples.rewriter.model"),
    "local rewriter not in registry": (_set(["lfp", "triples", "rewriter"], {"backend": "local", "model": "llama-3"}),
                                       "lfp.triples.rewriter.model"),
    "base control of an unknown task": (_set(["lfp", "base_control", "tasks"], ["sentiment"]),
                                        "lfp.base_control.tasks.0"),
    "triples data of an unknown task": (_set(["lfp", "triples", "data"], {"sentiment": "reviews"}),
                                        "lfp.triples.data.sentiment"),
    "vader triples from preferences": (_set(["lfp", "triples", "data"], {"vader": "hh-synthetic"}),
                                       "lfp.triples.data.vader"),
    "hh triples from a text corpus": (_set(["lfp", "triples", "data"], {"hh": "headlines"}), "lfp.triples.data.hh"),
    "triples from an unknown data set": (_set(["lfp", "triples", "data"], {"toxic": "hh-rlhf-test"}),
                                         "lfp.triples.data.toxic"),
    "categories of another kind": (_set(["expertlens", "categories"], "reviews"), "expertlens.categories"),
    "categories neither data set nor file": (_set(["expertlens", "categories"], "wordnet"), "expertlens.categories"),
    "categories data without pos": (_drop(["data", "wordnet-lexnames", "pos"]), "data.wordnet-lexnames.pos"),
    "bad part of speech": (_set(["data", "wordnet-lexnames", "pos"], ["noun", "satellite"]),
                           "data.wordnet-lexnames.pos.1"),
    "too few permutations": (_set(["expertlens", "n_perm"], 10), "expertlens.n_perm"),
    "no detection contexts": (_set(["lfp", "detection", "k"], 0), "lfp.detection.k"),
    "detection alpha out of range": (_set(["lfp", "detection", "alpha"], 1.5), "lfp.detection.alpha"),
    # 24 held-out + 16 steps x 8 prompts cannot come from at most 100 reviews
    "rl prompts beyond the reviews' max_rows": (_set(["data", "reviews", "max_rows"], 100), "finetune.eval.n_prompts"),
    # 16 held-out prompts + one batch of 4 training pairs cannot come from at most 18 synthetic prompts
    "dpo held-out prompts beyond the synthetic prompts": (
        _set(["finetune", "synthetic_preferences", "hh-synthetic", "n_prompts"], 18), "finetune.dpo_eval.n_prompts"),
    "dpo held-out prompts below 2": (_set(["finetune", "dpo_eval", "n_prompts"], 1), "finetune.dpo_eval.n_prompts"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_config_names_the_key(case):
    mutate, key = BAD[case]
    cfg = copy.deepcopy(DEFAULT)
    mutate(cfg)
    with pytest.raises(ConfigError) as err:
        validate_config(cfg, source="config/config.yaml")
    msg = str(err.value)
    assert "config/config.yaml" in msg
    assert f"'{key}'" in msg, msg


def test_validation_does_not_mutate_input():
    cfg = copy.deepcopy(DEFAULT)
    validate_config(cfg)
    assert cfg == DEFAULT


def test_unreadable_files_are_named(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: [unclosed")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_config(bad)


def test_triples_data_accepts_matching_kinds():
    cfg = copy.deepcopy(DEFAULT)
    cfg["lfp"]["triples"]["data"] = {"vader": "headlines", "hh": "toxic-synthetic"}
    assert validate_config(cfg)["lfp"]["triples"]["data"] == {"vader": "headlines", "hh": "toxic-synthetic"}


def test_checkpoints_expand_into_models():
    models = expand_models({"p": {"source": "hub", "id": "E/p", "checkpoints": ["step1", "step512"]}})
    assert set(models) == {"p", "p@step1", "p@step512"}
    assert models["p@step512"]["revision"] == "step512"
    assert "checkpoints" not in models["p@step1"]


def test_generated_data_set_from_an_endpoint_validates():
    cfg = copy.deepcopy(DEFAULT)
    cfg["expertlens"]["datasets"]["api"] = {"source": "generated", "backend": "openai", "model": "any-instruct",
                                            "base_url": "http://127.0.0.1:8000/v1", "api_key_env": None}
    ds = validate_config(cfg)["expertlens"]["datasets"]
    assert ds["api"]["timeout"] == 60 and ds["api"]["api_key_env"] is None and "generator" not in ds["api"]
    assert ds["generated"]["backend"] == "local" and ds["generated"]["api_key_env"] == "OPENAI_API_KEY"


def test_rl_prompts_must_fit_the_reviews_before_any_job_runs():
    """Held-out evaluation prompts and training prompts come from one review set (issue 12, item 2):
    where its size is bounded in the config (max_rows), a config that cannot supply both fails here."""
    paper = yaml.safe_load((ROOT / "config/paper.yaml").read_text())
    paper["data"]["imdb"]["max_rows"] = 1000  # max_steps 0 (one epoch) needs 1000 held out + one batch of 64
    with pytest.raises(ConfigError) as err:
        validate_config(paper, source="paper.yaml")
    msg = str(err.value)
    for key in ("finetune.eval.n_prompts", "finetune.tasks.vader.hyper.max_steps",
                "finetune.tasks.vader.hyper.batch_size", "finetune.min_chars", "data.imdb.max_rows"):
        assert key in msg, msg
    assert "1064" in msg, msg
    paper["data"]["imdb"]["max_rows"] = 1064
    validate_config(paper)
    cfg = copy.deepcopy(DEFAULT)
    cfg["data"]["reviews"]["max_rows"] = 152  # 24 held out + 16 steps x 8 prompts
    validate_config(cfg)
    cfg["finetune"]["tasks"]["vader"]["n_prompts"] = 200  # an explicit training count wins
    with pytest.raises(ConfigError, match="finetune.tasks.vader.n_prompts"):
        validate_config(cfg)


def test_rl_hyper_defaults_read_without_importing_torch():
    """config_checks.py reads RLHyper's and DPOHyper's defaults from rl.py's and dpo.py's source
    (importing them would load torch into every Snakemake parse, and core imports no lfp module);
    they must be the dataclasses' own."""
    from dataclasses import asdict

    from lensflow.core.config_checks import dpo_hyper_defaults, rl_hyper_defaults
    from lensflow.lfp.finetune.dpo import DPOHyper
    from lensflow.lfp.finetune.rl import RLHyper

    assert rl_hyper_defaults() == asdict(RLHyper())
    assert dpo_hyper_defaults() == asdict(DPOHyper())


def test_bf16_autocast_is_auto_by_default_and_in_both_configs():
    """Precision chosen by the hardware (issue 13, item 1): `auto` is the schema default and what both
    shipped configs say; `true` / `false` still validate and force it."""
    for name in ("config.yaml", "paper.yaml"):
        assert yaml.safe_load((ROOT / "config" / name).read_text())["activations"]["bf16_autocast"] == "auto", name
        assert load_config(ROOT / "config" / name)["activations"]["bf16_autocast"] == "auto", name
    cfg = copy.deepcopy(DEFAULT)
    del cfg["activations"]["bf16_autocast"]
    assert validate_config(cfg)["activations"]["bf16_autocast"] == "auto"
    for forced in (True, False):
        cfg["activations"]["bf16_autocast"] = forced
        assert validate_config(cfg)["activations"]["bf16_autocast"] is forced


def test_sae_tokens_must_fit_the_task_texts_before_any_job_runs():
    """Issue 15, item 2: lfp.n_texts is checked against what the SAEs train on. At most lfp.max_length
    tokens a text, the training texts (lfp.n_texts less the held-out share) must hold lfp.sae.n_examples
    in whole batches; paper.yaml's floor is 325 texts (293 training texts x 256 = 75008 = 2344 x 32)."""
    paper = yaml.safe_load((ROOT / "config/paper.yaml").read_text())
    assert paper["lfp"]["n_texts"] == 2000 and paper["lfp"]["dtype"] == "float16"
    assert "repeat_tokens" not in paper["lfp"]["sae"]  # paper scale: distinct tokens (schema default false)
    for n in (325, 2000):
        paper["lfp"]["n_texts"] = n
        validate_config(paper)
    paper["lfp"]["n_texts"] = 324  # 292 training texts x 256 = 74752 < 75008
    with pytest.raises(ConfigError) as err:
        validate_config(paper, source="paper.yaml")
    msg = str(err.value)
    for key in ("key 'lfp.n_texts'", "lfp.max_length=256", "lfp.heldout_fraction", "lfp.sae.n_examples=75000",
                "lfp.sae.batch_size=32", "lfp.sae.repeat_tokens", "292 training texts", "at most 74752", "75008"):
        assert key in msg, msg
    paper["lfp"]["sae"]["repeat_tokens"] = True  # passes over the same tokens again: allowed
    validate_config(paper)
    cfg = load_config(ROOT / "config/config.yaml")
    assert cfg["lfp"]["sae"]["repeat_tokens"] is True  # the offline texts are short


def test_n_heldout_texts_is_the_split_rule():
    import numpy as np

    from lensflow.core.config_checks import n_heldout_texts
    from lensflow.lfp.sae.data import split_texts

    for n, f in [(2, 0.5), (10, 0.1), (325, 0.1), (324, 0.1), (2000, 0.1), (7, 0.99)]:
        assert len(split_texts(np.arange(n), f)[1]) == n_heldout_texts(n, f)
