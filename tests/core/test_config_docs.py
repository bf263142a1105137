"""config/README.md documents every key of the config schema, with the schema's defaults.

Key paths are dotted; `<name>` stands for a registry entry (an object whose entries are given by
`additionalProperties`) and `[]` for an item of a list of objects, as config/README.md explains.
"""

import copy
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_PATH = ROOT / "workflow" / "schemas" / "config.schema.yaml"
README_PATH = ROOT / "config" / "README.md"
NO_DEFAULT = "—"


def _resolve(node: dict, root: dict) -> dict:
    """Follow local `$ref`s (`#/definitions/...`); sibling keys of a `$ref` are kept on top."""
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith("#/"), f"only local $refs are supported, got {ref!r}"
        target = root
        for part in ref[2:].split("/"):
            target = target[part]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def _children(node: dict, root: dict):
    """(suffix, child schema) for every key a config can hold directly under `node`."""
    parts = [node]
    for key in ("allOf", "anyOf", "oneOf"):
        for sub in node.get(key, []):
            sub = _resolve(sub, root)
            parts += [sub, *(_resolve(sub[k], root) for k in ("then", "else") if k in sub)]
    seen = set()
    for part in parts:
        for name, sub in part.get("properties", {}).items():
            if name not in seen:
                seen.add(name)
                yield f".{name}", sub
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):  # a registry: any name -> this schema
        yield ".<name>", extra
    items = node.get("items")
    if isinstance(items, dict):
        items = _resolve(items, root)
        if items.get("properties") or isinstance(items.get("additionalProperties"), dict):
            yield "[]", items  # a list of objects: its items' keys are documented as `key[].sub`


def schema_paths(schema: dict) -> dict[str, dict]:
    """Every key path in `schema` (containers and leaves) -> its resolved schema, in schema order."""
    out = {}

    def walk(node, prefix):
        node = _resolve(node, schema)
        for suffix, child in _children(node, schema):
            path = (prefix + suffix).lstrip(".")
            child = _resolve(child, schema)
            if path not in out:
                out[path] = child
                walk(child, path)

    walk(schema, "")
    return out


def leaf_paths(schema: dict) -> set[str]:
    paths = schema_paths(schema)
    return {p for p in paths if not any(q.startswith(p + ".") or q.startswith(p + "[]") for q in paths)}


def undocumented(schema: dict, text: str) -> list[str]:
    """Key paths of `schema` that `text` never names as `path` (in backticks)."""
    return [p for p in schema_paths(schema) if f"`{p}`" not in text]


def key_rows(text: str) -> dict[str, list[str]]:
    """The README's key tables: rows of 6 cells whose first cell is a backticked key path."""
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 6 and re.fullmatch(r"`[^`]+`", cells[0]):
            rows[cells[0].strip("`")] = cells
    return rows


@pytest.fixture(scope="module")
def schema():
    return yaml.safe_load(SCHEMA_PATH.read_text())


@pytest.fixture(scope="module")
def readme():
    return README_PATH.read_text()


def test_walker_finds_registries_refs_and_list_items(schema):
    paths = schema_paths(schema)
    for expected in [
        "seed",
        "models.<name>.checkpoints",  # registry through additionalProperties + $ref
        "data.<name>.scale",
        "activations.caches.<name>.pooling",
        "activations.targets[].corpus",  # list of objects
        "resources.gpu_job.runtime",  # $ref to a shared definition
        "resources.cpu_job.mem_mb",
    ]:
        assert expected in paths
    assert "models.<name>.checkpoints[]" not in paths  # a list of strings is documented at its key
    assert "activations.targets[].corpus" in leaf_paths(schema)
    assert "activations" not in leaf_paths(schema)
    assert len(leaf_paths(schema)) > 40


def test_every_schema_key_is_documented(schema, readme):
    missing = undocumented(schema, readme)
    assert not missing, f"keys in {SCHEMA_PATH.name} not documented in config/README.md: {missing}"


