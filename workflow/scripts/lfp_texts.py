"""The task's texts for SAE training (LFP §3.2): reviews for RL tasks, preference exchanges for DPO.

Snakemake rule `lfp_texts`: input[0] (corpus or preference Parquet); params: task, method, n_texts,
seed -> output[0] (Parquet: text_id, text).
"""

from lensflow.core import io
from lensflow.core.runtime import setup_logging
from lensflow.lfp.sae.task_texts import task_texts


def main(sm):
    log = setup_logging(sm.log[0])
    p = sm.params
    table = io.read_table(sm.input[0])
    texts = task_texts(p.method, table, p.n_texts, seed=p.seed)
    io.write_table(texts, sm.output[0], {"task": p.task, "method": p.method, "source": sm.input[0], "seed": p.seed,
                                         "n_texts": len(texts)})
    log.info("%s: %d texts from %s", p.task, len(texts), sm.input[0])


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
