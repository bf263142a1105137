"""lensflow.core.model_memory: the planning-time size of a registry model and the mem_mb of a job
that loads it (the workflow's model_mem_mb; tests/core/test_slurm.py checks it on paper.yaml's jobs)."""

import json
import struct

import pytest

from lensflow.core.config import ConfigError
from lensflow.core.model_memory import check_params_b, job_mem_mb, model_params_b, model_weights_mb, safetensors_params

MEMORY = {"params_b": {}, "default_params_b": 1.0, "overhead_mb": 1000, "copies": 2}


def write_safetensors(path, shapes):
    header = {name: {"dtype": "F32", "shape": shape, "data_offsets": [0, 0]} for name, shape in shapes.items()}
    header["__metadata__"] = {"format": "pt"}
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw)


def test_sizes_in_order_of_precedence(tmp_path):
    write_safetensors(tmp_path / "model.safetensors", {"a": [1000, 2000], "b": [500]})
    models = {
        "given": {"source": "hub", "id": "EleutherAI/pythia-70m"},
        "local": {"source": "local", "path": str(tmp_path)},
        "hub": {"source": "hub", "id": "google/gemma-2b"},  # its name rounds its 2.5B down
        "named": {"source": "hub", "id": "org/thing-1.4b-deduped"},
        "gguf": {"source": "gguf", "id": "org/repo", "file": "smollm2-135M-q4.gguf"},
        "plain": {"source": "hub", "id": "org/thing"},
    }
    memory = dict(MEMORY, params_b={"given": 3.0})
    assert model_params_b("given", models, memory) == 3.0
    assert model_params_b("local", models, memory) == pytest.approx(2_000_500 / 1e9)
    assert model_params_b("hub", models, memory) == 2.506
    assert model_params_b("named", models, memory) == 1.4
    assert model_params_b("gguf", models, memory) == pytest.approx(0.135)
    assert model_params_b("plain", models, memory) == 1.0
    assert safetensors_params(tmp_path) == 2_000_500


def test_checkpoints_and_tuned_policies_are_their_base_model():
    models = {"pythia-1b": {"source": "hub", "id": "EleutherAI/pythia-1b", "dtype": "bfloat16"},
              "pythia-1b@step1": {"source": "hub", "id": "EleutherAI/pythia-1b", "dtype": "bfloat16"}}
    memory = dict(MEMORY, params_b={"pythia-1b": 2.0})
    for name in ["pythia-1b", "pythia-1b@step1", "pythia-1b+sentiment"]:
        assert model_params_b(name, models, memory) == 2.0
        assert model_weights_mb(name, models, memory) == 4000  # bf16: 2 bytes a weight
    assert job_mem_mb("pythia-1b+sentiment", 4000, models, memory) == 1000 + 2 * 4000
    assert job_mem_mb("pythia-1b", 16000, models, memory) == 16000  # the family's floor
    assert job_mem_mb(None, 4000, models, memory) == 4000  # no local model (an endpoint)


def test_sizes_given_for_unknown_models_are_refused():
    check_params_b({"params_b": {"a": 1}}, {"a": {}, "b": {}})
    with pytest.raises(ConfigError, match=r"resources\.model_memory\.params_b\.c.*known: a, b"):
        check_params_b({"params_b": {"c": 1}}, {"a": {}, "b": {}})
