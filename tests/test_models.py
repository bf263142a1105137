"""Model registry: local folders materialise and load; unavailable sources say what is missing."""

import json

import pytest
import torch

from lensflow import models
from lensflow.models import ModelUnavailable
from tiny_models import save_tiny


def test_local_model_materialises_and_loads_with_same_outputs(tmp_path):
    src = save_tiny(tmp_path / "src", "gpt_neox")
    manifest = models.materialise({"source": "local", "path": str(src)}, "tiny", tmp_path / "out")
    assert manifest["architecture"] == "GPTNeoXForCausalLM" and manifest["n_layers"] == 2
    model, tok, man = models.load(tmp_path / "out")
    assert man == json.loads((tmp_path / "out" / models.MANIFEST).read_text())
    ref, _, _ = models.load(src)
    ids = tok("the cat sat on the mat", return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        torch.testing.assert_close(model(input_ids=ids).logits, ref(input_ids=ids).logits)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]  # no temp folder left


def test_missing_sources_say_what_is_missing(tmp_path, monkeypatch):
    with pytest.raises(ModelUnavailable, match="no_such_pkg"):
        models.materialise({"source": "gguf_package", "package": "no_such_pkg", "file": "m.gguf"}, "m", tmp_path / "m")
    with pytest.raises(ModelUnavailable, match="nothing.gguf"):
        models.materialise({"source": "gguf_package", "package": "gensim", "file": "nothing.gguf"}, "m", tmp_path / "m")
    with pytest.raises(ModelUnavailable, match=str(tmp_path / "absent")):
        models.materialise({"source": "local", "path": str(tmp_path / "absent")}, "m", tmp_path / "m")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelUnavailable, match="EleutherAI/pythia-70m.*step1000"):
        models.materialise({"source": "hub", "id": "EleutherAI/pythia-70m", "revision": "step1000"}, "p", tmp_path / "p")
    assert not (tmp_path / "m").exists() and not (tmp_path / "p").exists()


def test_folder_without_weights_is_named(tmp_path):
    src = save_tiny(tmp_path / "src")
    for f in src.glob("*.safetensors"):
        f.unlink()
    with pytest.raises(ModelUnavailable, match="no config.json or no \\*.safetensors"):
        models.load(src)
