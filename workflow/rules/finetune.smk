# Learned Feedback Patterns §3.1-3.2: fine-tune each model on each task (RL with the VADER reward,
# DPO on preference pairs), then measure how much each layer changed.
# Helpers: finetune_common.smk.


rule lfp_preferences:
    input:
        model=lambda wc: model_dir(ft_synthetic(wc)["generator"]),
        texts=lambda wc: [
            f"results/data/{c}.parquet" for c in ft_synthetic(wc)["corpora"]
        ],
    output:
        "results/data/{name}.parquet",
    log:
        "results/logs/finetune/preferences/{name}.log",
    benchmark:
        "results/benchmarks/finetune/preferences/{name}.tsv"
    wildcard_constraints:
        name=registry_choice(FT["synthetic_preferences"]) or "^$",
    conda:
        "../../envs/torch.yaml"
    threads: job_resources("gpu_job")["threads"]
    resources:
        **gpu_resources(1),
        mem_mb=model_mem_mb("gpu_job", lambda wc: ft_synthetic(wc)["generator"]),
        runtime=job_resources("gpu_job")["runtime"],
    params:
        name=lambda wc: wc.name,
        spec=ft_synthetic,
        seed=config["seed"],
    script:
        "../scripts/lfp_preferences.py"


rule lfp_rl:
    input:
        model=lambda wc: model_dir(wc.model),
        texts=f"results/data/{FT['reviews']}.parquet",
        lexicon=f"results/data/{FT['lexicon']}.parquet",
    output:
        model=directory("results/finetune/{model}/{task}/model"),
        log="results/finetune/{model}/{task}/train_log.tsv",
        meta="results/finetune/{model}/{task}/train_meta.json",
    log:
        "results/logs/finetune/{model}/{task}/train.log",
    benchmark:
        "results/benchmarks/finetune/{model}/{task}/train.tsv"
    wildcard_constraints:
        task=registry_choice(ft_tasks(["rloo", "grpo"])) or "^$",
    conda:
        "../../envs/torch.yaml"
    threads: job_resources("gpu_job")["threads"]
    resources:
        **gpu_resources(1),
        mem_mb=model_mem_mb("gpu_job"),
        runtime=job_resources("gpu_job")["runtime"],
    params:
        model=lambda wc: wc.model,
        task=lambda wc: wc.task,
        method=lambda wc: ft_task(wc.task)["method"],
        n_prompts=lambda wc: ft_task(wc.task).get("n_prompts"),
        n_heldout=FT["eval"]["n_prompts"],  # split off before training: lfp_rl_eval's prompts
        min_chars=FT["min_chars"],
        prompt_tokens=FT["prompt_tokens"],
        hyper=lambda wc: ft_task(wc.task)["hyper"],
        seed=config["seed"],
    script:
        "../scripts/lfp_rl.py"


rule lfp_dpo:
    input:
        model=lambda wc: model_dir(wc.model),
        pairs=lambda wc: ft_preferences(wc.task),
    output:
        model=directory("results/finetune/{model}/{task}/model"),
        log="results/finetune/{model}/{task}/train_log.tsv",
        meta="results/finetune/{model}/{task}/train_meta.json",
    log:
        "results/logs/finetune/{model}/{task}/train.log",
    benchmark:
        "results/benchmarks/finetune/{model}/{task}/train.tsv"
    wildcard_constraints:
        task=registry_choice(ft_tasks(["dpo"])) or "^$",
    conda:
        "../../envs/torch.yaml"
    threads: job_resources("gpu_job")["threads"]
    resources:
        **gpu_resources(1),
        mem_mb=model_mem_mb("gpu_job"),
        runtime=job_resources("gpu_job")["runtime"],
    params:
        model=lambda wc: wc.model,
        task=lambda wc: wc.task,
        hyper=lambda wc: ft_task(wc.task)["hyper"],
        n_heldout=FT["dpo_eval"]["n_prompts"],  # split off before training: lfp_dpo_eval's pairs
        seed=config["seed"],
    script:
        "../scripts/lfp_dpo.py"


