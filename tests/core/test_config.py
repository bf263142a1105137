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


def test_trainer_dataclasses_take_their_defaults_from_the_schema():
    """The schema's definitions rl_hyper / dpo_hyper own the trainers' hyperparameter defaults:
    RLHyper() and DPOHyper() are exactly them (same keys, same values), so a default or a field
    changed on one side only fails here."""
    from dataclasses import asdict

    from lensflow.core.defaults import hyper_defaults, load_schema
    from lensflow.lfp.finetune.dpo import DPOHyper
    from lensflow.lfp.finetune.rl import RLHyper

    defs = load_schema()["definitions"]
    for cls, name, methods in ((RLHyper, "rl_hyper", ("rl", "rloo", "grpo")), (DPOHyper, "dpo_hyper", ("dpo",))):
        schema_defaults = {k: v["default"] for k, v in defs[name]["properties"].items()}
        assert asdict(cls()) == schema_defaults
        assert all(hyper_defaults(m) == schema_defaults for m in methods)
    with pytest.raises(ValueError, match="unknown RL hyperparameter"):
        RLHyper.from_dict({"max_length": 8})  # a DPO key
    assert RLHyper.from_dict({"max_steps": 3}) == RLHyper(max_steps=3)


def test_config_hyper_keys_are_the_trainers_and_are_not_filled_in():
    """Every finetune.tasks.<name>.hyper key takes its type and bounds from the trainer that uses it
    (rl_hyper first for a shared key, whose bounds must then be dpo_hyper's too); seed and bf16 are no
    config keys. Validation leaves hyper as written (a rule param); task_hyper adds the method's
    defaults."""
    from lensflow.core.defaults import load_schema, task_hyper

    schema = load_schema()
    hyper = schema["properties"]["finetune"]["properties"]["tasks"]["additionalProperties"]["properties"]["hyper"]
    rl, dpo = (schema["definitions"][d]["properties"] for d in ("rl_hyper", "dpo_hyper"))
    assert set(hyper["properties"]) == (set(rl) | set(dpo)) - {"seed", "bf16"}
    for key, spec in hyper["properties"].items():
        assert spec == {"$ref": f"#/definitions/{'rl_hyper' if key in rl else 'dpo_hyper'}/properties/{key}"}
    bounds = lambda spec: {k: v for k, v in spec.items() if k not in ("default", "description")}  # noqa: E731
    assert {k: bounds(rl[k]) for k in set(rl) & set(dpo)} == {k: bounds(dpo[k]) for k in set(rl) & set(dpo)}
    cfg = copy.deepcopy(DEFAULT)
    cfg["finetune"]["tasks"]["vader"]["hyper"] = {"max_steps": 3}
    task = validate_config(cfg)["finetune"]["tasks"]["vader"]
    assert task["hyper"] == {"max_steps": 3}
    assert task_hyper(task) == {**{k: v["default"] for k, v in rl.items()}, "max_steps": 3}
    assert task_hyper({"method": "dpo", "hyper": {}})["max_length"] == dpo["max_length"]["default"]
    cfg["finetune"]["tasks"]["vader"]["hyper"] = {"top_p": 1.5}
    with pytest.raises(ConfigError, match=r"finetune\.tasks\.vader\.hyper\.top_p"):
        validate_config(cfg)


def test_lfp_sections_run_for_every_task_unless_listed():
    from lensflow.core.defaults import lfp_section_tasks

    cfg = {"finetune": {"tasks": {"a": {}, "b": {}}}, "lfp": {"ablations": {}, "base_control": {"tasks": ["b"]}}}
    assert lfp_section_tasks(cfg, "ablations") == ["a", "b"]
    assert lfp_section_tasks(cfg, "base_control") == ["b"]


def test_core_config_reads_the_trainer_defaults_without_torch():
    """The config checks and the capacity plan read the trainers' defaults from the schema; importing
    them (every Snakemake parse does) loads neither torch nor transformers."""
    import os
    import subprocess
    import sys

    code = ("import sys; import lensflow.core.config, lensflow.core.capacity, lensflow.core.capacity_report; "
            "heavy = {'torch', 'transformers'} & set(sys.modules); assert not heavy, sorted(heavy)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT / "workflow")})
    assert res.returncode == 0, res.stderr[-2000:]


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


def test_unknown_figure_options_names_the_typo_but_not_declared_figures():
    from lensflow.core.config import unknown_figure_options

    rules = ["fig_el_scaling", "el_alignment"]
    assert unknown_figure_options({"dpi": 150, "el_scaling": {"dpi": 100}}, rules) is None
    # declared in the schema (and filled with its defaults): fine even where its stage is off
    assert unknown_figure_options({"dpi": 150, "lfp_training": {"window": 5}}, rules) is None
    error = unknown_figure_options({"dpi": 150, "el_scalling": {}}, rules)
    assert error == "key 'figures.el_scalling': there is no fig_el_scalling rule; known figures are el_scaling"
