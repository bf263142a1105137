# ExpertLens (Fedzechkina et al.): concept sentence sets -> unit responses -> expertise (AP) ->
# experts per tau -> Jaccard similarity -> alignment with human judgments, against baselines.
# Helpers: expertlens_common.smk.


rule el_concepts:
    input:
        corpora=[f"results/data/{c}.parquet" for c in EL["corpora"]],
        pairs=[f"results/data/{p}.parquet" for p in EL["pairs"]],
    output:
        sentences="results/expertlens/mined_sentences.parquet",
        concepts="results/expertlens/concepts.parquet",
    log:
        "results/logs/expertlens/concepts.log",
    benchmark:
        "results/benchmarks/expertlens/concepts.tsv"
    conda:
        "../../envs/torch.yaml"
    resources:
        mem_mb=job_resources("cpu_job")["mem_mb"],
        runtime=job_resources("cpu_job")["runtime"],
    params:
        min_positive=EL["min_positive"],
        max_concepts=EL["max_concepts"],
        min_chars=EL["sentence_chars"][0],
        max_chars=EL["sentence_chars"][1],
        seed=config["seed"],
    script:
        "../scripts/el_concepts.py"


rule el_dataset_mined:
    input:
        sentences="results/expertlens/mined_sentences.parquet",
        concepts="results/expertlens/concepts.parquet",
    output:
        sentences="results/expertlens/datasets/{dataset}/sentences.parquet",
        membership="results/expertlens/datasets/{dataset}/membership.parquet",
    log:
        "results/logs/expertlens/datasets/{dataset}.log",
    benchmark:
        "results/benchmarks/expertlens/datasets/{dataset}.tsv"
    wildcard_constraints:
        dataset=registry_choice(el_datasets("mined")) or "^$",
    conda:
        "../../envs/analysis.yaml"
    resources:
        mem_mb=job_resources("cpu_job")["mem_mb"],
        runtime=job_resources("cpu_job")["runtime"],
    params:
        dataset=lambda wc: el_dataset(wc.dataset),
        corpora=EL["corpora"],
        seed=config["seed"],
    script:
        "../scripts/el_mined.py"


rule el_dataset_generated:
    input:
        model=el_generator_input,
        concepts="results/expertlens/concepts.parquet",
        pairs=[f"results/data/{p}.parquet" for p in EL["pairs"]],
    output:
        sentences="results/expertlens/datasets/{dataset}/sentences.parquet",
        membership="results/expertlens/datasets/{dataset}/membership.parquet",
    log:
        "results/logs/expertlens/datasets/{dataset}.log",
    benchmark:
        "results/benchmarks/expertlens/datasets/{dataset}.tsv"
    wildcard_constraints:
        dataset=registry_choice(el_datasets("generated")) or "^$",
    conda:
        "../../envs/torch.yaml"
    threads: job_resources("gpu_job")["threads"]
    resources:
        **gpu_resources(lambda wc: int(el_dataset(wc.dataset)["backend"] == "local")),
        mem_mb=model_mem_mb("gpu_job", el_local_generator),
        runtime=job_resources("gpu_job")["runtime"],
    params:
        dataset=lambda wc: el_dataset(wc.dataset),
        generator=el_generator_name,
        endpoint=el_endpoint,
        cache_dir="results/expertlens/generator_cache",
        min_positive=lambda wc: min(
            EL["min_positive"], el_dataset(wc.dataset)["n_positive"]
        ),
        seed=config["seed"],
    script:
        "../scripts/el_generated.py"


