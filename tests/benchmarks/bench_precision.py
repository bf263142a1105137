"""Benchmark what `activations.bf16_autocast: auto` chooses between, and the shared sampling loop.

Not a pytest test. Run from the repository root after the embedded models exist (results/models/):

    .venv/bin/python tests/benchmarks/bench_precision.py            # ~2-3 min on 2 cores
    .venv/bin/python tests/benchmarks/bench_precision.py --model results/models/smollm2-135m --repeats 5

1. Forward throughput (issue 13's reference measurement): SmolLM2-135M, one thread, a batch of
   8 x 64 tokens, fp32 vs bf16 autocast, tokens/s; and what `auto` resolves to on this machine, so a
   reader can check that auto picked the faster of the two here. On a CPU without native bf16 the
   ISA-limited run (ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2) is the closest this machine
   gets to one; the script says which kernels torch used.
2. Sampling: 64 chat prompts of the generated-sentence writer, 28 new tokens, top-k 50 / top-p 0.95,
   one thread: transformers' generate() vs lensflow.core.sampling (finished rows leave the batch,
   inverse-CDF draws), interleaved runs, medians.

Prints the machine line first (lensflow.core.machine), as every benchmark here does.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "workflow"))

from lensflow.core.machine import machine_line  # noqa: E402
from lensflow.core.runtime import resolve_bf16_autocast  # noqa: E402
from lensflow.core.sampling import Sampling, sample_texts  # noqa: E402

WORDS = ["dog", "river", "money", "king", "war", "tree", "music", "law"] * 8  # 64 prompts


def forward_tps(model, bf16: bool, repeats: int) -> float:
    ids = torch.randint(100, 20000, (8, 64), generator=torch.Generator().manual_seed(0))
    times = []
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        model(input_ids=ids)  # warm-up
        for _ in range(repeats):
            t = time.perf_counter()
            model(input_ids=ids)
            times.append(time.perf_counter() - t)
    return ids.numel() / statistics.median(times)


def sampling_times(model, tok, repeats: int) -> dict[str, float]:
    prompts = [tok.apply_chat_template([{"role": "user", "content": f'Write one short, simple sentence that uses the word "{w}".'}],
                                       tokenize=False, add_generation_prompt=True) for w in WORDS]

    def generate():
        tok.padding_side = "left"
        enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.inference_mode():
            model.generate(**enc, do_sample=True, temperature=1.0, top_k=50, top_p=0.95, max_new_tokens=28,
                           pad_token_id=tok.pad_token_id)

    def ours():
        sample_texts(model, tok, prompts, Sampling(28, 1.0, 50, 0.95), batch_size=64, device="cpu",
                     add_special_tokens=False)

    runs = {"generate()": [], "lensflow.core.sampling": []}
    for _ in range(repeats):  # interleaved, so a busy minute hits both
        for name, fn in (("generate()", generate), ("lensflow.core.sampling", ours)):
            torch.manual_seed(0)
            t = time.perf_counter()
            fn()
            runs[name].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in runs.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=str(ROOT / "results/models/smollm2-135m"))
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--skip-sampling", action="store_true")
    args = p.parse_args()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    print(machine_line())
    print(f"torch CPU kernels: {torch.backends.cpu.get_cpu_capability()}")
    torch.set_num_threads(1)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(args.model)
    fp32, bf16 = forward_tps(model, False, args.repeats), forward_tps(model, True, args.repeats)
    print(f"forward, 1 thread, 8x64 tokens: fp32 {fp32:.0f} tok/s, bf16 autocast {bf16:.0f} tok/s "
          f"(bf16/fp32 {bf16 / fp32:.2f}x); auto here -> {resolve_bf16_autocast('auto', torch.device('cpu')).reason}")
    if not args.skip_sampling:
        t = sampling_times(model, tok, args.repeats)
        a, b = t["generate()"], t["lensflow.core.sampling"]
        print(f"sampling 64 prompts x 28 tokens, 1 thread: generate() {a:.1f} s, lensflow.core.sampling {b:.1f} s "
              f"(median of {args.repeats}; {a / b:.2f}x)")


if __name__ == "__main__":
    main()
