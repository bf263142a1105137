# Learned Feedback Patterns §3.2 and App. F: record the tuned model's MLP outputs on the task's
# text at the most-changed layers, train sparse autoencoders AE_n and AE_2n on them (plus the
# paper's ablations), and match the two dictionaries' features (§3.4, Fig. 3).


rule lfp_texts:
    input:
        lambda wc: lfp_task_table(wc.task),
    output:
        "results/lfp/texts/{task}.parquet",
    log:
        "results/logs/lfp/texts/{task}.log",
    benchmark:
        "results/benchmarks/lfp/texts/{task}.tsv"
    wildcard_constraints:
        task=FT_TASK_CHOICE,
    conda:
        "../../envs/analysis.yaml"
    params:
        task=lambda wc: wc.task,
        method=lambda wc: ft_task(wc.task)["method"],
        n_texts=LFP["n_texts"],
        seed=config["seed"],
    script:
        "../scripts/lfp_texts.py"


rule lfp_activations:
    input:
        model="results/finetune/{model}/{task}/model",
        texts="results/lfp/texts/{task}.parquet",
        layers="results/finetune/{model}/{task}/layers.json",
    output:
        "results/lfp/{model}/{task}/activations.parquet",
    log:
        "results/logs/lfp/{model}/{task}/activations.log",
    benchmark:
        "results/benchmarks/lfp/{model}/{task}/activations.tsv"
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
        selections=lambda wc: lfp_selections(wc.model, wc.task),
        dtype=LFP["dtype"],
        batch_size=ACT["batch_size"],
        max_length=LFP["max_length"],
        bf16_autocast=ACT["bf16_autocast"],
        rows_per_group=ACT["rows_per_group"],
        seed=config["seed"],
    script:
        "../scripts/lfp_activations.py"


rule lfp_sae:
    input:
        activations="results/lfp/{model}/{task}/activations.parquet",
        layers="results/finetune/{model}/{task}/layers.json",
    output:
        saes="results/lfp/{model}/{task}/sae/{variant}.safetensors",
        metrics="results/lfp/{model}/{task}/sae/{variant}_metrics.parquet",
        history="results/lfp/{model}/{task}/sae/{variant}_history.parquet",
    log:
        "results/logs/lfp/{model}/{task}/sae_{variant}.log",
    benchmark:
        "results/benchmarks/lfp/{model}/{task}/sae_{variant}.tsv"
    wildcard_constraints:
        model=LFP_MODEL_CHOICE,
        task=FT_TASK_CHOICE,
        variant=r"[A-Za-z0-9.\-]+",
    conda:
        "../../envs/torch.yaml"
    threads: job_resources("gpu_job")["threads"]
    resources:
        **gpu_resources(1),
        mem_mb=job_resources("gpu_job")["mem_mb"],
        runtime=job_resources("gpu_job")["runtime"],
    params:
        model=lambda wc: wc.model,
        task=lambda wc: wc.task,
        variant=lambda wc: wc.variant,
        settings=lambda wc: lfp_variants(wc.model, wc.task)[wc.variant],
        lr=LFP["sae"]["lr"],
        batch_size=LFP["sae"]["batch_size"],
        n_examples=LFP["sae"]["n_examples"],
        repeat_tokens=LFP["sae"]["repeat_tokens"],
        shuffle_buffer=LFP["sae"]["shuffle_buffer"],
        normalise_inputs=LFP["sae"]["normalise_inputs"],
        min_heldout_tokens=LFP["sae"]["min_heldout_tokens"],
        heldout_fraction=LFP["heldout_fraction"],
        # the sparse-code check's reference, for AE_n only (the check reads AE_n; the sweep shares its width)
        linear_l0_fraction=lambda wc: (
            LFP["sae"]["target"]["l0_fraction"] if wc.variant == "n" else None
        ),
        seed=config["seed"],
    script:
        "../scripts/lfp_sae.py"


rule lfp_overlap:
    input:
        small="results/lfp/{model}/{task}/sae/n.safetensors",
        big="results/lfp/{model}/{task}/sae/2n.safetensors",
    output:
        "results/lfp/{model}/{task}/overlap.parquet",
    log:
        "results/logs/lfp/{model}/{task}/overlap.log",
    benchmark:
        "results/benchmarks/lfp/{model}/{task}/overlap.tsv"
    conda:
        "../../envs/analysis.yaml"
    params:
        model=lambda wc: wc.model,
        task=lambda wc: wc.task,
    script:
        "../scripts/lfp_overlap.py"


rule lfp_sae_table:
    input:
        metrics=[f for m, t in LFP_RUNS for f in lfp_sae_files(m, t)],
        overlap=[f"results/lfp/{m}/{t}/overlap.parquet" for m, t in LFP_RUNS],
    output:
        sae_csv=report(
            "results/tables/lfp_sae.csv",
            caption="../report/lfp_sae.rst",
            category="Learned Feedback Patterns",
            subcategory="Sparse autoencoders",
        ),
        sae_md="results/tables/lfp_sae.md",
        overlap_csv=report(
            "results/tables/lfp_overlap.csv",
            caption="../report/lfp_overlap.rst",
            category="Learned Feedback Patterns",
            subcategory="Sparse autoencoders",
        ),
        overlap_md="results/tables/lfp_overlap.md",
        sparsity_csv=report(
            "results/tables/lfp_sae_sparsity.csv",
            caption="../report/lfp_sae_sparsity.rst",
            category="Learned Feedback Patterns",
            subcategory="Sparse autoencoders",
        ),
        sparsity_md="results/tables/lfp_sae_sparsity.md",
    log:
        "results/logs/lfp/sae_table.log",
    benchmark:
        "results/benchmarks/lfp/sae_table.tsv"
    conda:
        "../../envs/analysis.yaml"
    params:
        n_features=LFP["overlap"]["n_features"],
        target=LFP["sae"]["target"],
    script:
        "../scripts/lfp_sae_table.py"
