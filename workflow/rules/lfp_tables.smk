# Learned Feedback Patterns: the paper's tables (2-10) and the claims table, over every tuned model.


rule lfp_tables:
    input:
        measures=[f"results/lfp/{m}/{t}/probe_measures.parquet" for m, t in LFP_RUNS],
        words=[f"results/lfp/{m}/{t}/probe_words.parquet" for m, t in LFP_RUNS],
        explanations=[f"results/lfp/{m}/{t}/explanations.parquet" for m, t in LFP_RUNS],
        detection=[f"results/lfp/{m}/{t}/detection.parquet" for m, t in LFP_RUNS],
        activity=[f"results/lfp/{m}/{t}/activity.parquet" for m, t in LFP_RUNS],
        ablation=[f"results/lfp/{m}/{t}/ablation.parquet" for m, t in LFP_RUNS],
        overlap="results/tables/lfp_overlap.csv",
        sparsity="results/tables/lfp_sae_sparsity.csv",
        controls=[
            f"results/lfp/{m}/{t}/base_control.parquet" for m, t in LFP_CONTROL_RUNS
        ],
        dpo_evals=[
            f"results/finetune/{m}/{t}/eval_preferences.parquet"
            for m, t in LFP_RUNS
            if ft_task(t)["method"] == "dpo"
        ],
    output:
        **{
            f"{name}_{ext}": (
                report(
                    f"results/tables/lfp_{name}.csv",
                    caption=f"../report/lfp_{name}.rst",
                    category="Learned Feedback Patterns",
                    subcategory="Probes and validation",
                )
                if ext == "csv"
                else f"results/tables/lfp_{name}.md"
            )
            for name in LFP_TABLES
            for ext in ("csv", "md")
        },
    log:
        "results/logs/lfp/tables.log",
    benchmark:
        "results/benchmarks/lfp/tables.tsv"
    conda:
        "../../envs/analysis.yaml"
    params:
        runs=LFP_RUNS,
        dpo_runs=[(m, t) for m, t in LFP_RUNS if ft_task(t)["method"] == "dpo"],
        n_boot=LFP["n_boot"],
        detection_n_boot=LFP["detection"]["n_boot"],
        sae_target=LFP["sae"]["target"],
        seed=config["seed"],
    script:
        "../scripts/lfp_tables.py"
