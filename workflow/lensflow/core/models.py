"""The model registry: turn a config entry into a plain local folder, and load that folder.

Sources (config `models.<name>.source`):
  hub           a Hugging Face hub id (+ revision, e.g. Pythia's `step1000` checkpoints)
  local         a folder already on disk (safetensors + tokenizer)
  gguf_package  a GGUF file shipped inside a pip package (the offline default); dequantised to
                float32 and re-saved, because transformers refuses save_pretrained on a GGUF load.
Every later rule loads the materialised folder (~0.1 s) instead of the source (15-40 s for GGUF).
"""

from __future__ import annotations

import importlib
import json
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import torch

from .assets import AssetUnavailable, package_dir, package_file
from .io import clear_stale

MANIFEST = "lensflow_model.json"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


# One error type for every missing source, so callers need not care whether it is a model or data.
ModelUnavailable = AssetUnavailable


def _gguf_file(spec: dict, name: str, workdir: Path) -> tuple[Path, str]:
    """(folder, file name) of the GGUF file a package ships, assembling chunked packages first."""
    if spec.get("assemble"):
        package_dir(spec["package"], name)  # a clear error when the package is absent
        module = importlib.import_module(spec["package"])
        target = module.assemble(output_path=workdir / spec["file"])
        return Path(target).parent, Path(target).name
    path = package_file(spec["package"], spec["file"], name)
    return path.parent, path.name


def _check_same_logits(reference, rebuilt, name: str) -> None:
    """The rebuilt model must compute what the GGUF-loaded one does (catches a silent bad copy)."""
    ids = torch.arange(1, 9).unsqueeze(0)  # [1, 8]: any in-vocabulary tokens will do
    with torch.inference_mode():
        a, b = reference(input_ids=ids).logits, rebuilt.eval()(input_ids=ids).logits
    if not torch.allclose(a, b, atol=1e-4, rtol=1e-4):
        raise ModelUnavailable(f"{name}: rebuilt model disagrees with the GGUF model (max |diff| {(a - b).abs().max():.3g})")


@contextmanager
def one_gguf_parse():
    """Within this block, gguf.GGUFReader parses a file once and hands the same reader back.

    transformers parses a GGUF file's metadata three times to load one model (for the tokenizer,
    the config and the weights), in Python, field by field; the tokenizer vocabulary is most of it
    (Gemma-3's 262k tokens: ~20 s a parse on one core, 2/3 of materialising it). The reader is a
    read-only memory map, so sharing it changes nothing but the time."""
    import gguf

    real, readers = gguf.GGUFReader, {}

    def reader(path, *args, **kwargs):
        key = (str(Path(path).resolve()), args, tuple(sorted(kwargs.items())))
        if key not in readers:
            readers[key] = real(path, *args, **kwargs)
        return readers[key]

    gguf.GGUFReader = reader  # transformers imports it from the module at each call
    try:
        yield
    finally:
        gguf.GGUFReader = real


