"""Load and validate a lensflow config before any job runs.

Two layers: the JSON schema (types, ranges, closed objects, defaults) and cross-references the
schema cannot express (a target naming a model that is not in the registry). Either failure is a
ConfigError whose message names the offending key, so the Snakefile can stop before anything is
written under results/.
"""

from __future__ import annotations

import copy
from pathlib import Path

import jsonschema
import yaml

from .config_checks import el_problems, finetune_problems, finetune_references, lfp_problems, lfp_references
from .defaults import load_schema


class ConfigError(ValueError):
    """A config that must not run; the message names the file and the key."""


def _with_defaults(validator_class):
    """A validator that also fills in `default:` values, so scripts never guess a default."""
    validate_props = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for key, sub in properties.items():
                if "default" in sub and key not in instance:
                    instance[key] = copy.deepcopy(sub["default"])
        yield from validate_props(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


_Validator = _with_defaults(jsonschema.Draft7Validator)


def _key(path) -> str:
    return ".".join(str(p) for p in path) or "<top level>"


def _describe(error: jsonschema.ValidationError) -> str:
    """One line per schema error, always naming the full key."""
    path = list(error.absolute_path)
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        return f"key '{_key(path + extra[:1])}': unknown key (allowed here: {', '.join(sorted(error.schema.get('properties', {})))})"
    if error.validator == "required":
        missing = error.message.split("'")[1]
        return f"key '{_key(path + [missing])}': required but missing"
    if error.validator == "propertyNames":
        return f"key '{_key(path)}': name {error.instance!r} must match {error.schema.get('pattern', '')}"
    return f"key '{_key(path)}': {error.message}"


# Keys that mean something only for some sources: given elsewhere they would be silently ignored.
SOURCE_ONLY = {
    "models": {"id": {"hub"}, "revision": {"hub"}, "checkpoints": {"hub", "local"}, "path": {"local"},
               "package": {"gguf_package"}, "file": {"gguf_package"}, "assemble": {"gguf_package"}},
    "data": {"id": {"hub"}, "revision": {"hub"}, "split": {"hub"}, "config_name": {"hub"},
             "path": {"local", "package"}, "package": {"package"}},
}


def inapplicable_keys(cfg: dict):
    """Yield messages for keys set on a registry entry whose source does not use them."""
    for registry, rules in SOURCE_ONLY.items():
        for name, spec in cfg[registry].items():
            for key, sources in rules.items():
                if key in spec and spec["source"] not in sources:
                    yield f"key '{registry}.{name}.{key}': only used with source {' or '.join(sorted(sources))}, not {spec['source']}"
        if registry == "data":
            for name, spec in cfg[registry].items():
                if "keep_labels" in spec and "label_column" not in spec:
                    yield f"key 'data.{name}.keep_labels': needs data.{name}.label_column"


def expand_models(models: dict) -> dict:
    """Registry name -> spec, with each `checkpoints:` revision as its own model '<name>@<rev>'.

    Hub models take the checkpoint as their revision (Pythia's `step1000`); local models as a
    sub-folder of their path (`<path>/<rev>`), so tests can use tiny local checkpoints.
    """
    out = {}
    for name, spec in models.items():
        out[name] = spec
        base = {k: v for k, v in spec.items() if k != "checkpoints"}
        for rev in spec.get("checkpoints", []):
            if spec["source"] == "local":
                out[f"{name}@{rev}"] = {**base, "path": f"{spec['path']}/{rev}"}
            else:
                out[f"{name}@{rev}"] = {**base, "revision": rev}
    return out


def references(cfg: dict):
    """Yield (key, value, registry, allowed) for every cross-reference in the config.

    Stages add their own references here, so a dangling one is caught before any job runs.
    """
    models = expand_models(cfg["models"])
    texts = {n for n, d in cfg["data"].items() if d["kind"] == "texts"}
    caches = set(cfg["activations"]["caches"])
    for i, t in enumerate(cfg["activations"]["targets"]):
        yield f"activations.targets.{i}.model", t["model"], "models", set(models)
        yield f"activations.targets.{i}.corpus", t["corpus"], "data (kind: texts)", texts
        yield f"activations.targets.{i}.cache", t["cache"], "activations.caches", caches
    el = cfg.get("expertlens")
    if el:
        pairs = {n for n, d in cfg["data"].items() if d["kind"] == "word_pairs"}
        for i, m in enumerate(el["models"]):
            yield f"expertlens.models.{i}", m, "models", set(models)
        for i, p in enumerate(el["pairs"]):
            yield f"expertlens.pairs.{i}", p, "data (kind: word_pairs)", pairs
        for i, c in enumerate(el["corpora"]):
            yield f"expertlens.corpora.{i}", c, "data (kind: texts)", texts
        for name, ds in el["datasets"].items():
            if ds["source"] == "generated" and ds["backend"] == "local" and "generator" in ds:
                yield f"expertlens.datasets.{name}.generator", ds["generator"], "models", set(models)
        with_checkpoints = {n for n, s in cfg["models"].items() if s.get("checkpoints")}
        for i, m in enumerate(el["dynamics"]):
            yield f"expertlens.dynamics.{i}", m, "models with checkpoints", with_checkpoints
    yield from finetune_references(cfg, set(models), texts)
    yield from lfp_references(cfg, set(models), texts)


def validate_config(cfg: dict, source: str = "config") -> dict:
    """Validate (and fill defaults into) a copy of `cfg`; raise ConfigError naming the key."""
    if not isinstance(cfg, dict):
        raise ConfigError(f"{source}: the config must be a mapping, got {type(cfg).__name__}")
    given, cfg = copy.deepcopy(cfg), copy.deepcopy(cfg)  # `given`: as written, before defaults
    schema = load_schema()
    errors = sorted(_Validator(schema).iter_errors(cfg), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        lines = sorted({_describe(e) for e in errors})
        raise ConfigError(f"{source}: invalid config\n  " + "\n  ".join(lines))
    problems = list(inapplicable_keys(given)) + [
        f"key '{key}': {value!r} is not defined in {registry} (defined: {', '.join(sorted(allowed)) or 'none'})"
        for key, value, registry, allowed in references(cfg)
        if value not in allowed
    ]
    clash = set(cfg.get("finetune", {}).get("synthetic_preferences", {})) & set(cfg["data"])
    problems += list(el_problems(cfg)) + list(lfp_problems(cfg)) + list(finetune_problems(cfg))
    problems += [f"key 'finetune.synthetic_preferences.{n}': also a data set name (both write results/data/{n}.parquet)"
                 for n in sorted(clash)]
    if problems:
        raise ConfigError(f"{source}: invalid config\n  " + "\n  ".join(problems))
    return cfg


def load_config(path: str | Path) -> dict:
    """Read a YAML config file and validate it."""
    path = Path(path)
    try:
        cfg = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    return validate_config(cfg, source=str(path))


def unknown_figure_options(figures: dict, rule_names) -> str | None:
    """The error for a `figures.<name>` that names no figure rule (a typo would change nothing), or
    None. Names the schema declares (e.g. figures.lfp_training, filled with its defaults) are
    validated there, and their figure may be absent from a run that lacks its stage."""
    declared = set(load_schema()["properties"]["figures"]["properties"])
    known = sorted(r[len("fig_"):] for r in rule_names if r.startswith("fig_"))
    bad = [n for n in figures if n not in declared and n not in known]
    return f"key 'figures.{bad[0]}': there is no fig_{bad[0]} rule; known figures are " + ", ".join(known) if bad else None