# The expertise of every unit for every concept: from the el-units response cache (cached, CPU,
# numba kernel) or without it (streaming: per concept, pooled on the device, torch kernel; no cache
# of the whole bank). `expertlens.expertise.path`, resolved at DAG time (config/README.md): the two
# rules need different inputs, so only one exists in a run.
if EL_EXPERTISE_PATH == "cached":

    rule el_expertise:
        input:
            responses="results/activations/{model}/el-{dataset}/el-units.parquet",
            membership="results/expertlens/datasets/{dataset}/membership.parquet",
        output:
            expertise="results/expertlens/{model}/{dataset}/expertise.parquet",
            counts="results/expertlens/{model}/{dataset}/counts.parquet",
            location="results/expertlens/{model}/{dataset}/location.parquet",
        log:
            "results/logs/expertlens/{model}/{dataset}/expertise.log",
        benchmark:
            "results/benchmarks/expertlens/{model}/{dataset}/expertise.tsv"
        conda:
            "../../envs/analysis.yaml"
        threads: job_resources("expertise_job")["threads"]
        resources:
            mem_mb=job_resources("expertise_job")["mem_mb"],
            runtime=job_resources("expertise_job")["runtime"],
            cpus_per_task=job_resources("expertise_job")["threads"],  # SLURM: one core per thread
        params:
            model=lambda wc: wc.model,
            dataset=lambda wc: wc.dataset,
            taus=EL["taus"],
            tau_grid=EL["tau_grid"],
            seed=config["seed"],
        script:
            "../scripts/el_expertise.py"

else:

    rule el_expertise_streaming:
        input:
            model=lambda wc: model_dir(wc.model),
            sentences="results/expertlens/datasets/{dataset}/sentences.parquet",
            membership="results/expertlens/datasets/{dataset}/membership.parquet",
        output:
            expertise="results/expertlens/{model}/{dataset}/expertise.parquet",
            counts="results/expertlens/{model}/{dataset}/counts.parquet",
            location="results/expertlens/{model}/{dataset}/location.parquet",
        log:
            "results/logs/expertlens/{model}/{dataset}/expertise.log",
        benchmark:
            "results/benchmarks/expertlens/{model}/{dataset}/expertise.tsv"
        conda:
            "../../envs/torch.yaml"
        threads: job_resources("gpu_job")["threads"]
        resources:
            **gpu_resources(1),
            mem_mb=model_mem_mb("gpu_job"),
            runtime=job_resources("gpu_job")["runtime"],
        params:
            model=lambda wc: wc.model,
            dataset=lambda wc: wc.dataset,
            taus=EL["taus"],
            tau_grid=EL["tau_grid"],
            spec=EL["cache"],
            batch_size=ACT["batch_size"],
            max_length=ACT["max_length"],
            bf16_autocast=ACT["bf16_autocast"],
            seed=config["seed"],
        script:
            "../scripts/el_expertise_stream.py"


rule el_similarity:
    input:
        expertise="results/expertlens/{model}/{dataset}/expertise.parquet",
    output:
        "results/expertlens/{model}/{dataset}/similarity.parquet",
    log:
        "results/logs/expertlens/{model}/{dataset}/similarity.log",
    benchmark:
        "results/benchmarks/expertlens/{model}/{dataset}/similarity.tsv"
    conda:
        "../../envs/analysis.yaml"
    resources:
        mem_mb=job_resources("cpu_job")["mem_mb"],
        runtime=job_resources("cpu_job")["runtime"],
    params:
        model=lambda wc: wc.model,
        dataset=lambda wc: wc.dataset,
        taus=EL["taus"],
        seed=config["seed"],
    script:
        "../scripts/el_similarity.py"


rule el_baseline_glove:
    input:
        concepts="results/expertlens/concepts.parquet",
    output:
        "results/expertlens/baselines/glove.parquet",
    log:
        "results/logs/expertlens/baselines/glove.log",
    benchmark:
        "results/benchmarks/expertlens/baselines/glove.tsv"
    conda:
        "../../envs/analysis.yaml"
    params:
        seed=config["seed"],
    script:
        "../scripts/el_baseline_words.py"


