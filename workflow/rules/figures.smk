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
    conda:
        "../../envs/analysis.yaml"
    params:
        models=lambda wc: used_models(),
        data=list(DATA),
    script:
        "../scripts/inventory.py"
