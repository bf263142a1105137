"""Every rule names a conda env in envs/, and every pin there equals pyproject.toml's."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def _pins(requirements):
    return dict(r.split("==", 1) for r in requirements if "==" in r)


def test_env_pins_equal_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = _pins(project["dependencies"] + sum(project["optional-dependencies"].values(), []))
    assert all("==" in r for r in project["dependencies"]), "pyproject dependencies must be exact pins"
    for env in sorted((ROOT / "envs").glob("*.yaml")):
        deps = yaml.safe_load(env.read_text())["dependencies"]
        pip = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
        for name, version in _pins(pip).items():
            assert pins.get(name) == version, f"{env.name}: {name}=={version} but pyproject pins {pins.get(name)}"


def test_every_rule_names_an_existing_env():
    for smk in sorted((ROOT / "workflow/rules").glob("*.smk")):
        text = smk.read_text()
        rules = re.findall(r"^\s*rule (\w+):", text, flags=re.M)
        envs = re.findall(r'conda:\s*\n\s*"([^"]+)"', text)
        assert len(envs) == len(rules), f"{smk.name}: {len(rules)} rules but {len(envs)} conda directives"
        for env in envs:
            assert (smk.parent / env).resolve().is_file(), f"{smk.name}: {env} does not exist"