rule el_baseline_minilm:
    input:
        sentences="results/expertlens/datasets/{dataset}/sentences.parquet",
        membership="results/expertlens/datasets/{dataset}/membership.parquet",
    output:
        "results/expertlens/baselines/minilm/{dataset}.parquet",
    log:
        "results/logs/expertlens/baselines/minilm/{dataset}.log",
    benchmark:
        "results/benchmarks/expertlens/baselines/minilm/{dataset}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: job_resources("gpu_job")["threads"]
    resources:
        **gpu_resources(1),
        mem_mb=job_resources("gpu_job")["mem_mb"],
        runtime=job_resources("gpu_job")["runtime"],
    params:
        seed=config["seed"],
    script:
        "../scripts/el_baseline_sentences.py"


rule el_baseline_embedding:
    input:
        model=lambda wc: model_dir(wc.model),
        concepts="results/expertlens/concepts.parquet",
    output:
        "results/expertlens/baselines/input_embedding/{model}.parquet",
    log:
        "results/logs/expertlens/baselines/input_embedding/{model}.log",
    benchmark:
        "results/benchmarks/expertlens/baselines/input_embedding/{model}.tsv"
    conda:
        "../../envs/torch.yaml"
    resources:  # reads the embedding rows of the concepts' tokens, not the model
        mem_mb=job_resources("cpu_job")["mem_mb"],
        runtime=job_resources("cpu_job")["runtime"],
    params:
        model=lambda wc: wc.model,
        seed=config["seed"],
    script:
        "../scripts/el_baseline_embeddings.py"


rule el_alignment:
    input:
        similarities=lambda wc: list(el_similarity_sources().values()),
        pairs=[f"results/data/{p}.parquet" for p in EL["pairs"]],
        manifests=lambda wc: [model_dir(m) for m, _ in EL_RUNS],
    output:
        table="results/expertlens/alignment.parquet",
        csv=report(
            "results/tables/expertlens_alignment.csv",
            caption="../report/el_alignment_table.rst",
            category="ExpertLens",
            subcategory="Alignment",
        ),
        md="results/tables/expertlens_alignment.md",
    log:
        "results/logs/expertlens/alignment.log",
    benchmark:
        "results/benchmarks/expertlens/alignment.tsv"
    conda:
        "../../envs/analysis.yaml"
    params:
        labels=lambda wc: list(el_similarity_sources()),
        pairs=EL["pairs"],
        run_models=[m for m, _ in EL_RUNS],
        n_boot=EL["n_boot"],
        seed=config["seed"],
    script:
        "../scripts/el_alignment.py"


rule el_stability:
    input:
        similarities=el_files("similarity.parquet"),
    output:
        table="results/expertlens/stability.parquet",
        csv=report(
            "results/tables/expertlens_stability.csv",
            caption="../report/el_stability_table.rst",
            category="ExpertLens",
            subcategory="Stability",
        ),
        md="results/tables/expertlens_stability.md",
    log:
        "results/logs/expertlens/stability.log",
    benchmark:
        "results/benchmarks/expertlens/stability.tsv"
    conda:
        "../../envs/analysis.yaml"
    params:
        runs=EL_GRID,
        n_boot=EL["n_boot"],
        seed=config["seed"],
    script:
        "../scripts/el_stability.py"


rule el_causal:
    input:
        model=lambda wc: model_dir(wc.model),
        expertise="results/expertlens/{model}/{dataset}/expertise.parquet",
    output:
        table="results/expertlens/{model}/{dataset}/causal_table.parquet",
        summary="results/expertlens/{model}/{dataset}/causal_summary.parquet",
    log:
        "results/logs/expertlens/{model}/{dataset}/causal.log",
    benchmark:
        "results/benchmarks/expertlens/{model}/{dataset}/causal.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: job_resources("gpu_job")["threads"]
    resources:
        **gpu_resources(1),
        mem_mb=model_mem_mb("gpu_job"),
        runtime=job_resources("gpu_job")["runtime"],
    params:
        concepts=[],
        n_concepts=EL["causal"]["n_concepts"],
        k=EL["causal"]["k"],
        n_random=EL["causal"]["n_random"],
        max_new_tokens=EL["causal"]["max_new_tokens"],
        n_samples=EL["causal"]["n_samples"],
        hook=EL["cache"]["hook"],
        seed=config["seed"],
    script:
        "../scripts/el_causal.py"


