# Models: each registry entry is materialised once as a plain local folder that every later rule loads.


rule materialise_model:
    output:
        directory("results/models/{model}"),
    log:
        "results/logs/models/{model}.log",
    benchmark:
        "results/benchmarks/models/{model}.tsv"
    wildcard_constraints:
        model=registry_choice(MODELS),
    conda:
        "../../envs/torch.yaml"
    resources:
        mem_mb=model_mem_mb("cpu_job"),
        runtime=job_resources("cpu_job")["runtime"],
    params:
        name=lambda wc: wc.model,
        spec=lambda wc: MODELS[wc.model],
    script:
        "../scripts/materialise_model.py"
