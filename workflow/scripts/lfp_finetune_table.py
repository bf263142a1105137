"""Fine-tuning summary table: training metric early vs late, held-out reward base vs tuned, top layers.

Snakemake rule `lfp_finetune_table`: input.logs, input.selections (per run, in params.runs order),
input.rewards (VADER-like runs only, in run order); params.runs [(model, task)], params.methods
{task: method} -> output.csv, output.md.
"""

import json
from pathlib import Path

import pandas as pd

from lensflow.core import io
from lensflow.core.runtime import setup_logging
from lensflow.core.tables import write_csv_md
from lensflow.lfp.claims import early_late

HEADLINE = {"rl": "reward_mean", "dpo": "rewards/margins"}


def main(sm):
    setup_logging(sm.log[0])
    p = sm.params
    rewards = iter(sm.input.rewards)
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
        else:
            row["reward_rose"] = "yes" if trend.get("ci_low", float("nan")) > 0 else "no (CI includes 0 or below)"
            row["note"] = "DPO margins on the training pairs (late steps may revisit them); no held-out pairs yet"
        sel = json.loads(Path(sel_path).read_text())
        row["top_layers"] = ",".join(map(str, sel["highest"]))
        rows.append(row)
    write_csv_md(pd.DataFrame(rows), sm.output.csv, sm.output.md,
                 title="LFP fine-tuning: did the feedback signal rise? (95% CIs; decided by the interval)")


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
