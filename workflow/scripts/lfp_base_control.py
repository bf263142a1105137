"""Compare a tuned model's probe with the same probe on the base model (a control the paper lacks).

Snakemake rule `lfp_base_control`: input.tuned_words / input.base_words (VADER per-word test tables),
input.tuned_predictions / input.base_predictions (every probe row with split and prediction);
params: model, task, kind, n_boot, seed -> output[0] (measure, value, ci_low, ci_high, p, n, model,
task): Kendall tau (VADER) or held-out accuracy (hh / toxic) on both models and tuned - base.
"""

from lensflow.core import io
from lensflow.core.runtime import setup_logging
from lensflow.lfp.probes.base_control import accuracy_control, kendall_control


def main(sm):
    log = setup_logging(sm.log[0])
    p = sm.params
    if p.kind == "vader":
        out = kendall_control(io.read_table(sm.input.tuned_words), io.read_table(sm.input.base_words),
                              n_boot=p.n_boot, seed=p.seed)
    else:
        out = accuracy_control(io.read_table(sm.input.tuned_predictions), io.read_table(sm.input.base_predictions),
                               n_boot=p.n_boot, seed=p.seed)
    io.write_table(out.assign(model=p.model, task=p.task), sm.output[0],
                   {"model": p.model, "task": p.task, "kind": p.kind, "n_boot": p.n_boot, "seed": p.seed})
    for r in out.itertuples():
        log.info("%s/%s %s = %.4g [%.4g, %.4g] p=%.3g n=%d", p.model, p.task, r.measure, r.value, r.ci_low,
                 r.ci_high, r.p, r.n)


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
