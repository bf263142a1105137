# Data: each registry entry is read from its source and prepared as a tidy Parquet table.


rule prepare_data:
    output:
        "results/data/{dataset}.parquet",
    log:
        "results/logs/data/{dataset}.log",
    benchmark:
        "results/benchmarks/data/{dataset}.tsv"
    wildcard_constraints:
        dataset=registry_choice(DATA),
    conda:
        "../../envs/analysis.yaml"
    resources:
        mem_mb=job_resources("cpu_job")["mem_mb"],
        runtime=job_resources("cpu_job")["runtime"],
    params:
        name=lambda wc: wc.dataset,
        spec=lambda wc: DATA[wc.dataset],
        seed=config["seed"],
    script:
        "../scripts/prepare_data.py"
