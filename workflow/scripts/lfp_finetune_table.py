"""Fine-tuning summary table: training metric early vs late, held-out reward base vs tuned (RL) or
held-out implicit reward margin and preference accuracies (DPO), top layers.

Snakemake rule `lfp_finetune_table`: input.logs, input.selections (per run, in params.runs order),
input.rewards (VADER-like runs only, in run order), input.preferences (DPO runs only, in run order:
lfp_dpo_eval summaries); params.runs [(model, task)], params.methods {task: method} -> output.csv, output.md.
"""

import json
from pathlib import Path

import pandas as pd

from lensflow.core import io
from lensflow.core.runtime import setup_logging
from lensflow.core.tables import write_csv_md
from lensflow.lfp.claims import early_late

HEADLINE = {"rl": "reward_mean", "dpo": "rewards/margins"}


def heldout_preferences(summary: pd.DataFrame) -> dict:
    """The finetune table's eval columns from an lfp_dpo_eval summary: the implicit reward margin as
    eval_*, and the implicit-reward and log-likelihood preference accuracies with their CIs."""
    s = summary.set_index(["measure", "policy"])
    m = s.loc[("implicit_margin", "tuned")]
    row = {"eval_base": 0.0, "eval_tuned": m["value"], "eval_diff": m["value"], "eval_diff_ci_low": m["ci_low"],
           "eval_diff_ci_high": m["ci_high"], "eval_n": m["n"]}
    for measure, policy, col in (("implicit_accuracy", "tuned", "accuracy"), ("loglik_accuracy", "base", "loglik_acc_base"),
                                 ("loglik_accuracy", "tuned", "loglik_acc_tuned"),
                                 ("loglik_accuracy", "tuned - base", "loglik_acc_diff")):
        r = s.loc[(measure, policy)]
        row.update({f"eval_{col}": r["value"], f"eval_{col}_ci_low": r["ci_low"], f"eval_{col}_ci_high": r["ci_high"]})
    return row


def main(sm):
    setup_logging(sm.log[0])
    p = sm.params
    rewards, preferences = iter(sm.input.rewards), iter(sm.input.preferences)
    rows = []
    for (model, task), log_path, sel_path in zip(p.runs, sm.input.logs, sm.input.selections):
        method = p.methods[task]
        log = pd.read_csv(log_path, sep="\t")
        metric = HEADLINE["dpo" if method == "dpo" else "rl"]
        trend = early_late(log[metric]) if metric in log else {}
        row = {"model": model, "task": task, "method": method, "steps": int(log["step"].max()) if len(log) else 0,
               "metric": metric, **{f"train_{k}": v for k, v in trend.items()}}
        if method != "dpo":
            r = io.read_table(next(rewards)).set_index("policy")
            row.update({"eval_base": r.loc["base", "mean"], "eval_tuned": r.loc["tuned", "mean"],
                        "eval_diff": r.loc["tuned - base", "mean"], "eval_diff_ci_low": r.loc["tuned - base", "ci_low"],
                        "eval_diff_ci_high": r.loc["tuned - base", "ci_high"], "eval_p": r.loc["tuned - base", "p"]})
            row["reward_rose"] = "yes" if row["eval_diff_ci_low"] > 0 else "no (CI includes 0 or below)"
        else:  # held-out pairs: the DPO objective's implicit reward margin (0 for the base, the reference)
            row.update(heldout_preferences(io.read_table(next(preferences))))
            row["reward_rose"] = "yes" if row["eval_diff_ci_low"] > 0 else "no (CI includes 0 or below)"
            row["note"] = "eval: DPO implicit reward margin on held-out pairs (base = reference = 0)"
        sel = json.loads(Path(sel_path).read_text())
        row["top_layers"] = ",".join(map(str, sel["highest"]))
        rows.append(row)
    write_csv_md(pd.DataFrame(rows), sm.output.csv, sm.output.md,
                 title="LFP fine-tuning: did the feedback signal rise? (95% CIs; decided by the interval)")


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
