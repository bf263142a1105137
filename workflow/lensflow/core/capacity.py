"""A capacity plan from the config: disk, peak host and GPU memory and GPU-hours of every job.

The jobs are those of a dry-run of the whole DAG (`snakemake -n` in an empty folder, parsed by
model_sizes.jobs_of_dry_run), so the plan follows the rules without a copy of them; sizes come from the
model registry (model_sizes: exact parameters and module widths) and the config (concepts x sentences,
batch sizes, n_texts, max_length, steps). Estimates from the formulas below, not measurements; the
assumptions are the constants; a size known only from the data takes an upper bound from the config.
workflow/scripts/capacity_plan.py prints it; README.md shows it for paper.yaml.

Formulas (B = bytes, P = parameters, W = P x bytes of the registry dtype, h = hidden size,
I = MLP width, L = layers, V = vocabulary, T = tokens):
  forward FLOPs = 2 P T; training = 6 P T (+2 P T recomputed with gradient checkpointing);
  GPU-hours = FLOPs / (MFU x the GPU's bf16 dense peak), or for generation the decode steps x
  max(W / (BW_EFF x HBM bandwidth), STEP_S) when that is larger (decoding is bandwidth / latency bound);
  full fine-tuning with AdamW = fp32 weights + fp32 grads + 2 fp32 moments (16 P B) + the frozen
  reference model (4 P B); activations kept for the backward ~ T x L x (20 h + c I) x 2 B (bf16,
  c = 2 plain / 4 gated MLP, fused attention: no T^2 scores; Korthikanti et al. 2022 without
  dropout), one layer's worth plus T x L x h x 2 B with checkpointing; logits T x V x 10 B (bf16
  logits, fp32 log-softmax and its gradient); inference transients one layer's T x (4 h + 2 I) x 4 B.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from .config import expand_models
from .config_checks import rl_train_prompts
from .defaults import lfp_section_tasks, task_hyper
from .model_sizes import DTYPE_B, Dims, model_dims

GB = 1e9
GPU = {"name": "H100 SXM 80 GB", "mem_gb": 80, "bf16_tflops": 989, "hbm_tbps": 3.35}  # what README asks for
MFU = 0.40  # sustained share of the bf16 dense peak (forward / backward matmuls)
BW_EFF = 0.5  # share of HBM bandwidth reached reading the weights at every decode step
STEP_S = 0.015  # floor per decode step of HF generate (launches, sampling, Python), any model size
SAE_STEP_S = 0.002  # floor per SAE optimizer step (small matmuls; reading the cache dominates)
HOST_CPU_GB, HOST_GPU_GB = 1.5, 3.0  # interpreter + torch/arrow/pandas (+ CUDA host runtime on GPU jobs)
GPU_BASE_GB = 1.5  # CUDA context, cuBLAS workspace, allocator slack
SENTENCE_TOKENS = 32  # an ExpertLens sentence (one sentence, mined or generated)
GEN_PROMPT_TOKENS, GEN_YIELD = 64, 0.5  # generated data sets: prompt tokens, share of samples kept
EXPERTISE_ROW_B, EXPERTISE_ROW_HOST_B = 20.2, 120  # per (concept, unit): Parquet on disk (measured), pandas + Arrow
KNOWN_ROWS = {"stanfordnlp/imdb": 25000, "anthropic/hh-rlhf": 160800, "unalignment/toxic-dpo-v0.2": 541}


@dataclass
class Est:  # one job: disk written, peak host and GPU memory (GB), GPU-hours, what was assumed
    disk: float = 0.0
    host: float = HOST_CPU_GB
    gpu: float = 0.0
    hours: float = 0.0
    note: str = ""


class Planner:
    """Estimates per job of a validated config `cfg`; `models` is lensflow.core.config.expand_models'."""

    def __init__(self, cfg: dict, models: dict, root="."):
        self.cfg, self.models, self.root = cfg, models, root
        self.flops_s = GPU["bf16_tflops"] * 1e12 * MFU

    def d(self, name: str) -> Dims:  # a tuned policy '<m>+<task>' has its base model's sizes
        return model_dims(name.split("+")[0], self.models[name.split("+")[0]], self.root)

    def w(self, name: str, dtype=None) -> float:  # weights in GB, registry dtype unless given
        return self.d(name).params * DTYPE_B[dtype or self.models[name.split("+")[0]]["dtype"]] / GB

    def hours(self, flops=0.0, decode_steps=0, weights_gb=0.0, steps=0, step_s=STEP_S) -> float:
        bw = decode_steps * max(weights_gb * GB / (BW_EFF * GPU["hbm_tbps"] * 1e12), step_s)
        return max(flops / self.flops_s, bw, steps * step_s) / 3600

    def infer_gpu(self, name: str, batch_tokens: int, extra_gb=0.0) -> float:
        d = self.d(name)
        return GPU_BASE_GB + self.w(name) + batch_tokens * (4 * d.h + 2 * d.inter) * 4 / GB + extra_gb

    def train_gpu(self, name: str, tokens: int, checkpointing=False, states_b=16, ref_b=4) -> float:
        """Full fine-tuning (AdamW): states_b B/param (fp32 weights, grads, moments) + a reference model."""
        d = self.d(name)
        per_layer = tokens * (20 * d.h + (4 if d.gated else 2) * d.inter) * 2
        acts = (per_layer + tokens * d.layers * d.h * 2) if checkpointing else per_layer * d.layers
        return GPU_BASE_GB + d.params * (states_b + ref_b) / GB + (acts + tokens * d.vocab * 10) / GB

    # --- ExpertLens sizes -----------------------------------------------------------------------
    def el_concepts(self) -> int:  # upper bound: max_concepts
        return self.cfg["expertlens"]["max_concepts"]

    def el_block(self, ds: str) -> int:  # one concept's sentences
        return sum(self.cfg["expertlens"]["datasets"][ds][k] for k in ("n_positive", "n_negative"))

    def el_bank(self, ds: str) -> int:  # upper bound: every concept with n_positive distinct sentences
        return self.el_concepts() * self.cfg["expertlens"]["datasets"][ds]["n_positive"]

    def el_units(self, model: str) -> tuple[int, int]:
        return self.d(model).units(self.cfg["expertlens"]["cache"]["modules"], self.cfg["expertlens"]["cache"]["hook"])

    def expertise_out(self, model: str) -> float:  # the expertise table on disk
        return self.el_concepts() * self.el_units(model)[0] * EXPERTISE_ROW_B / GB

    def el_cache(self, model, dataset) -> Est:
        """cache_activations of the el-units cache (the cached path): one forward per bank sentence."""
        ACT, spec = self.cfg["activations"], self.cfg["expertlens"]["cache"]
        units, bank, b = self.el_units(model)[0], self.el_bank(dataset), ACT["batch_size"]
        dtype_b = DTYPE_B[spec["dtype"]]
        return Est(disk=bank * units * dtype_b / GB, host=HOST_GPU_GB + self.w(model) + 3 * b * units * 4 / GB,
                   gpu=self.infer_gpu(model, b * ACT["max_length"], b * units * 4 / GB),
                   hours=self.hours(2 * self.d(model).params * bank * SENTENCE_TOKENS),
                   note=f"<= {bank:,} sentences x {units:,} units x {dtype_b} B")

    def el_expertise(self, wc) -> Est:  # cached path: one module's responses for the whole bank, 3 copies
        m, ds, widest = wc["model"], wc["dataset"], self.el_units(wc["model"])[1]
        host = HOST_CPU_GB + 3 * self.el_bank(ds) * widest * 4 / GB
        return Est(disk=self.expertise_out(m), host=host + self.el_concepts() * widest * EXPERTISE_ROW_HOST_B / GB,
                   note=f"reads <= {self.el_bank(ds):,} x {widest:,} floats (widest module) x 3 copies")

    def el_expertise_streaming(self, wc) -> Est:  # per concept: its [n_pos + n_neg, units] block on the GPU
        m, ds, ACT = wc["model"], wc["dataset"], self.cfg["activations"]
        units, widest = self.el_units(m)
        block = self.el_block(ds) * units * DTYPE_B[self.cfg["expertlens"]["cache"]["dtype"]] / GB
        tokens = self.el_concepts() * self.el_block(ds) * SENTENCE_TOKENS  # a sentence per concept that lists it
        scratch = 16 * self.el_concepts() * units / GB  # written and deleted: not counted as disk
        return Est(disk=self.expertise_out(m),
                   host=HOST_GPU_GB + self.w(m) + self.el_concepts() * widest * EXPERTISE_ROW_HOST_B / GB,
                   gpu=self.infer_gpu(m, ACT["batch_size"] * ACT["max_length"], block + 4 * 0.5),
                   hours=self.hours(2 * self.d(m).params * tokens),
                   note=f"block {self.el_block(ds):,} x {units:,} units; scratch {scratch:.1f} GB (deleted)")

    def el_similarity(self, wc) -> Est:  # float32 AP matrix + one tau's bool masks
        c, units = self.el_concepts(), self.el_units(wc["model"])[0]
        return Est(disk=c * c / 2 * (len(self.cfg["expertlens"]["taus"]) + 1) * 40 / GB,
                   host=HOST_CPU_GB + c * units * 5 / GB, note=f"{c:,} x {units:,} AP matrix")

    def el_dataset_generated(self, wc) -> Est:
        ds = self.cfg["expertlens"]["datasets"][wc["dataset"]]
        if ds["backend"] != "local":
            return Est(note="remote endpoint")
        g, d = ds["generator"], self.d(ds["generator"])
        samples = self.el_concepts() * ds["n_positive"] / GEN_YIELD
        seq, b = GEN_PROMPT_TOKENS + ds["max_new_tokens"], ds["batch_size"]
        kv = b * seq * d.layers * 2 * d.kv * 2 / GB
        return Est(disk=samples * GEN_YIELD * 200 / GB, host=HOST_GPU_GB + self.w(g),
                   gpu=self.infer_gpu(g, b * seq, kv + b * d.vocab * 4 / GB),
                   hours=self.hours(2 * d.params * samples * seq, samples / b * ds["max_new_tokens"], self.w(g)),
                   note=f"~{samples:,.0f} samples of {seq} tokens (keeps {GEN_YIELD:.0%})")

    def el_baseline_minilm(self, wc) -> Est:  # a 22M-parameter sentence encoder over the bank, 384 floats each
        bank = self.el_bank(wc["dataset"])
        return Est(host=HOST_GPU_GB + 2 * bank * 384 * 4 / GB, gpu=GPU_BASE_GB + 0.5,
                   hours=self.hours(2 * 22.7e6 * bank * SENTENCE_TOKENS))

    def el_causal(self, wc) -> Est:
        c = self.cfg["expertlens"]["causal"]
        steps = c["n_concepts"] * (2 + c["n_random"]) * (1 + c["n_samples"] * c["max_new_tokens"])
        rows = c["n_concepts"] * self.el_units(wc["model"])[0] * EXPERTISE_ROW_HOST_B / GB
        return Est(host=HOST_GPU_GB + self.w(wc["model"]) + rows, gpu=self.infer_gpu(wc["model"], 64 * 32),
                   hours=self.hours(decode_steps=steps, weights_gb=self.w(wc["model"])))

    def cache_activations(self, wc) -> Est:
        m, corpus, name = wc["model"], wc["corpus"], wc["cache"]
        if name == "el-units":
            return self.el_cache(m, corpus.removeprefix("el-"))
        ACT, spec = self.cfg["activations"], self.cfg["activations"]["caches"][name]
        n, units = self.rows(corpus), self.d(m).units(spec["modules"], spec["hook"])[0]
        per_text = ACT["max_length"] if spec["pooling"] == "none" else 1
        return Est(disk=n * per_text * units * DTYPE_B[spec["dtype"]] / GB,
                   host=HOST_GPU_GB + self.w(m) + 3 * ACT["batch_size"] * per_text * units * 4 / GB,
                   gpu=self.infer_gpu(m, ACT["batch_size"] * ACT["max_length"]),
                   hours=self.hours(2 * self.d(m).params * n * ACT["max_length"]), note=f"<= {n:,} texts")

    def rows(self, data: str) -> int:  # max_rows, else the hub data set's size, else 10k
        spec = self.cfg["data"].get(data, {})
        return spec.get("max_rows") or KNOWN_ROWS.get(spec.get("id", "").lower(), 10000)

    def materialise_model(self, wc) -> Est:
        m = wc["model"]
        hub = self.d(m).params * self.d(m).hub_bytes / GB if self.models[m]["source"] == "hub" else 0
        return Est(disk=self.w(m) + hub, host=HOST_CPU_GB + 2 * self.w(m),
                   note="folder + hub cache" if hub else "folder")

    # --- LFP --------------------------------------------------------------------------------------
    def lfp_layers(self, model, task) -> int:  # cached layers: k highest, + k lowest where the ablation runs
        sel = 1 + (self.cfg["lfp"]["ablations"]["lowest_layers"] and task in lfp_section_tasks(self.cfg, "ablations"))
        return min(self.d(model).layers, self.cfg["finetune"]["divergence_k"] * sel)

    def lfp_rl(self, wc) -> Est:
        m, ft = wc["model"], self.cfg["finetune"]
        t = ft["tasks"][wc["task"]]
        hy = task_hyper(t)
        n = rl_train_prompts(hy, t.get("n_prompts")) or self.rows(ft["reviews"]) - ft["eval"]["n_prompts"]
        seq = ft["prompt_tokens"][1] + hy["max_new_tokens"]
        tokens = n * hy["num_generations"] * seq * hy["num_iterations"]
        rounds = math.ceil(n / hy["batch_size"])
        return Est(disk=self.w(m, "float32"), host=HOST_GPU_GB + 2 * self.w(m, "float32"),
                   gpu=self.train_gpu(m, hy["batch_size"] * hy["num_generations"] * seq),
                   hours=self.hours(12 * self.d(m).params * tokens, rounds * hy["max_new_tokens"], self.w(m)),
                   note=f"{n:,} prompts x {hy['num_generations']} completions of <= {seq} tokens")

    def lfp_dpo(self, wc, checkpointing=None, states_b=16, ref_b=4) -> Est:
        m, hy = wc["model"], task_hyper(self.cfg["finetune"]["tasks"][wc["task"]])
        ckpt = hy["gradient_checkpointing"] if checkpointing is None else checkpointing
        tokens = 2 * hy["batch_size"] * hy["max_length"]  # chosen + rejected, padded to max_length (upper bound)
        flops = hy["max_steps"] * tokens * self.d(m).params * (6 + 2 + 2 * ckpt)  # policy fwd+bwd, reference fwd
        return Est(disk=self.w(m, "float32"), host=HOST_GPU_GB + 2 * self.w(m, "float32"),
                   gpu=self.train_gpu(m, tokens, ckpt, states_b, ref_b), hours=self.hours(flops, steps=hy["max_steps"]),
                   note=("gradient checkpointing; " if ckpt else "") + f"{hy['max_steps']:,} steps x {tokens:,} tokens")

    def lfp_rl_eval(self, wc) -> Est:  # base and tuned policy sample the held-out prompts, batches of 64
        ev, hy = self.cfg["finetune"]["eval"], task_hyper(self.cfg["finetune"]["tasks"][wc["task"]])
        steps = 2 * math.ceil(ev["n_prompts"] * ev["n_samples"] / 64) * hy["max_new_tokens"]
        return Est(host=HOST_GPU_GB + 2 * self.w(wc["model"]), gpu=self.infer_gpu(wc["model"], 64 * 32),
                   hours=self.hours(decode_steps=steps, weights_gb=self.w(wc["model"])))

    def lfp_dpo_eval(self, wc) -> Est:  # held-out pairs, chosen + rejected, through base and tuned policy
        m, ev, ft = wc["model"], self.cfg["finetune"]["dpo_eval"], self.cfg["finetune"]["tasks"][wc["task"]]
        bt = 2 * ev["batch_size"] * task_hyper(ft)["max_length"]
        return Est(host=HOST_GPU_GB + 2 * self.w(m), gpu=self.infer_gpu(m, bt, self.w(m)),
                   hours=self.hours(2 * 2 * self.d(m).params * bt * math.ceil(ev["n_prompts"] / ev["batch_size"])))

    def lfp_divergence(self, wc) -> Est:  # base and tuned weights (fp32) on the host
        return Est(host=HOST_CPU_GB + self.w(wc["model"]) + self.w(wc["model"], "float32"))

    def lfp_activations(self, wc) -> Est:
        m, lfp, ACT = wc["model"], self.cfg["lfp"], self.cfg["activations"]
        d, k = self.d(m), self.lfp_layers(m, wc["task"])
        tokens, bt = lfp["n_texts"] * lfp["max_length"], ACT["batch_size"] * lfp["max_length"]
        return Est(disk=tokens * (16 + k * d.h * DTYPE_B[lfp["dtype"]]) / GB,
                   host=HOST_GPU_GB + self.w(m) + 3 * bt * k * d.h * 4 / GB + 0.064,
                   gpu=self.infer_gpu(m, bt, bt * k * d.h * 4 / GB), hours=self.hours(2 * d.params * tokens),
                   note=f"<= {tokens:,} tokens x {k} layers x {d.h} ({lfp['dtype']})")

    def lfp_sae(self, wc) -> Est:
        sae, d, k = self.cfg["lfp"]["sae"], self.d(wc["model"]), self.cfg["finetune"]["divergence_k"]
        n_hidden = max(sae["widths"]) * d.h
        steps = math.ceil(sae["n_examples"] / sae["batch_size"]) * k
        return Est(disk=k * 2 * n_hidden * d.h * 4 / GB,
                   host=HOST_GPU_GB + 3 * sae["shuffle_buffer"] * d.h * 4 / GB,
                   gpu=GPU_BASE_GB + (2 * n_hidden * d.h * 16 + 3 * 4096 * n_hidden * 4) / GB,
                   hours=self.hours(6 * 2 * d.h * n_hidden * sae["n_examples"] * k, steps=steps, step_s=SAE_STEP_S),
                   note=f"{k} layers x AE {d.h}->{n_hidden} (the widest variant)")

    def lfp_probe_data(self, wc) -> Est:  # the triples' 3 texts through the model, AE_n codes of k layers
        m, lfp, d, k = wc["model"], self.cfg["lfp"], self.d(wc["model"]), self.cfg["finetune"]["divergence_k"]
        tokens = lfp["triples"]["n_triples"] * 3 * lfp["max_length"]
        return Est(disk=lfp["triples"]["n_triples"] * 3 * k * d.h * 4 / GB, host=HOST_GPU_GB + self.w(m) + 0.5,
                   gpu=self.infer_gpu(m, 16 * lfp["max_length"], k * d.h * d.h * 4 / GB),
                   hours=self.hours(2 * d.params * tokens))

    # the base-model control's jobs cost what the tuned model's do
    lfp_base_activations, lfp_base_sae, lfp_base_probe_data = lfp_activations, lfp_sae, lfp_probe_data

    def lfp_records(self, wc) -> Est:  # streams the per-token cache: one Arrow batch of one module + codes
        return Est(host=HOST_CPU_GB + 65536 * self.d(wc["model"]).h * 4 * 2 / GB + 2**27 / GB)

    def lfp_ablation(self, wc) -> Est:
        a, m = self.cfg["lfp"]["ablation"], wc["model"]
        steps = (3 + a["n_random"]) * math.ceil(a["n_prefixes"] * a["n_samples"] / 32) * a["max_new_tokens"]
        return Est(host=HOST_GPU_GB + self.w(m), gpu=self.infer_gpu(m, 32 * 64),
                   hours=self.hours(decode_steps=steps, weights_gb=self.w(m)))

    def dpo_options(self, wc) -> list[tuple[str, Est]]:
        """Footprints of one DPO run, largest first: what the code does, and smaller ways."""
        return [
            ("full fine-tuning: fp32 AdamW + fp32 reference", self.lfp_dpo(wc, False)),
            ("+ gradient checkpointing (hyper gradient_checkpointing: true)", self.lfp_dpo(wc, True)),
            ("+ 8-bit AdamW moments (DPOConfig optim adamw_torch_8bit: torchao, or paged_adamw_8bit: "
             "bitsandbytes; neither in envs/torch.yaml, not wired)", self.lfp_dpo(wc, True, states_b=10)),
            ("LoRA (peft, not in envs/torch.yaml, not wired; frozen fp32 base, reference = base without "
             "adapters; changes which weights move: the divergence LFP picks layers by)", self.lfp_dpo(wc, True, 4, 0)),
        ]


