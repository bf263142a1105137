"""Benchmark SAE training: lensflow's SparseAutoencoder vs sae-lens's standard ReLU/L1 SAE.

Not a pytest test, and not run with the project venv: sae-lens lives in its own venv so the
project's dependencies stay untouched. Set it up once, then run from the repository root:

    python3 -m venv /work/benchvenv
    /work/benchvenv/bin/pip install torch==2.13.0          # first, so no CUDA build gets pulled in
    /work/benchvenv/bin/pip install sae-lens==6.54.12 pyarrow pandas safetensors

    /work/benchvenv/bin/python tests/benchmarks/bench_sae.py --cache results/lfp/smollm2-135m/vader/activations.parquet --layer 8
    /work/benchvenv/bin/python tests/benchmarks/bench_sae.py --cache ... --layer 8 --batch-sizes 32 --steps 200 --repeats 1

What is compared, all on one layer's per-token activations of a lensflow cache, held in memory as
float32 (so data loading is excluded for every variant), text-level 90/10 train/held-out split
(`lensflow.lfp.sae.data.split_texts`, as the workflow splits):

  lensflow untied   `lensflow.lfp.sae.model.train_sae(..., tied=False)`  (its own loop: Adam, MSE + alpha * L1)
  lensflow tied     `lensflow.lfp.sae.model.train_sae(..., tied=True)`   (the LFP paper's default)
  sae-lens trainer  `sae_lens.StandardTrainingSAE` driven by `sae_lens.SAETrainer.fit()`, the standard
                    trainer (Adam, grad-norm clipping at 1.0, constant LR scheduler, L1 coefficient
                    scheduler, dead-feature bookkeeping); wandb off, tqdm off (TQDM_DISABLE=1).
  sae-lens bare     the same SAE, one step = `sae.training_forward_pass(TrainStepInput(...))`, its
                    `.loss.backward()`, Adam step: the model's own loss with no trainer bookkeeping,
                    i.e. the same amount of loop as lensflow's train_sae.

Every variant: same d_in, d_sae (n and 2n by default), batch size (32, the LFP paper's, and 4096,
a throughput setting), number of steps, lr (1e-3), Adam (0.9, 0.999), device (CPU, fixed torch
threads), seed, and the same sequence of in-memory batches (one seeded shuffle of the training
tokens cut into full batches, cycled). The first `--warmup` steps of each run are not timed: a
wrapper around the batch stream starts the clock when it hands out batch warmup+1 (steps
1..warmup are then complete) and it stops when the training call returns. Throughput =
timed steps x batch size / wall seconds. Variants run interleaved, `--repeats` times each; the
table shows the median (and best) wall examples/s and the median CPU seconds.
On a machine shared with other jobs use `--threads 1`: with 2 torch threads on 2 busy cores the
OpenMP threads wait on each other and a batch-32 step took ~20x longer (78 ms instead of 4 ms).

Loss normalisation (the reason the L1 coefficients differ):
  lensflow  loss = mean_{b,i} (x_hat - x)^2 + alpha * mean_b sum_j |f_j|
  sae-lens  loss = mean_b sum_i (x_hat - x)^2 + l1_coefficient * mean_b sum_j |f_j| * ||W_dec[j]||
So lensflow's loss x d_in equals sae-lens's with l1_coefficient = alpha * d_in, except that sae-lens
weighs each feature's L1 by its decoder row norm (initialised at 0.1: `decoder_init_norm`) and
subtracts b_dec from the input before encoding (`apply_b_dec_to_input`). Adam is (nearly) invariant
to the overall loss scale, so `--l1-coefficient` defaults to alpha * d_in (the "matched" value); pass
`--l1-coefficient 1e-3` to see the nominal-equal setting. Neither side normalises activations
(sae-lens's `normalize_activations="none"`, its default). The coefficient does not change the
per-step cost (all dense matmuls), only where on the L0/FVU trade-off each SAE lands.

Held-out quality is computed identically for all variants by `heldout_metrics` below on each
model's own encode/decode: FVU (sum of squared errors / sum of squared deviations from the
per-dimension mean), mean L0 (active codes per token), and the fraction of features never active.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")  # sae-lens's fit() progress bar: no stderr spam in the timed loop
os.environ.setdefault("WANDB_MODE", "disabled")

import numpy as np  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "workflow"))

from lensflow.core.io import read_metadata  # noqa: E402
from lensflow.core.machine import machine_line  # noqa: E402
from lensflow.lfp.sae.data import cache_text_ids, split_texts  # noqa: E402
from lensflow.lfp.sae.metrics import sae_metrics  # noqa: E402
from lensflow.lfp.sae.model import train_sae  # noqa: E402

VARIANTS = ("lensflow-untied", "lensflow-tied", "saelens-trainer", "saelens-bare")


@dataclass
class Config:
    cache: str = field(metadata={"help": "per-token lensflow activation cache (Parquet, pooling none)"})
    layer: int = field(metadata={"help": "layer whose MLP output column (model.layers.<L>.mlp) to use"})
    module: str | None = field(default=None, metadata={"help": "column name; default: the cache module of --layer"})
    n_tokens: int | None = field(default=None, metadata={"help": "use at most this many tokens (default: all)"})
    heldout: float = field(default=0.1, metadata={"help": "share of texts held out"})
    d_sae_mults: list[int] = field(default_factory=lambda: [1, 2], metadata={"help": "d_sae = mult x d_in"})
    batch_sizes: list[int] = field(default_factory=lambda: [32, 4096], metadata={"help": "batch sizes"})
    steps: list[int] = field(default_factory=lambda: [3000, 60],
                             metadata={"help": "training steps, one per batch size (warm-up included)"})
    warmup: int = field(default=10, metadata={"help": "steps not timed at the start of every run"})
    lr: float = field(default=1e-3, metadata={"help": "Adam learning rate (all variants)"})
    alpha: float = field(default=1e-3, metadata={"help": "lensflow L1 weight (the LFP paper's 0.001)"})
    l1_coefficient: float | None = field(default=None,
                                         metadata={"help": "sae-lens l1_coefficient; default alpha x d_in (matched)"})
    apply_b_dec_to_input: int = field(default=1, metadata={"help": "sae-lens's apply_b_dec_to_input (1 = its default)"})
    threads: int = field(default=2, metadata={"help": "torch intra-op threads"})
    repeats: int = field(default=2, metadata={"help": "interleaved timed runs per variant"})
    variants: list[str] = field(default_factory=lambda: list(VARIANTS), metadata={"help": "subset of variants"})
    seed: int = field(default=0, metadata={"help": "split, shuffle and init seed"})
    json_out: str | None = field(default=None, metadata={"help": "also write every run as JSON lines here"})


def parse_args(argv=None) -> Config:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for f in dataclasses.fields(Config):
        flag = "--" + f.name.replace("_", "-")
        kind = str(f.type)
        kw = {"help": f.metadata.get("help")}
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            kw["required"] = True
        else:
            kw["default"] = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if kind.startswith("list"):
            kw.update(nargs="+", type=str if "str" in kind else int)
            if f.name == "variants":
                kw["choices"] = VARIANTS
        else:
            kw["type"] = int if kind.startswith("int") else float if kind.startswith("float") else str
        p.add_argument(flag, **kw)
    cfg = Config(**vars(p.parse_args(argv)))
    if len(cfg.steps) != len(cfg.batch_sizes):
        p.error(f"--steps needs one value per batch size ({cfg.batch_sizes}), got {cfg.steps}")
    if min(cfg.steps) <= cfg.warmup:
        p.error(f"every --steps value must exceed --warmup ({cfg.warmup})")
    return cfg


# ---------------------------------------------------------------------------------------------- data


def load_layer(cfg: Config) -> tuple[torch.Tensor, torch.Tensor, str]:
    """(train [n, d], held-out [m, d]) float32 tensors of one module, split by text."""
    meta = read_metadata(cfg.cache)
    module = cfg.module or f"model.layers.{cfg.layer}.mlp"
    if module not in meta.get("modules", [module]):
        sys.exit(f"{cfg.cache}: no module {module}; cached: {meta.get('modules')}")
    table = pq.read_table(cfg.cache, columns=["text_id", module])
    if cfg.n_tokens is not None:
        table = table.slice(0, cfg.n_tokens)
    col = table.column(module).combine_chunks()
    x = col.flatten().to_numpy(zero_copy_only=False).reshape(len(col), -1).astype(np.float32)  # [tokens, d]
    text_ids = table.column("text_id").to_numpy()
    train_ids, held_ids = split_texts(np.unique(text_ids), cfg.heldout, seed=cfg.seed)
    is_train = np.isin(text_ids, train_ids)
    assert len(cache_text_ids(cfg.cache)) >= len(np.unique(text_ids))
    return torch.from_numpy(x[is_train]).contiguous(), torch.from_numpy(x[~is_train]).contiguous(), module


def make_batches(x: torch.Tensor, batch_size: int, seed: int) -> list[torch.Tensor]:
    """One seeded shuffle of the training tokens cut into full batches (more shuffles appended if
    there are fewer tokens than one batch). Each batch is its own contiguous tensor."""
    gen = torch.Generator().manual_seed(seed)
    n_batches = max(1, len(x) // batch_size)
    idx = torch.cat([torch.randperm(len(x), generator=gen) for _ in range(-(-n_batches * batch_size // len(x)))])
    return [x[idx[i * batch_size : (i + 1) * batch_size]].contiguous() for i in range(n_batches)]


class TimedBatches:
    """Re-iterable over `batches` (cycled) that starts a clock when it hands out the batch of step
    warmup+1, i.e. once steps 1..warmup have finished. The caller stops the clock after training."""

    def __init__(self, batches: list[torch.Tensor], warmup: int):
        self.batches, self.warmup, self.handed = batches, warmup, 0
        self.t0 = self.c0 = None

    def __iter__(self):  # one pass over the list; lensflow's train_sae re-iterates per epoch
        for b in self.batches:
            if self.handed == self.warmup:
                self.t0, self.c0 = time.perf_counter(), time.process_time()
            self.handed += 1
            yield b

    def stream(self):  # endless, for sae-lens's data provider (an iterator)
        return itertools.chain.from_iterable(itertools.repeat(self))


# ------------------------------------------------------------------------------------------ variants


def run_lensflow(cfg: Config, batches, d_in: int, d_sae: int, n_steps: int, tied: bool):
    timed = TimedBatches(batches, cfg.warmup)
    sae, _ = train_sae(timed, d_in, d_sae, tied=tied, alpha=cfg.alpha, lr=cfg.lr, n_steps=n_steps, device="cpu",
                       seed=cfg.seed, log_every=100)
    t1, c1 = time.perf_counter(), time.process_time()
    sae.eval()
    return timed, t1, c1, sae, (lambda x: sae.encode(x)), (lambda f: sae.decode(f))


def saelens_sae(cfg: Config, d_in: int, d_sae: int):
    from sae_lens import StandardTrainingSAE, StandardTrainingSAEConfig

    torch.manual_seed(cfg.seed)  # sae-lens initialises from the global RNG
    sae_cfg = StandardTrainingSAEConfig(d_in=d_in, d_sae=d_sae, dtype="float32", device="cpu",
                                        l1_coefficient=cfg.l1_coefficient, l1_warm_up_steps=0,
                                        apply_b_dec_to_input=bool(cfg.apply_b_dec_to_input))
    return StandardTrainingSAE(sae_cfg)


def run_saelens_trainer(cfg: Config, batches, d_in: int, d_sae: int, n_steps: int, batch_size: int):
    from sae_lens import SAETrainer
    from sae_lens.config import LoggingConfig, SAETrainerConfig

    sae = saelens_sae(cfg, d_in, d_sae)
    tcfg = SAETrainerConfig(total_training_samples=n_steps * batch_size, train_batch_size_samples=batch_size,
                            lr=cfg.lr, lr_end=cfg.lr, lr_scheduler_name="constant", adam_beta1=0.9, adam_beta2=0.999,
                            device="cpu", autocast=False, n_checkpoints=0, save_final_checkpoint=False,
                            logger=LoggingConfig(log_to_wandb=False))
    timed = TimedBatches(batches, cfg.warmup)
    trainer = SAETrainer(cfg=tcfg, sae=sae, data_provider=timed.stream())
    sae = trainer.fit()
    t1, c1 = time.perf_counter(), time.process_time()
    assert timed.handed == n_steps, (timed.handed, n_steps)
    sae.eval()
    return timed, t1, c1, sae, sae.encode, sae.decode


def run_saelens_bare(cfg: Config, batches, d_in: int, d_sae: int, n_steps: int):
    from sae_lens.saes.sae import TrainStepInput

    sae = saelens_sae(cfg, d_in, d_sae)
    sae.train()
    opt = torch.optim.Adam(sae.parameters(), lr=cfg.lr, betas=(0.9, 0.999))
    coefficients = {"l1": cfg.l1_coefficient}
    timed = TimedBatches(batches, cfg.warmup)
    for step, x in zip(range(n_steps), timed.stream()):
        out = sae.training_forward_pass(TrainStepInput(sae_in=x, coefficients=coefficients, dead_neuron_mask=None,
                                                       n_training_steps=step, is_logging_step=False))
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    t1, c1 = time.perf_counter(), time.process_time()
    sae.eval()
    return timed, t1, c1, sae, sae.encode, sae.decode


# ------------------------------------------------------------------------------------------- metrics


@torch.no_grad()
def heldout_metrics(encode, decode, x: torch.Tensor, chunk: int = 4096) -> dict[str, float]:
    """FVU, mean L0, mean L1 and never-active fraction, the same code for every variant."""
    sse, l0, l1, ever = 0.0, 0.0, 0.0, None
    for xb in x.split(chunk):
        f = encode(xb)  # [b, d_sae]
        x_hat = decode(f)  # [b, d_in]
        sse += float(((x_hat - xb) ** 2).sum(dtype=torch.float64))
        active = f > 0
        l0 += float(active.sum())
        l1 += float(f.abs().sum(dtype=torch.float64))
        ever = active.any(0) if ever is None else ever | active.any(0)
    x64 = x.double()
    sst = float(((x64 - x64.mean(0)) ** 2).sum())
    return {"fvu": sse / sst, "l0": l0 / len(x), "l1": l1 / len(x), "dead": float((~ever).float().mean())}


# ---------------------------------------------------------------------------------------------- main


def load_avg() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    cfg = parse_args(argv)
    print(machine_line(), flush=True)
    torch.set_num_threads(cfg.threads)
    import sae_lens

    train, held, module = load_layer(cfg)
    d_in = train.shape[1]
    if cfg.l1_coefficient is None:
        cfg.l1_coefficient = cfg.alpha * d_in
    print(f"bench_sae: {os.cpu_count()} CPU cores, torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"sae-lens {sae_lens.__version__}, load average {load_avg()}")
    print(f"command: python {Path(__file__).relative_to(ROOT)} {' '.join(argv)}")
    print(f"data: {cfg.cache} [{module}], d_in {d_in}: {len(train)} train / {len(held)} held-out tokens "
          f"(text-level split {1 - cfg.heldout:.0%}/{cfg.heldout:.0%}); lensflow alpha {cfg.alpha}, "
          f"sae-lens l1_coefficient {cfg.l1_coefficient:g}, apply_b_dec_to_input {bool(cfg.apply_b_dec_to_input)}; "
          f"lr {cfg.lr}; warm-up {cfg.warmup} steps untimed", flush=True)

    rows = []
    for batch_size, n_steps in zip(cfg.batch_sizes, cfg.steps):
        batches = make_batches(train, batch_size, cfg.seed)
        for mult in cfg.d_sae_mults:
            d_sae = mult * d_in
            runners = {
                "lensflow-untied": lambda: run_lensflow(cfg, batches, d_in, d_sae, n_steps, tied=False),
                "lensflow-tied": lambda: run_lensflow(cfg, batches, d_in, d_sae, n_steps, tied=True),
                "saelens-trainer": lambda: run_saelens_trainer(cfg, batches, d_in, d_sae, n_steps, batch_size),
                "saelens-bare": lambda: run_saelens_bare(cfg, batches, d_in, d_sae, n_steps),
            }
            runs = {v: [] for v in cfg.variants}
            quality = {}
            for rep in range(cfg.repeats):  # interleaved, so drifting load hits every variant alike
                for v in cfg.variants:
                    timed, t1, c1, sae, enc, dec = runners[v]()
                    wall, cpu = t1 - timed.t0, c1 - timed.c0
                    runs[v].append((wall, cpu))
                    q = heldout_metrics(enc, dec, held)
                    if v.startswith("lensflow"):  # cross-check against the library's own metrics
                        ref = sae_metrics(sae, held)
                        assert abs(ref["fvu"] - q["fvu"]) < 1e-6 * max(1, q["fvu"]) and abs(ref["l0"] - q["l0"]) < 1e-9
                    quality[v] = q
                    print(f"  [bs {batch_size}, d_sae {d_sae}, rep {rep + 1}] {v:16s} "
                          f"{(n_steps - cfg.warmup) * batch_size / wall:9.0f} ex/s wall ({wall:.2f} s, CPU {cpu:.2f} s); "
                          f"held-out FVU {q['fvu']:.4f}, L0 {q['l0']:.1f}, dead {q['dead']:.1%}  (load {load_avg()})",
                          flush=True)
            for v in cfg.variants:
                walls = [w for w, _ in runs[v]]
                ex = (n_steps - cfg.warmup) * batch_size
                rows.append({"batch_size": batch_size, "d_sae": d_sae, "steps": n_steps, "timed_steps": n_steps - cfg.warmup,
                             "variant": v, "ex_s_median": ex / statistics.median(walls), "ex_s_best": ex / min(walls),
                             "cpu_s_median": statistics.median(c for _, c in runs[v]), "walls": walls, **quality[v]})
    report(cfg, rows)
    if cfg.json_out:
        Path(cfg.json_out).write_text("".join(json.dumps(r) + "\n" for r in rows))


def report(cfg: Config, rows: list[dict]) -> None:
    print(f"\n## SAE training throughput and held-out quality (load average after: {load_avg()})\n")
    print("| batch | d_sae | steps (timed) | variant | ex/s wall median (best) | CPU s median | "
          "vs sae-lens trainer | vs sae-lens bare | held-out FVU | L0 | never active |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    by_key = {(r["batch_size"], r["d_sae"], r["variant"]): r for r in rows}
    for r in rows:
        ratios = []
        for ref in ("saelens-trainer", "saelens-bare"):
            b = by_key.get((r["batch_size"], r["d_sae"], ref))
            ratios.append("—" if b is None or r["variant"] == ref else f"{r['ex_s_median'] / b['ex_s_median']:.2f}x")
        print(f"| {r['batch_size']} | {r['d_sae']} | {r['steps']} ({r['timed_steps']}) | {r['variant']} | "
              f"{r['ex_s_median']:,.0f} ({r['ex_s_best']:,.0f}) | {r['cpu_s_median']:.2f} | {ratios[0]} | {ratios[1]} | "
              f"{r['fvu']:.4f} | {r['l0']:.1f} | {r['dead']:.1%} |")


if __name__ == "__main__":
    main()
