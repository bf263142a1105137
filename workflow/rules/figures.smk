# Figures and tables: one named target rule each, all in the Snakemake report.


rule inventory:
    input:
        models=lambda wc: [model_dir(m) for m in used_models()],
        data=[f"results/data/{d}.parquet" for d in DATA],
    output:
        csv=report(
            "results/tables/inventory.csv",
            caption="../report/inventory.rst",
            category="Inventory",
        ),
        md="results/tables/inventory.md",
    log:
        "results/logs/tables/inventory.log",
    benchmark:
        "results/benchmarks/tables/inventory.tsv"
    conda:
        "../../envs/analysis.yaml"
    params:
        models=lambda wc: used_models(),
        data=list(DATA),
    script:
        "../scripts/inventory.py"


if EL:

    rule fig_el_alignment:
        input:
            "results/expertlens/alignment.parquet",
        output:
            png=report(
                "results/figures/expertlens/alignment.png",
                caption="../report/el_alignment.rst",
                category="ExpertLens",
                subcategory="Alignment",
            ),
            pdf="results/figures/expertlens/alignment.pdf",
        log:
            "results/logs/figures/el_alignment.log",
        benchmark:
            "results/benchmarks/figures/el_alignment.tsv"
        conda:
            "../../envs/analysis.yaml"
        params:
            dpi=fig_dpi("el_alignment"),
        script:
            "../scripts/fig_el_alignment.py"

    rule fig_el_expert_counts:
        input:
            el_files("counts.parquet"),
        output:
            png=report(
                "results/figures/expertlens/expert_counts.png",
                caption="../report/el_expert_counts.rst",
                category="ExpertLens",
                subcategory="Experts",
            ),
            pdf="results/figures/expertlens/expert_counts.pdf",
        log:
            "results/logs/figures/el_expert_counts.log",
        benchmark:
            "results/benchmarks/figures/el_expert_counts.tsv"
        conda:
            "../../envs/analysis.yaml"
        params:
            dpi=fig_dpi("el_expert_counts"),
        script:
            "../scripts/fig_el_expert_counts.py"

    rule fig_el_expert_layers:
        input:
            location=el_files("location.parquet"),
            models=[model_dir(m) for m in EL["models"]],
        output:
            png=report(
                "results/figures/expertlens/expert_layers.png",
                caption="../report/el_expert_layers.rst",
                category="ExpertLens",
                subcategory="Experts",
            ),
            pdf="results/figures/expertlens/expert_layers.pdf",
        log:
            "results/logs/figures/el_expert_layers.log",
        benchmark:
            "results/benchmarks/figures/el_expert_layers.tsv"
        conda:
            "../../envs/analysis.yaml"
        params:
            models=EL["models"],
            dpi=fig_dpi("el_expert_layers"),
        script:
            "../scripts/fig_el_expert_layers.py"

    rule fig_el_stability:
        input:
            "results/expertlens/stability.parquet",
        output:
            png=report(
                "results/figures/expertlens/stability.png",
                caption="../report/el_stability.rst",
                category="ExpertLens",
                subcategory="Stability",
            ),
            pdf="results/figures/expertlens/stability.pdf",
        log:
            "results/logs/figures/el_stability.log",
        benchmark:
            "results/benchmarks/figures/el_stability.tsv"
        conda:
            "../../envs/analysis.yaml"
        params:
            measures=[EL_MEASURE, COSINE],
            dpi=fig_dpi("el_stability"),
        script:
            "../scripts/fig_el_stability.py"

    rule fig_el_scaling:
        input:
            "results/expertlens/alignment.parquet",
        output:
            png=report(
                "results/figures/expertlens/scaling.png",
                caption="../report/el_scaling.rst",
                category="ExpertLens",
                subcategory="Scale and training",
            ),
            pdf="results/figures/expertlens/scaling.pdf",
        log:
            "results/logs/figures/el_scaling.log",
        benchmark:
            "results/benchmarks/figures/el_scaling.tsv"
        conda:
            "../../envs/analysis.yaml"
        params:
            models=EL["models"],
            measure=EL_MEASURE,
            dpi=fig_dpi("el_scaling"),
        script:
            "../scripts/fig_el_scaling.py"

    rule fig_el_dynamics:
        input:
            "results/expertlens/alignment.parquet",
        output:
            png=report(
                "results/figures/expertlens/dynamics.png",
                caption="../report/el_dynamics.rst",
                category="ExpertLens",
                subcategory="Scale and training",
            ),
            pdf="results/figures/expertlens/dynamics.pdf",
        log:
            "results/logs/figures/el_dynamics.log",
        benchmark:
            "results/benchmarks/figures/el_dynamics.tsv"
        conda:
            "../../envs/analysis.yaml"
        params:
            measure=EL_MEASURE,
            dpi=fig_dpi("el_dynamics"),
        script:
            "../scripts/fig_el_dynamics.py"

    rule fig_el_causal:
        input:
            el_files("causal_summary.parquet", EL_CAUSAL_RUNS),
        output:
            png=report(
                "results/figures/expertlens/causal.png",
                caption="../report/el_causal.rst",
                category="ExpertLens",
                subcategory="Causal check",
            ),
            pdf="results/figures/expertlens/causal.pdf",
        log:
            "results/logs/figures/el_causal.log",
        benchmark:
            "results/benchmarks/figures/el_causal.tsv"
        conda:
            "../../envs/analysis.yaml"
        params:
            models=EL["models"],
            dpi=fig_dpi("el_causal"),
        script:
            "../scripts/fig_el_causal.py"