ESTIMATED = ("materialise_model", "cache_activations", "el_expertise", "el_expertise_streaming", "el_similarity",
             "el_dataset_generated", "el_baseline_minilm", "el_causal", "lfp_rl", "lfp_rl_eval", "lfp_dpo",
             "lfp_dpo_eval", "lfp_divergence", "lfp_activations", "lfp_base_activations", "lfp_sae", "lfp_base_sae",
             "lfp_probe_data", "lfp_base_probe_data", "lfp_records", "lfp_ablation")


def plan(cfg: dict, jobs: list[dict], root=".") -> tuple[list[dict], list[dict]]:
    """(rows, alternatives) for the dry-run `jobs` of the validated config `cfg`.

    rows: one per job of an ESTIMATED rule: rule, wildcards, resources (as declared), disk, host, gpu
    (GB), hours (GPU-hours), note. alternatives: rows not in this DAG -- the ExpertLens path not taken
    (cached: the el-units cache and the CPU expertise; streaming: the GPU expertise) and the smaller
    DPO footprints of models of 1B parameters or more."""
    p = Planner(cfg, expand_models(cfg["models"]), root)
    rows, alt = [], []
    for j in jobs:
        rule, wc = j["rule"], j["wildcards"]
        if rule in ESTIMATED:
            rows.append({**j, **asdict(getattr(p, rule)(wc))})
        if rule == "el_expertise_streaming":
            cache = p.el_cache(wc["model"], wc["dataset"])
            alt += [{"rule": "cache_activations (cached path)", "wildcards": wc, **asdict(cache)},
                    {"rule": "el_expertise (cached path)", "wildcards": wc, **asdict(p.el_expertise(wc))}]
        elif rule == "el_expertise":
            alt.append({"rule": "el_expertise_streaming (streaming path)", "wildcards": wc,
                        **asdict(p.el_expertise_streaming(wc))})
        elif rule == "lfp_dpo" and p.d(wc["model"]).params >= 1e9:
            alt += [{"rule": f"lfp_dpo: {name}", "wildcards": wc, **asdict(e)} for name, e in p.dpo_options(wc)]
    return rows, alt
