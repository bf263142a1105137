# Learned Feedback Patterns §3.3-4.1: contrastive triples, the probe's inputs (the tuned model's
# AE_n codes at the selected layers) and labels (activation deltas), the probes and their tests.


rule lfp_triples:
    input:
        table=lambda wc: lfp_triples_table(wc.task),
        lexicon=f"results/data/{FT['lexicon']}.parquet",
        rewriter=lfp_rewriter_input,
    output:
        "results/lfp/triples/{task}.parquet",
    log:
        "results/logs/lfp/triples/{task}.log",
    benchmark:
        "results/benchmarks/lfp/triples/{task}.tsv"
    wildcard_constraints:
        task=FT_TASK_CHOICE,
    conda:
        "../../envs/torch.yaml"
    threads: job_resources("gpu_job")["threads"]
    resources:
        **gpu_resources(lambda wc: int(lfp_rewriter(wc.task)["backend"] == "local")),
        mem_mb=model_mem_mb("gpu_job", lfp_local_rewriter),
        runtime=job_resources("gpu_job")["runtime"],
    params:
        task=lambda wc: wc.task,
        kind=lambda wc: lfp_kind(wc.task),
        n_triples=LFP["triples"]["n_triples"],
        min_abs_value=LFP["triples"]["min_abs_value"],
        rewriter=lambda wc: lfp_rewriter(wc.task),
        cache_dir="results/lfp/rewriter_cache",
        seed=config["seed"],
    script:
        "../scripts/lfp_triples.py"


rule lfp_probe_data:
    input:
        model="results/finetune/{model}/{task}/model",
        triples="results/lfp/triples/{task}.parquet",
        saes="results/lfp/{model}/{task}/sae/n.safetensors",
        layers="results/finetune/{model}/{task}/layers.json",
    output:
        "results/lfp/{model}/{task}/probe_data.parquet",
    log:
        "results/logs/lfp/{model}/{task}/probe_data.log",
    benchmark:
        "results/benchmarks/lfp/{model}/{task}/probe_data.tsv"
    wildcard_constraints:
        model=LFP_MODEL_CHOICE,
        task=FT_TASK_CHOICE,
    conda:
        "../../envs/torch.yaml"
    threads: job_resources("gpu_job")["threads"]
    resources:
        **gpu_resources(1),
        mem_mb=model_mem_mb("gpu_job"),
        runtime=job_resources("gpu_job")["runtime"],
    params:
        model=lambda wc: f"{wc.model}+{wc.task}",
        batch_size=ACT["batch_size"],
        max_length=LFP["max_length"],
        bf16_autocast=ACT["bf16_autocast"],
        seed=config["seed"],
    script:
        "../scripts/lfp_probe_data.py"


rule lfp_probe:
    input:
        data="results/lfp/{model}/{task}/probe_data.parquet",
        words=lambda wc: (
            [f"results/finetune/{wc.model}/{wc.task}/eval_words.parquet"]
            if lfp_kind(wc.task) == "vader"
            else []
        ),
    output:
        predictions="results/lfp/{model}/{task}/probe_predictions.parquet",
        measures="results/lfp/{model}/{task}/probe_measures.parquet",
        words="results/lfp/{model}/{task}/probe_words.parquet",
    log:
        "results/logs/lfp/{model}/{task}/probe.log",
    benchmark:
        "results/benchmarks/lfp/{model}/{task}/probe.tsv"
    wildcard_constraints:
        model=LFP_MODEL_CHOICE,
        task=FT_TASK_CHOICE,
    conda:
        "../../envs/analysis.yaml"
    params:
        model=lambda wc: wc.model,
        task=lambda wc: wc.task,
        kind=lambda wc: lfp_kind(wc.task),
        test_fraction=LFP["probes"]["test_fraction"],
        n_sample_words=LFP["probes"]["n_sample_words"],
        seed=config["seed"],
    script:
        "../scripts/lfp_probe.py"
