"""The LFP paper's sparse autoencoder (§2 eq. 1-2, §3.2, App. F).

    codes = ReLU(x W_E^T + b_E)            # [batch, d_hidden]
    x_hat = codes W_D^T + b_D              # [batch, d_in]
    loss  = MSE(x_hat, x) + alpha * L1(codes)

Tied weights (the paper's default): the decoder weight IS the encoder weight transposed,
W_D = W_E^T, a view of the single Parameter W_E, so one gradient step moves both.

Input scale (not in the paper): activations are multiplied by a per-layer constant s, fixed from
the training data before training, so that their mean L2 norm is sqrt(d_in) (per-element RMS ~1).
Residual/MLP outputs differ in norm by orders of magnitude across layers (the paper's alpha would
mean a different sparsity at each layer, and a 1000x-norm layer makes the MSE swing); the scale is
stored in the SAE's config and undone on decode, so encode/decode/forward stay in model units:

    codes = ReLU((s x) W_E^T + b_E);  x_hat = (codes W_D^T + b_D) / s;  loss on s x vs s x_hat

Loss normalisation (eq. 2 leaves it ambiguous):
  * MSE   = mean of squared error over batch AND feature dims (torch's F.mse_loss default);
  * L1    = mean over the batch of sum_j |codes_j| (per-example L1 norm).
This is the convention of Cunningham et al.'s sparse-coding code, which the paper cites as the
basis of its SAE choices (§3.2), so the paper's alpha = 0.001 keeps the meaning it was tuned
with; the per-example sum keeps alpha independent of batch size, and an element-mean L1 would
make alpha = 0.001 a near-zero penalty for d_hidden in the thousands.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

SAE_FORMAT = "lensflow.sae.v1"


class SparseAutoencoder(nn.Module):
    """One-hidden-layer ReLU autoencoder with an optional tied decoder."""

    def __init__(self, d_in: int, d_hidden: int, tied: bool = True, alpha: float = 1e-3, seed: int | None = None,
                 input_scale: float = 1.0):
        super().__init__()
        self.d_in, self.d_hidden, self.tied, self.alpha = int(d_in), int(d_hidden), bool(tied), float(alpha)
        if not (math.isfinite(input_scale) and input_scale > 0):
            raise ValueError(f"input_scale must be a positive finite number, got {input_scale}")
        self.input_scale = float(input_scale)
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        # Encoder rows are the dictionary directions read from the input.
        self.W_E = nn.Parameter(torch.empty(self.d_hidden, self.d_in))  # [d_hidden, d_in]
        nn.init.xavier_uniform_(self.W_E, generator=gen)
        self.b_E = nn.Parameter(torch.zeros(self.d_hidden))  # [d_hidden]
        self.b_D = nn.Parameter(torch.zeros(self.d_in))  # [d_in]
        if not self.tied:
            # Start untied decoders at the tied solution so tied-vs-untied (Table 11) differ
            # only in whether the two matrices may drift apart.
            self.W_D_untied = nn.Parameter(self.W_E.detach().t().clone())  # [d_in, d_hidden]

    @property
    def W_D(self) -> torch.Tensor:
        """Decoder weight [d_in, d_hidden]; for tied SAEs a view sharing W_E's storage."""
        return self.W_E.t() if self.tied else self.W_D_untied

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Codes of x in model units [..., d_in] -> [..., d_hidden]."""
        return F.relu(F.linear(x * self.input_scale, self.W_E, self.b_E))

    def _decode_scaled(self, codes: torch.Tensor) -> torch.Tensor:
        return F.linear(codes, self.W_D, self.b_D)  # [..., d_in], scaled units

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Reconstruction in model units (the input scale undone) [..., d_hidden] -> [..., d_in]."""
        return self._decode_scaled(codes) / self.input_scale

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        codes = self.encode(x)  # [batch, d_hidden]
        return self.decode(codes), codes

    def dictionary(self) -> torch.Tensor:
        """Decoder atoms, one row per feature: W_D^T, [d_hidden, d_in] (detached)."""
        return self.W_D.detach().t()

    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Training objective and its parts for one batch x [batch, d_in]."""
        codes = self.encode(x)  # [batch, d_hidden]
        mse = F.mse_loss(self._decode_scaled(codes), x * self.input_scale)  # scaled units; mean over batch, d_in
        l1 = codes.abs().sum(dim=-1).mean()  # per-example L1 norm, averaged over the batch
        return {"loss": mse + self.alpha * l1, "mse": mse, "l1": l1}

    def config(self) -> dict:
        return {"d_in": self.d_in, "d_hidden": self.d_hidden, "tied": self.tied, "alpha": self.alpha,
                "input_scale": self.input_scale}


def as_batch(batch, d_in: int, device) -> torch.Tensor:
    x = torch.as_tensor(batch).to(device=device, dtype=torch.float32)
    if x.ndim != 2 or x.shape[1] != d_in:
        raise ValueError(f"expected a batch of shape [batch, {d_in}], got {tuple(x.shape)}")
    return x


def input_scale_of(batches: Iterable, d_in: int, max_examples: int = 16384) -> float:
    """sqrt(d_in) / mean L2 norm of the first `max_examples` examples of `batches` (1.0 if all zero)."""
    total, n = 0.0, 0
    for batch in batches:
        x = as_batch(batch, d_in, "cpu")  # [batch, d_in]
        total += float(x.double().norm(dim=-1).sum())
        n += x.shape[0]
        if n >= max_examples:
            break
    if n == 0:
        raise ValueError("`batches` yielded nothing to set the input scale from")
    return math.sqrt(d_in) / (total / n) if total > 0 else 1.0


def train_sae(
    batches: Iterable,
    d_in: int,
    d_hidden: int,
    tied: bool = True,
    alpha: float = 1e-3,
    lr: float = 1e-3,
    n_steps: int | None = None,
    epochs: int = 1,
    device: str | torch.device = "cpu",
    seed: int = 0,
    log_every: int = 100,
    normalise: bool = True,
) -> tuple[SparseAutoencoder, pd.DataFrame]:
    """Train an SAE with Adam on a stream of activation batches ([batch, d_in] float32).

    With `n_steps` set, exactly that many steps are taken, re-iterating `batches` as often
    as needed; otherwise `epochs` passes are made. Re-iteration calls iter(batches) again,
    so pass a list or a re-iterable object (e.g. a Parquet reader class), not a generator.
    Each history row averages the steps since the previous row (step = last step of the
    window, examples = cumulative examples seen). Raises FloatingPointError on a non-finite loss.
    normalise: set the SAE's input_scale from the first batches (module docstring); else 1.
    """
    if log_every < 1 or (n_steps is not None and n_steps < 1) or epochs < 1:
        raise ValueError(
            f"need log_every >= 1, n_steps >= 1 (or None), epochs >= 1; got {log_every}, {n_steps}, {epochs}"
        )
    torch.manual_seed(seed)  # any randomness downstream (none today) stays reproducible
    scale = input_scale_of(batches, d_in) if normalise else 1.0
    sae = SparseAutoencoder(d_in, d_hidden, tied=tied, alpha=alpha, seed=seed, input_scale=scale).to(device)
    opt = torch.optim.Adam(sae.parameters(), lr=lr)

    history, window = [], {"loss": 0.0, "mse": 0.0, "l1": 0.0, "n": 0}
    step, examples, epoch = 0, 0, 0

    def log_row():
        n = window["n"]
        history.append({"step": step, "examples": examples, **{k: window[k] / n for k in ("loss", "mse", "l1")}})
        window.update(loss=0.0, mse=0.0, l1=0.0, n=0)

    while (n_steps is not None and step < n_steps) or (n_steps is None and epoch < epochs):
        seen_this_epoch = 0
        for batch in batches:
            x = as_batch(batch, d_in, device)  # [batch, d_in]
            parts = sae.loss(x)
            loss = parts["loss"]
            if not torch.isfinite(loss):
                raise FloatingPointError(f"non-finite SAE loss ({loss.item()}) at step {step + 1}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            examples += x.shape[0]
            seen_this_epoch += 1
            for k in ("loss", "mse", "l1"):
                window[k] += parts[k].item()
            window["n"] += 1
            if step % log_every == 0:
                log_row()
            if n_steps is not None and step >= n_steps:
                break
        if seen_this_epoch == 0:
            raise ValueError(f"`batches` yielded nothing in epoch {epoch + 1}; pass a re-iterable, non-empty source")
        epoch += 1
    if window["n"]:
        log_row()
    return sae, pd.DataFrame(history, columns=["step", "examples", "loss", "mse", "l1"])


def save_sae(sae: SparseAutoencoder, path: str | Path) -> None:
    """Weights to safetensors; the config (d_in, d_hidden, tied, alpha) goes in its metadata.

    Written to a temporary name and renamed, so a killed job leaves no partial file.
    """
    from safetensors.torch import save_file

    from lensflow.core.io import atomic_path

    # Tied SAEs hold only W_E, so no shared-storage tensors reach safetensors.
    tensors = {k: v.detach().cpu().contiguous() for k, v in sae.state_dict().items()}
    meta = {"format": SAE_FORMAT, "config": json.dumps(sae.config())}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)


def load_sae(path: str | Path, device: str | torch.device = "cpu") -> SparseAutoencoder:
    """Inverse of save_sae."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata() or {}
    if meta.get("format") != SAE_FORMAT:
        raise ValueError(f"{path} is not a {SAE_FORMAT} file (metadata format={meta.get('format')!r})")
    sae = SparseAutoencoder(**json.loads(meta["config"]))
    sae.load_state_dict(load_file(str(path)))
    return sae.to(device)


