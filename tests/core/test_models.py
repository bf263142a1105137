"""Model registry: local folders materialise and load; unavailable sources say what is missing."""

import json

import pytest
import torch

from lensflow.core import models
from lensflow.core.models import ModelUnavailable
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


# --- hub errors: gated / unauthorised models are told apart from offline / not-found ones ----------

GEMMA = {"source": "hub", "id": "google/gemma-2b-it", "revision": "main"}


def hub_error(status: int, code: str | None = None, message: str = "Access denied."):
    """The exception huggingface_hub itself raises for a hub answer of `status` (+ X-Error-Code)."""
    import importlib

    import huggingface_hub.errors as hub_errors
    from huggingface_hub.utils import hf_raise_for_status

    http = importlib.import_module(hub_errors.Response.__module__.split(".")[0])  # the client the hub uses
    request = http.Request("GET", "https://huggingface.co/google/gemma-2b-it/resolve/main/config.json")
    headers = {"X-Error-Message": message, **({"X-Error-Code": code} if code else {})}
    try:
        hf_raise_for_status(http.Response(status, headers=headers, request=request))
    except Exception as e:  # noqa: BLE001
        return e
    raise AssertionError("hf_raise_for_status did not raise")


def wrapped(message: str, cause: BaseException | None):
    """An OSError `from cause`, the way transformers re-raises hub errors."""
    try:
        raise OSError(message) from cause
    except OSError as e:
        return e


def _load_raising(monkeypatch, tmp_path, error, on="tokenizer"):
    import transformers

    def boom(*args, **kwargs):
        raise error

    def fine(*args, **kwargs):
        return object()

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", boom if on == "tokenizer" else fine)
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", boom)
    with pytest.raises(ModelUnavailable) as info:
        models.materialise(GEMMA, "gemma-2b-it", tmp_path / "g")
    assert not (tmp_path / "g").exists()
    return str(info.value)


def _says_gated(text: str):
    assert "gemma-2b-it" in text and "revision 'main'" in text
    assert "HF_TOKEN" in text and "hf auth login" in text
    assert "https://huggingface.co/google/gemma-2b-it" in text and "licence" in text
    assert "offline, or not there" not in text


def test_gated_or_unauthorised_hub_model_names_the_token_and_the_licence_page(tmp_path, monkeypatch):
    gated = hub_error(401, "GatedRepo", "Access to model google/gemma-2b-it is restricted.")
    forbidden = hub_error(403, None, "Your token has no access.")
    assert type(gated).__name__ == "GatedRepoError" and type(forbidden).__name__ == "HfHubHTTPError"
    cases = [
        gated,  # huggingface_hub's own exception, unwrapped
        wrapped("You are trying to access a gated repo.\nMake sure to have access to it at "
                "https://huggingface.co/google/gemma-2b-it.", gated),  # transformers 5's wrapping
        wrapped("There was a specific connection error when trying to load google/gemma-2b-it:\n"
                "403 Forbidden: Your token has no access.", forbidden),
        OSError("google/gemma-2b-it is a gated repository. Make sure to request access."),  # text only
        OSError("401 Client Error: Unauthorized for url: https://huggingface.co/google/gemma-2b-it"),
    ]
    for error in cases:
        text = _load_raising(monkeypatch, tmp_path, error)
        _says_gated(text)
        assert str(error).splitlines()[0] in text  # the hub's own words are kept
    _says_gated(_load_raising(monkeypatch, tmp_path, cases[1], on="model"))


def test_offline_or_missing_hub_model_keeps_the_offline_message(tmp_path, monkeypatch):
    from huggingface_hub.errors import LocalEntryNotFoundError

    missing = hub_error(404, "RepoNotFound", "Repository not found")
    cases = [
        wrapped("google/gemma-2b-it is not a local folder and is not a valid model identifier listed on "
                "'https://huggingface.co/models'\nIf this is a private repository, make sure to pass a token",
                missing),
        # 401 without a gated code is how the hub answers for a repo that does not exist (or is private)
        wrapped("google/gemma-2b-it is not a local folder and is not a valid model identifier",
                hub_error(401, None, "Invalid username or password.")),
        wrapped("We couldn't connect to 'https://huggingface.co' to load the files, and couldn't find them "
                "in the cached files.", LocalEntryNotFoundError("offline")),
    ]
    for error in cases:
        text = _load_raising(monkeypatch, tmp_path, error)
        assert "offline, or not there?" in text and "HF_TOKEN" not in text, text


def test_gated_error_through_the_real_transformers_loader(tmp_path, monkeypatch):
    """The installed transformers, its hub download replaced by one the hub refuses as gated."""
    import transformers.utils.hub as th

    def refuse(*args, **kwargs):
        raise hub_error(401, "GatedRepo", "Access to model google/gemma-2b-it is restricted.")

    monkeypatch.setattr(th.constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))  # no cached copy to fall back on
    monkeypatch.setattr(th, "hf_hub_download", refuse)
    monkeypatch.setattr(th, "snapshot_download", refuse)
    with pytest.raises(ModelUnavailable) as info:
        models.materialise(GEMMA, "gemma-2b-it", tmp_path / "g")
    _says_gated(str(info.value))


def _tiny_gguf(path):
    import gguf
    import numpy as np

    w = gguf.GGUFWriter(str(path), "llama")
    w.add_string("tokenizer.ggml.model", "llama")
    w.add_tensor("token_embd.weight", np.arange(8, dtype=np.float32).reshape(2, 4))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_one_gguf_parse_reads_a_file_once_and_restores_the_reader(tmp_path):
    import gguf

    path, real = _tiny_gguf(tmp_path / "m.gguf"), gguf.GGUFReader
    with models.one_gguf_parse():
        a, b = gguf.GGUFReader(path), gguf.GGUFReader(str(path))
        assert a is b and a.tensors[0].name == "token_embd.weight"
    assert gguf.GGUFReader is real
    assert real(path) is not real(path)


def test_transformers_takes_the_gguf_reader_from_the_module_at_each_call(tmp_path, monkeypatch):
    """one_gguf_parse only helps while transformers looks GGUFReader up in `gguf` when it loads."""
    import gguf
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    class Seen(Exception):
        pass

    def spy(*args, **kwargs):
        raise Seen

    monkeypatch.setattr(gguf, "GGUFReader", spy)
    with pytest.raises(Seen):
        load_gguf_checkpoint(str(_tiny_gguf(tmp_path / "m.gguf")), return_tensors=False)