def _load_source(spec: dict, name: str, workdir: Path):
    """(model, tokenizer) from the configured source, on CPU in the configured dtype."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = DTYPES[spec.get("dtype", "float32")]
    source = spec["source"]
    if source == "gguf_package":
        folder, file = _gguf_file(spec, name, workdir)
        with one_gguf_parse():
            tok = AutoTokenizer.from_pretrained(folder, gguf_file=file)
            gguf_model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=file, dtype=torch.float32)
        # transformers will not save a GGUF-loaded model: rebuild it from its config without the
        # quantization_config and copy the (already dequantised) weights over.
        cfg = gguf_model.config
        if hasattr(cfg, "quantization_config"):
            del cfg.quantization_config
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
        missing, unexpected = model.load_state_dict(gguf_model.state_dict(), strict=False)
        tied = {k for k in missing if "lm_head" in k and getattr(cfg, "tie_word_embeddings", False)}
        if set(missing) - tied or unexpected:
            raise ModelUnavailable(f"{name}: GGUF weights do not fit the config (missing {missing}, unexpected {unexpected})")
        model.tie_weights()
        _check_same_logits(gguf_model, model, name)
        return model.to(dtype), tok
    if source == "local":
        path = Path(spec["path"])
        if not path.is_dir():
            raise ModelUnavailable(f"{name}: local model folder '{path}' does not exist")
        weights = [*path.glob("*.safetensors"), *path.glob("pytorch_model*.bin")]
        if not (path / "config.json").is_file() or not weights:
            raise ModelUnavailable(f"{name}: local model folder '{path}' has no config.json or no weights "
                                   "(*.safetensors / pytorch_model*.bin)")
        ref, kwargs = str(path), {}
    else:  # hub
        ref, kwargs = spec["id"], {"revision": spec.get("revision", "main")}
    try:
        tok = AutoTokenizer.from_pretrained(ref, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(ref, dtype=dtype, **kwargs)
    except OSError as e:
        where = f"hub id '{ref}' revision '{kwargs['revision']}'" if kwargs else f"local folder '{ref}'"
        if kwargs and _access_denied(e):
            raise ModelUnavailable(
                f"{name}: cannot load {where}: the hub refused access (a gated model, or no token with access). "
                f"Accept the model's licence on https://huggingface.co/{ref} while logged in, then give this "
                "machine a token of that account: `hf auth login`, or `export HF_TOKEN=hf_...` (a read token "
                "from https://huggingface.co/settings/tokens) in the environment Snakemake and its jobs run in. "
                f"Hub error: {e}") from None
        raise ModelUnavailable(f"{name}: cannot load {where} (offline, or not there?): {e}") from None
    return model, tok


def _access_denied(error: BaseException) -> bool:
    """Whether a hub load failed for want of access rather than of network or repository.

    huggingface_hub raises GatedRepoError (a gated model without an accepted licence or token) or an
    HfHubHTTPError with status 401/403; transformers re-raises them as OSError `from` the original,
    so the cause chain is searched. RepositoryNotFoundError (a 401 without a gated code, which is how
    the hub answers for a missing repo) counts as not there. Failing the types, the message is read:
    "gated", "restricted", or a 401/403 status (transformers' own wording for these cases).
    """
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    seen, e = set(), error
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, GatedRepoError):
            return True
        if isinstance(e, RepositoryNotFoundError):
            return False
        if isinstance(e, HfHubHTTPError):
            status = getattr(getattr(e, "response", None), "status_code", None)
            if status in (401, 403):
                return True
        e = e.__cause__ or e.__context__
    return bool(re.search(r"gated|restricted|\b40[13]\b", str(error), flags=re.I))


def describe(model) -> dict:
    """Architecture facts later rules need (block count, widths), from the model's config."""
    cfg = model.config
    return {
        "architecture": type(model).__name__,
        "n_layers": getattr(cfg, "num_hidden_layers", None),
        "d_model": getattr(cfg, "hidden_size", None),
        "d_mlp": getattr(cfg, "intermediate_size", None),
        "vocab_size": getattr(cfg, "vocab_size", None),
        "n_params": sum(p.numel() for p in model.parameters()),
    }


def materialise(spec: dict, name: str, out_dir: str | Path) -> dict:
    """Write model `name` as a plain folder (safetensors + tokenizer + manifest) at `out_dir`.

    The folder appears only when complete (built under a temporary name, then renamed).
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    clear_stale(out_dir)  # a killed earlier build's folder
    with tempfile.TemporaryDirectory(dir=out_dir.parent, prefix=f".{out_dir.name}.") as tmp:
        tmp = Path(tmp)
        model, tok = _load_source(spec, name, tmp / "work")
        if tok.pad_token is None:  # Pythia/GPT-Neo ship no pad token; caching needs one (masked anyway)
            tok.pad_token = tok.eos_token
        build = tmp / "model"
        model.save_pretrained(build)
        tok.save_pretrained(build)
        manifest = {"name": name, "source": spec, **describe(model)}
        (build / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        build.rename(out_dir)
    return manifest


def load(folder: str | Path, device: str | torch.device = "cpu", dtype: str | None = None):
    """(model, tokenizer, manifest) from a materialised folder, in eval mode on `device`.

    dtype defaults to the registry entry's (`models.<name>.dtype`, recorded in the manifest).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = Path(folder)
    if not (folder / "config.json").is_file() or not any(folder.glob("*.safetensors")):
        raise ModelUnavailable(f"{folder}: not a model folder (no config.json or no *.safetensors weights)")
    manifest = json.loads((folder / MANIFEST).read_text()) if (folder / MANIFEST).is_file() else {}
    dtype = dtype or manifest.get("source", {}).get("dtype", "float32")
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=DTYPES[dtype]).to(device).eval()
    return model, tok, manifest