if FT:

    rule fig_lfp_training:
        input:
            "results/finetune/{model}/{task}/train_log.tsv",
        output:
            png=report(
                "results/figures/lfp/training_{model}_{task}.png",
                caption="../report/lfp_training.rst",
                category="Learned Feedback Patterns",
                subcategory="Fine-tuning",
            ),
            pdf="results/figures/lfp/training_{model}_{task}.pdf",
        log:
            "results/logs/figures/lfp_training_{model}_{task}.log",
        benchmark:
            "results/benchmarks/figures/lfp_training_{model}_{task}.tsv"
        conda:
            "../../envs/analysis.yaml"
        params:
            kind=lambda wc: "dpo" if ft_task(wc.task)["method"] == "dpo" else "rl",
            window=config["figures"]["lfp_training"]["window"],
            dpi=fig_dpi("lfp_training"),
        script:
            "../scripts/fig_lfp_training.py"

    rule fig_lfp_divergence:
        input:
            table="results/finetune/{model}/{task}/divergence.parquet",
            selection="results/finetune/{model}/{task}/layers.json",
        output:
            png=report(
                "results/figures/lfp/divergence_{model}_{task}.png",
                caption="../report/lfp_divergence.rst",
                category="Learned Feedback Patterns",
                subcategory="Layer divergence",
            ),
            pdf="results/figures/lfp/divergence_{model}_{task}.pdf",
        log:
            "results/logs/figures/lfp_divergence_{model}_{task}.log",
        benchmark:
            "results/benchmarks/figures/lfp_divergence_{model}_{task}.tsv"
        conda:
            "../../envs/analysis.yaml"
        params:
            dpi=fig_dpi("lfp_divergence"),
        script:
            "../scripts/fig_lfp_divergence.py"


if LFP:

    rule fig_lfp_sae:
        input:
            histories=lambda wc: [
                f"results/lfp/{wc.model}/{wc.task}/sae/{v}_history.parquet"
                for v in lfp_variants(wc.model, wc.task)
            ],
            overlap="results/lfp/{model}/{task}/overlap.parquet",
        output:
            training=report(
                "results/figures/lfp/sae_training_{model}_{task}.png",
                caption="../report/lfp_sae_training.rst",
                category="Learned Feedback Patterns",
                subcategory="Sparse autoencoders",
            ),
            training_pdf="results/figures/lfp/sae_training_{model}_{task}.pdf",
            overlap=report(
                "results/figures/lfp/overlap_{model}_{task}.png",
                caption="../report/lfp_overlap_figure.rst",
                category="Learned Feedback Patterns",
                subcategory="Sparse autoencoders",
            ),
            overlap_pdf="results/figures/lfp/overlap_{model}_{task}.pdf",
        log:
            "results/logs/figures/lfp_sae_{model}_{task}.log",
        benchmark:
            "results/benchmarks/figures/lfp_sae_{model}_{task}.tsv"
        conda:
            "../../envs/analysis.yaml"
        params:
            dpi=fig_dpi("lfp_sae"),
        script:
            "../scripts/fig_lfp_sae.py"

    rule fig_lfp_l1_sweep:
        input:
            metrics=lambda wc: lfp_sae_files(wc.model, wc.task),
        output:
            png=report(
                "results/figures/lfp/l1_sweep_{model}_{task}.png",
                caption="../report/lfp_l1_sweep.rst",
                category="Learned Feedback Patterns",
                subcategory="Sparse autoencoders",
            ),
            pdf="results/figures/lfp/l1_sweep_{model}_{task}.pdf",
        log:
            "results/logs/figures/lfp_l1_sweep_{model}_{task}.log",
        benchmark:
            "results/benchmarks/figures/lfp_l1_sweep_{model}_{task}.tsv"
        conda:
            "../../envs/analysis.yaml"
        params:
            dpi=fig_dpi("lfp_l1_sweep"),
        script:
            "../scripts/fig_lfp_l1_sweep.py"

    rule fig_lfp_probe_pca:
        input:
            data="results/lfp/{model}/{task}/probe_data.parquet",
        output:
            png=report(
                "results/figures/lfp/probe_pca_{model}_{task}.png",
                caption="../report/lfp_probe_pca.rst",
                category="Learned Feedback Patterns",
                subcategory="Probes and validation",
            ),
            pdf="results/figures/lfp/probe_pca_{model}_{task}.pdf",
        log:
            "results/logs/figures/lfp_probe_pca_{model}_{task}.log",
        benchmark:
            "results/benchmarks/figures/lfp_probe_pca_{model}_{task}.tsv"
        conda:
            "../../envs/analysis.yaml"
        params:
            figure="pca",
            dpi=fig_dpi("lfp_probe_pca"),
            seed=config["seed"],
        script:
            "../scripts/fig_lfp_probe.py"

    rule fig_lfp_probe_error:
        input:
            words="results/lfp/{model}/{task}/probe_words.parquet",
            measures="results/lfp/{model}/{task}/probe_measures.parquet",
        output:
            png=report(
                "results/figures/lfp/probe_error_{model}_{task}.png",
                caption="../report/lfp_probe_error.rst",
                category="Learned Feedback Patterns",
                subcategory="Probes and validation",
            ),
            pdf="results/figures/lfp/probe_error_{model}_{task}.pdf",
        log:
            "results/logs/figures/lfp_probe_error_{model}_{task}.log",
        benchmark:
            "results/benchmarks/figures/lfp_probe_error_{model}_{task}.tsv"
        conda:
            "../../envs/analysis.yaml"
        params:
            figure="error",
            dpi=fig_dpi("lfp_probe_error"),
            seed=config["seed"],
        script:
            "../scripts/fig_lfp_probe.py"
