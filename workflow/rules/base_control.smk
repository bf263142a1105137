# Not in the paper: a base-model control for the probes. The same pipeline (activations at the
# tuned model's selected layers, AE_n, probe data, probe; same triples, same split) on the model
# BEFORE fine-tuning, so that the tables can tell a pattern learned in fine-tuning from what the
# base model already encodes about the substituted words (lensflow.lfp.probes.base_control).

# The (model, task) runs whose probe is repeated on the base model (lfp.base_control.tasks).
LFP_CONTROL_RUNS = [
    (m, t) for m, t in LFP_RUNS if t in lfp_section_tasks(config, "base_control")
]


use rule lfp_activations as lfp_base_activations with:
    input:
        model=lambda wc: model_dir(wc.model),
        texts="results/lfp/texts/{task}.parquet",
        layers="results/finetune/{model}/{task}/layers.json",
    output:
        "results/lfp/{model}/{task}/base/activations.parquet",
    log:
        "results/logs/lfp/{model}/{task}/base/activations.log",
    benchmark:
        "results/benchmarks/lfp/{model}/{task}/base/activations.tsv"
    params:  # merged into lfp_activations' params: only these differ
        model=lambda wc: wc.model,
        selections=["highest"],


use rule lfp_sae as lfp_base_sae with:
    input:
        activations="results/lfp/{model}/{task}/base/activations.parquet",
        layers="results/finetune/{model}/{task}/layers.json",
    output:
        saes="results/lfp/{model}/{task}/base/sae/n.safetensors",
        metrics="results/lfp/{model}/{task}/base/sae/n_metrics.parquet",
        history="results/lfp/{model}/{task}/base/sae/n_history.parquet",
    log:
        "results/logs/lfp/{model}/{task}/base/sae_n.log",
    benchmark:
        "results/benchmarks/lfp/{model}/{task}/base/sae_n.tsv"
    params:  # merged into lfp_sae's params: AE_n, exactly as the tuned model's
        variant="n",
        settings=lambda wc: lfp_variants(wc.model, wc.task)["n"],
        linear_l0_fraction=None,  # the sparse-code check is the tuned model's


use rule lfp_probe_data as lfp_base_probe_data with:
    input:
        model=lambda wc: model_dir(wc.model),
        triples="results/lfp/triples/{task}.parquet",
        saes="results/lfp/{model}/{task}/base/sae/n.safetensors",
        layers="results/finetune/{model}/{task}/layers.json",
    output:
        "results/lfp/{model}/{task}/base/probe_data.parquet",
    log:
        "results/logs/lfp/{model}/{task}/base/probe_data.log",
    benchmark:
        "results/benchmarks/lfp/{model}/{task}/base/probe_data.tsv"
    params:
        model=lambda wc: wc.model,


use rule lfp_probe as lfp_base_probe with:
    input:
        data="results/lfp/{model}/{task}/base/probe_data.parquet",
        words=[],
    output:
        predictions="results/lfp/{model}/{task}/base/probe_predictions.parquet",
        measures="results/lfp/{model}/{task}/base/probe_measures.parquet",
        words="results/lfp/{model}/{task}/base/probe_words.parquet",
    log:
        "results/logs/lfp/{model}/{task}/base/probe.log",
    benchmark:
        "results/benchmarks/lfp/{model}/{task}/base/probe.tsv"


rule lfp_base_control:
    input:
        tuned_words="results/lfp/{model}/{task}/probe_words.parquet",
        tuned_predictions="results/lfp/{model}/{task}/probe_predictions.parquet",
        base_words="results/lfp/{model}/{task}/base/probe_words.parquet",
        base_predictions="results/lfp/{model}/{task}/base/probe_predictions.parquet",
    output:
        "results/lfp/{model}/{task}/base_control.parquet",
    log:
        "results/logs/lfp/{model}/{task}/base_control.log",
    benchmark:
        "results/benchmarks/lfp/{model}/{task}/base_control.tsv"
    wildcard_constraints:
        model=LFP_MODEL_CHOICE,
        task=FT_TASK_CHOICE,
    conda:
        "../../envs/analysis.yaml"
    params:
        model=lambda wc: wc.model,
        task=lambda wc: wc.task,
        kind=lambda wc: lfp_kind(wc.task),
        n_boot=LFP["base_control"]["n_boot"],
        seed=config["seed"],
    script:
        "../scripts/lfp_base_control.py"
