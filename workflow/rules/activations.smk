# The shared activation cache: a model run over a text table, chosen modules written to Parquet.
# ExpertLens asks it for max-pooled responses, LFP for per-token MLP outputs.


rule cache_activations:
    input:
        model=lambda wc: model_dir(wc.model),
        texts=lambda wc: corpus_path(wc.corpus),
    output:
        "results/activations/{model}/{corpus}/{cache}.parquet",
    log:
        "results/logs/activations/{model}/{corpus}/{cache}.log",
    benchmark:
        "results/benchmarks/activations/{model}/{corpus}/{cache}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: job_resources("gpu_job")["threads"]
    resources:
        **gpu_resources(1),
        mem_mb=model_mem_mb("gpu_job"),
        runtime=job_resources("gpu_job")["runtime"],
    params:
        model=lambda wc: wc.model,
        corpus=lambda wc: wc.corpus,
        spec=lambda wc: cache_spec(wc.cache),
        batch_size=ACT["batch_size"],
        max_length=ACT["max_length"],
        bf16_autocast=ACT["bf16_autocast"],
        rows_per_group=ACT["rows_per_group"],
        seed=config["seed"],
    script:
        "../scripts/cache_activations.py"