def test_an_undocumented_new_key_is_caught(schema, readme):
    """Adding keys anywhere in the schema (top level, a $ref'd definition, a registry, a list item) fails."""
    changed = copy.deepcopy(schema)
    changed["properties"]["fake_top"] = {"type": "integer"}
    changed["definitions"]["dataset"]["properties"]["fake_data_key"] = {"type": "string"}
    changed["properties"]["resources"]["properties"]["gpu_job"]["properties"]["fake_gpus"] = {"type": "integer"}
    targets = changed["properties"]["activations"]["properties"]["targets"]
    targets["items"]["properties"]["fake_target_key"] = {"type": "string"}
    changed["properties"]["activations"]["properties"]["fake_registry"] = {
        "type": "object",
        "additionalProperties": {"type": "object", "properties": {"fake_leaf": {"type": "string"}}},
    }
    changed["definitions"]["model"]["allOf"].append({"then": {"properties": {"fake_then": {"type": "string"}}}})
    assert sorted(undocumented(changed, readme)) == sorted([
        "fake_top",
        "data.<name>.fake_data_key",
        "resources.gpu_job.fake_gpus",
        "activations.targets[].fake_target_key",
        "activations.fake_registry",
        "activations.fake_registry.<name>",
        "activations.fake_registry.<name>.fake_leaf",
        "models.<name>.fake_then",
    ])
    # ... and documenting them (in backticks) makes the check pass again.
    assert undocumented(changed, readme + "".join(f" `{p}`" for p in undocumented(changed, readme))) == []


def test_every_key_has_a_table_row_and_no_row_is_stale(schema, readme):
    paths, rows = schema_paths(schema), key_rows(readme)
    assert sorted(set(paths) - set(rows)) == [], "keys without a row in a key table"
    assert sorted(set(rows) - set(paths)) == [], "rows for keys the schema does not have"


def test_documented_defaults_match_the_schema(schema, readme):
    rows = key_rows(readme)
    wrong = []
    for path, node in schema_paths(schema).items():
        cell = rows[path][2]
        if "default" in node:
            m = re.match(r"`([^`]*)`", cell)
            if not m or yaml.safe_load(m.group(1)) != node["default"]:
                wrong.append(f"{path}: README says {cell!r}, schema default {node['default']!r}")
        elif not cell.startswith(NO_DEFAULT):
            wrong.append(f"{path}: README says {cell!r}, schema has no default")
    assert not wrong, "\n".join(wrong)


def test_shipped_configs_use_only_documented_keys(readme):
    """Every key path used in config.yaml and paper.yaml is named in the README (names -> <name>)."""

    def used(node, prefix, registry=False):
        if isinstance(node, dict):
            for key, value in node.items():
                path = f"{prefix}.<name>" if registry else f"{prefix}.{key}".lstrip(".")
                yield path
                yield from used(value, path, registry=path in ("models", "data", "activations.caches", "expertlens.datasets", "finetune.tasks", "finetune.synthetic_preferences", "lfp.sae.alpha_by_model", "lfp.triples.data"))
        elif isinstance(node, list) and node and isinstance(node[0], dict):
            for item in node:
                yield from used(item, prefix + "[]")

    for name in ("config.yaml", "paper.yaml"):
        cfg = yaml.safe_load((ROOT / "config" / name).read_text())
        missing = sorted({p for p in used(cfg, "") if f"`{p}`" not in readme})
        assert not missing, f"config/{name} uses keys config/README.md does not document: {missing}"


def test_hyper_rows_show_each_methods_default(schema, readme):
    """The trainer hyperparameters (finetune.tasks.<name>.hyper.*) have a default per method, owned by
    the schema's definitions rl_hyper and dpo_hyper and not filled in during validation; each row
    shows them as `v` RL, `w` DPO (one for a key only one trainer has), and they must be the schema's."""
    defaults = {label: {k: v["default"] for k, v in schema["definitions"][name]["properties"].items()}
                for label, name in (("RL", "rl_hyper"), ("DPO", "dpo_hyper"))}
    rows, prefix = key_rows(readme), "finetune.tasks.<name>.hyper."
    keys = [p[len(prefix):] for p in schema_paths(schema) if p.startswith(prefix)]
    assert keys, "no hyper keys found"
    wrong = []
    for key in keys:
        cell = rows[prefix + key][2]
        shown = {label: yaml.safe_load(value) for value, label in re.findall(r"`([^`]*)` (RL|DPO)\b", cell)}
        expected = {label: d[key] for label, d in defaults.items() if key in d}
        if shown != expected:
            wrong.append(f"{prefix}{key}: README says {cell!r}, schema defaults {expected!r}")
    assert not wrong, "\n".join(wrong)