def save_saes(saes: dict[int, SparseAutoencoder], path: str | Path, meta: dict | None = None) -> None:
    """Several SAEs (one per layer) in one safetensors file, written atomically.

    Tensors are named `layer<L>.<param>`; the metadata holds each layer's config and `meta`.
    """
    from safetensors.torch import save_file

    from lensflow.core.io import atomic_path

    tensors = {f"layer{layer}.{k}": v.detach().cpu().contiguous()
               for layer, sae in saes.items() for k, v in sae.state_dict().items()}
    info = {"format": SAE_FORMAT, "layers": json.dumps({str(layer): sae.config() for layer, sae in saes.items()}),
            "meta": json.dumps(meta or {}, sort_keys=True, default=str)}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=info)


def load_saes(path: str | Path, device: str | torch.device = "cpu") -> tuple[dict[int, SparseAutoencoder], dict]:
    """Inverse of save_saes: ({layer: SAE}, meta)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    try:
        with safe_open(str(path), framework="pt") as fh:
            info = fh.metadata() or {}
        tensors = load_file(str(path))
    except Exception as e:  # safetensors raises its own error types for truncated/corrupt files
        raise ValueError(f"{path}: not a readable safetensors file ({e})") from None
    if info.get("format") != SAE_FORMAT or "layers" not in info:
        raise ValueError(f"{path} is not a lensflow multi-layer SAE file (format={info.get('format')!r})")
    saes = {}
    for layer, cfg in json.loads(info["layers"]).items():
        sae = SparseAutoencoder(**cfg)
        prefix = f"layer{layer}."
        sae.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
        saes[int(layer)] = sae.to(device).eval()
    return saes, json.loads(info.get("meta", "{}"))