rule lfp_dpo_eval:
    input:
        base=lambda wc: model_dir(wc.model),
        tuned="results/finetune/{model}/{task}/model",
        pairs=lambda wc: ft_preferences(wc.task),
    output:
        pairs="results/finetune/{model}/{task}/eval_pairs.parquet",
        summary="results/finetune/{model}/{task}/eval_preferences.parquet",
    log:
        "results/logs/finetune/{model}/{task}/eval.log",
    benchmark:
        "results/benchmarks/finetune/{model}/{task}/eval.tsv"
    wildcard_constraints:
        task=registry_choice(ft_tasks(["dpo"])) or "^$",
    conda:
        "../../envs/torch.yaml"
    threads: job_resources("gpu_job")["threads"]
    resources:
        **gpu_resources(1),
        mem_mb=model_mem_mb("gpu_job"),
        runtime=job_resources("gpu_job")["runtime"],
    params:
        hyper=lambda wc: ft_task(wc.task)["hyper"],  # the training's own: same shaping of the pairs
        batch_size=FT["dpo_eval"]["batch_size"],
        n_boot=FT["dpo_eval"]["n_boot"],
        seed=config["seed"],
    script:
        "../scripts/lfp_dpo_eval.py"


rule lfp_rl_eval:
    input:
        base=lambda wc: model_dir(wc.model),
        tuned="results/finetune/{model}/{task}/model",
        texts=f"results/data/{FT['reviews']}.parquet",
        lexicon=f"results/data/{FT['lexicon']}.parquet",
    output:
        rewards="results/finetune/{model}/{task}/eval_rewards.parquet",
        completions="results/finetune/{model}/{task}/eval_completions.parquet",
        words="results/finetune/{model}/{task}/eval_words.parquet",
    log:
        "results/logs/finetune/{model}/{task}/eval.log",
    benchmark:
        "results/benchmarks/finetune/{model}/{task}/eval.tsv"
    wildcard_constraints:
        task=registry_choice(ft_tasks(["rloo", "grpo"])) or "^$",
    conda:
        "../../envs/torch.yaml"
    threads: job_resources("gpu_job")["threads"]
    resources:
        **gpu_resources(1),
        mem_mb=model_mem_mb("gpu_job"),
        runtime=job_resources("gpu_job")["runtime"],
    params:
        n_prompts=FT["eval"]["n_prompts"],
        n_samples=FT["eval"]["n_samples"],
        min_chars=FT["min_chars"],
        prompt_tokens=FT["prompt_tokens"],
        hyper=lambda wc: ft_task(wc.task)["hyper"],  # the training's own: same token limits
        seed=config["seed"],
    script:
        "../scripts/lfp_rl_eval.py"


rule lfp_divergence:
    input:
        base=lambda wc: model_dir(wc.model),
        tuned="results/finetune/{model}/{task}/model",
    output:
        table="results/finetune/{model}/{task}/divergence.parquet",
        selection="results/finetune/{model}/{task}/layers.json",
    log:
        "results/logs/finetune/{model}/{task}/divergence.log",
    benchmark:
        "results/benchmarks/finetune/{model}/{task}/divergence.tsv"
    conda:
        "../../envs/torch.yaml"
    resources:
        mem_mb=model_mem_mb("gpu_job"),
        runtime=job_resources("cpu_job")["runtime"],
    params:
        model=lambda wc: wc.model,
        task=lambda wc: wc.task,
        k=FT["divergence_k"],
        seed=config["seed"],
    script:
        "../scripts/lfp_divergence.py"


rule lfp_finetune_table:
    input:
        logs=[f"results/finetune/{m}/{t}/train_log.tsv" for m, t in FT_RUNS],
        selections=[f"results/finetune/{m}/{t}/layers.json" for m, t in FT_RUNS],
        rewards=[
            f"results/finetune/{m}/{t}/eval_rewards.parquet"
            for m, t in FT_RUNS
            if ft_task(t)["method"] != "dpo"
        ],
        preferences=[
            f"results/finetune/{m}/{t}/eval_preferences.parquet"
            for m, t in FT_RUNS
            if ft_task(t)["method"] == "dpo"
        ],
    output:
        csv=report(
            "results/tables/lfp_finetune.csv",
            caption="../report/lfp_finetune.rst",
            category="Learned Feedback Patterns",
            subcategory="Fine-tuning",
        ),
        md="results/tables/lfp_finetune.md",
    log:
        "results/logs/finetune/table.log",
    benchmark:
        "results/benchmarks/finetune/table.tsv"
    conda:
        "../../envs/analysis.yaml"
    params:
        runs=FT_RUNS,
        methods={t: spec["method"] for t, spec in FT["tasks"].items()},
    script:
        "../scripts/lfp_finetune_table.py"
