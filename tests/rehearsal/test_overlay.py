"""The rehearsal overlay changes sizes only, so the rehearsal runs paper.yaml's own workflow."""

from __future__ import annotations

import yaml

from rehearse import OVERLAY, merged, paper_config

# Leaf keys the overlay may set: counts, step budgets, lengths, batches (and the fake endpoint).
SIZE_KEYS = {"checkpoints", "batch_size", "mini_batch_size", "max_length", "min_positive", "max_concepts",
             "n_positive", "n_negative", "n_concepts", "k", "n_random", "max_steps", "warmup_steps",
             "n_prompts", "n_texts", "n_examples", "n_triples", "n_features", "n_prefixes", "prefix_tokens",
             "max_new_tokens", "n_samples"}
ENDPOINT_KEYS = {"base_url"}


def leaves(d: dict, path=()):
    for k, v in d.items():
        if isinstance(v, dict):
            yield from leaves(v, (*path, k))
        else:
            yield (*path, k), v


def lookup(d: dict, path):
    for k in path:
        if not isinstance(d, dict) or k not in d:
            return KeyError
        d = d[k]
    return d


def offending(overlay: dict, paper: dict) -> list[str]:
    bad = []
    for path, value in leaves(overlay):
        name, where = path[-1], ".".join(path)
        if lookup(paper, path[:-1]) is KeyError:
            bad.append(f"{where}: paper.yaml has no {'.'.join(path[:-1])} (the overlay may not add entries)")
        elif name not in SIZE_KEYS | ENDPOINT_KEYS:
            bad.append(f"{where}: not a size key")
        elif name == "checkpoints" and not set(value) <= set(lookup(paper, path) or ()):
            bad.append(f"{where}: checkpoints must be a subset of paper.yaml's")
        elif name == "base_url" and value != "{endpoint}":
            bad.append(f"{where}: endpoints point at the fake server only")
    return bad


def test_overlay_touches_only_size_keys():
    overlay = yaml.safe_load(OVERLAY.read_text())
    assert offending(overlay, paper_config()) == []


def test_overlay_check_catches_drift():
    paper = paper_config()
    assert offending({"models": {"pythia-70m": {"id": "EleutherAI/pythia-14m"}}}, paper)  # another model
    assert offending({"finetune": {"tasks": {"vader": {"method": "dpo"}}}}, paper)  # another method
    assert offending({"finetune": {"tasks": {"new": {"hyper": {"max_steps": 1}}}}}, paper)  # a new task
    assert offending({"models": {"pythia-1b": {"checkpoints": ["step2"]}}}, paper)  # a revision not in paper
    assert offending({"lfp": {"explainer": {"base_url": "https://example.org/v1"}}}, paper)


def test_merge_is_snakemakes():
    out = merged({"a": {"b": 1, "c": [1, 2]}, "d": 1}, {"a": {"c": [3]}})
    assert out == {"a": {"b": 1, "c": [3]}, "d": 1}
