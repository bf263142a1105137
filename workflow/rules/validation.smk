# Learned Feedback Patterns §3.4 and §4.2: explain the high-overlap features from their top
# activation records, label them as related or not to the task, score each explanation by
# detection on held-out contexts against a random-explanation control, then check the probes
# against the related features whose explanation beats its control (Table 7) and zero-ablate
# them during generation (Table 6).


rule lfp_records:
    input:
        activations="results/lfp/{model}/{task}/activations.parquet",
        saes="results/lfp/{model}/{task}/sae/n.safetensors",
        overlap="results/lfp/{model}/{task}/overlap.parquet",
        layers="results/finetune/{model}/{task}/layers.json",
        tokenizer="results/finetune/{model}/{task}/model",
    output:
        records="results/lfp/{model}/{task}/records.parquet",
        features="results/lfp/{model}/{task}/features.parquet",
    log:
        "results/logs/lfp/{model}/{task}/records.log",
    benchmark:
        "results/benchmarks/lfp/{model}/{task}/records.tsv"
    conda:
        "../../envs/torch.yaml"
    params:
        model=lambda wc: f"{wc.model}+{wc.task}",
        n_features=LFP["overlap"]["n_features"],
        k_records=LFP["explainer"]["k_records"],
        window=LFP["explainer"]["window"],
        seed=config["seed"],
    script:
        "../scripts/lfp_records.py"


rule lfp_explain:
    input:
        features="results/lfp/{model}/{task}/features.parquet",
        explainer=lfp_explainer_input,
    output:
        "results/lfp/{model}/{task}/explanations.parquet",
    log:
        "results/logs/lfp/{model}/{task}/explain.log",
    benchmark:
        "results/benchmarks/lfp/{model}/{task}/explain.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: job_resources("gpu_job")["threads"]
    resources:
        **gpu_resources(int(lfp_local_explainer() is not None)),
        mem_mb=model_mem_mb("gpu_job", lfp_local_explainer),
        runtime=job_resources("gpu_job")["runtime"],
    params:
        model=lambda wc: f"{wc.model}+{wc.task}",
        explainer={k: v for k, v in LFP["explainer"].items()},
        description=lambda wc: ft_task(wc.task)["description"],
        cache_dir="results/lfp/explainer_cache",
        seed=config["seed"],
    script:
        "../scripts/lfp_explain.py"


rule lfp_detection:
    input:
        activations="results/lfp/{model}/{task}/activations.parquet",
        saes="results/lfp/{model}/{task}/sae/n.safetensors",
        layers="results/finetune/{model}/{task}/layers.json",
        tokenizer="results/finetune/{model}/{task}/model",
        records="results/lfp/{model}/{task}/records.parquet",
        explanations="results/lfp/{model}/{task}/explanations.parquet",
        explainer=lfp_explainer_input,
    output:
        answers="results/lfp/{model}/{task}/detection_answers.parquet",
        scores="results/lfp/{model}/{task}/detection.parquet",
    log:
        "results/logs/lfp/{model}/{task}/detection.log",
    benchmark:
        "results/benchmarks/lfp/{model}/{task}/detection.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: job_resources("gpu_job")["threads"]
    resources:
        **gpu_resources(int(lfp_local_explainer() is not None)),
        mem_mb=model_mem_mb("gpu_job", lfp_local_explainer),
        runtime=job_resources("gpu_job")["runtime"],
    params:
        model=lambda wc: f"{wc.model}+{wc.task}",
        explainer={k: v for k, v in LFP["explainer"].items()},
        k=LFP["detection"]["k"],
        window=LFP["explainer"]["window"],
        alpha=LFP["detection"]["alpha"],
        n_boot=LFP["detection"]["n_boot"],
        cache_dir="results/lfp/explainer_cache",
        seed=config["seed"],
    script:
        "../scripts/lfp_detection.py"


rule lfp_activity:
    input:
        data="results/lfp/{model}/{task}/probe_data.parquet",
        predictions="results/lfp/{model}/{task}/probe_predictions.parquet",
        explanations="results/lfp/{model}/{task}/explanations.parquet",
        detection="results/lfp/{model}/{task}/detection.parquet",
    output:
        "results/lfp/{model}/{task}/activity.parquet",
    log:
        "results/logs/lfp/{model}/{task}/activity.log",
    benchmark:
        "results/benchmarks/lfp/{model}/{task}/activity.tsv"
    conda:
        "../../envs/analysis.yaml"
    params:
        model=lambda wc: wc.model,
        task=lambda wc: wc.task,
        threshold=lambda wc: (
            LFP["probes"]["high_threshold"] if lfp_kind(wc.task) == "vader" else 0.5
        ),
        seed=config["seed"],
    script:
        "../scripts/lfp_activity.py"


rule lfp_ablation:
    input:
        model="results/finetune/{model}/{task}/model",
        saes="results/lfp/{model}/{task}/sae/n.safetensors",
        explanations="results/lfp/{model}/{task}/explanations.parquet",
        detection="results/lfp/{model}/{task}/detection.parquet",
        layers="results/finetune/{model}/{task}/layers.json",
        table=lambda wc: lfp_task_table(wc.task),
        lexicon=f"results/data/{FT['lexicon']}.parquet",
    output:
        "results/lfp/{model}/{task}/ablation.parquet",
    log:
        "results/logs/lfp/{model}/{task}/ablation.log",
    benchmark:
        "results/benchmarks/lfp/{model}/{task}/ablation.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: job_resources("gpu_job")["threads"]
    resources:
        **gpu_resources(1),
        mem_mb=model_mem_mb("gpu_job"),
        runtime=job_resources("gpu_job")["runtime"],
    params:
        model=lambda wc: f"{wc.model}+{wc.task}",
        kind=lambda wc: lfp_kind(wc.task),
        n_prefixes=LFP["ablation"]["n_prefixes"],
        prefix_tokens=LFP["ablation"]["prefix_tokens"],
        n_samples=LFP["ablation"]["n_samples"],
        max_new_tokens=LFP["ablation"]["max_new_tokens"],
        n_random=LFP["ablation"]["n_random"],
        seed=config["seed"],
    script:
        "../scripts/lfp_ablation.py"