rule el_domains:
    input:
        similarity="results/expertlens/{model}/{dataset}/similarity.parquet",
        categories=el_categories_files(),
    output:
        table="results/expertlens/{model}/{dataset}/domains.parquet",
        labels="results/expertlens/{model}/{dataset}/domain_labels.parquet",
        png=report(
            "results/figures/expertlens/domains_{model}_{dataset}.png",
            caption="../report/el_domains.rst",
            category="ExpertLens",
            subcategory="Domains",
        ),
        pdf="results/figures/expertlens/domains_{model}_{dataset}.pdf",
    log:
        "results/logs/expertlens/{model}/{dataset}/domains.log",
    benchmark:
        "results/benchmarks/expertlens/{model}/{dataset}/domains.tsv"
    conda:
        "../../envs/analysis.yaml"
    params:
        model=lambda wc: wc.model,
        dataset=lambda wc: wc.dataset,
        tau=EL_TAU,
        categories=EL["categories"],
        n_clusters=EL["n_clusters"],
        n_perm=EL["n_perm"],
        seed=config["seed"],
        dpi=config["figures"]["dpi"],
    script:
        "../scripts/el_domains.py"


rule el_tables:
    input:
        concepts="results/expertlens/concepts.parquet",
        memberships=[
            f"results/expertlens/datasets/{d}/membership.parquet"
            for d in EL["datasets"]
        ],
        domains=el_files("domains.parquet"),
        causal=el_files("causal_summary.parquet", EL_CAUSAL_RUNS),
    output:
        concepts_csv=report(
            "results/tables/expertlens_concepts.csv",
            caption="../report/el_concepts.rst",
            category="ExpertLens",
            subcategory="Concepts",
        ),
        concepts_md="results/tables/expertlens_concepts.md",
        domains_csv=report(
            "results/tables/expertlens_domains.csv",
            caption="../report/el_domains_table.rst",
            category="ExpertLens",
            subcategory="Domains",
        ),
        domains_md="results/tables/expertlens_domains.md",
        causal_csv=report(
            "results/tables/expertlens_causal.csv",
            caption="../report/el_causal_table.rst",
            category="ExpertLens",
            subcategory="Causal check",
        ),
        causal_md="results/tables/expertlens_causal.md",
    log:
        "results/logs/expertlens/tables.log",
    benchmark:
        "results/benchmarks/expertlens/tables.tsv"
    conda:
        "../../envs/analysis.yaml"
    params:
        datasets=list(EL["datasets"]),
        models=EL["models"],
    script:
        "../scripts/el_tables.py"


rule el_claims:
    input:
        alignment="results/expertlens/alignment.parquet",
        stability="results/expertlens/stability.parquet",
        similarities=lambda wc: list(el_similarity_sources().values()),
        pairs=[f"results/data/{p}.parquet" for p in EL["pairs"]],
        counts=el_files("counts.parquet"),
        causal=el_files("causal_summary.parquet", EL_CAUSAL_RUNS),
        domains=el_files("domains.parquet"),
    output:
        csv=report(
            "results/tables/expertlens_claims.csv",
            caption="../report/el_claims.rst",
            category="ExpertLens",
            subcategory="Claims",
        ),
        md="results/tables/expertlens_claims.md",
    log:
        "results/logs/expertlens/claims.log",
    benchmark:
        "results/benchmarks/expertlens/claims.tsv"
    conda:
        "../../envs/analysis.yaml"
    params:
        labels=lambda wc: list(el_similarity_sources()),
        pairs=EL["pairs"],
        taus=EL["taus"],
        measure=EL_MEASURE,
        models=EL["models"],
        n_boot=EL["n_boot"],
        seed=config["seed"],
    script:
        "../scripts/el_claims.py"
