# lensflow: ExpertLens and Learned Feedback Patterns as one Snakemake workflow.
# Run the embedded default with `snakemake --cores 2`; paper scale with
# `snakemake --configfile config/paper.yaml --cores 8 --resources gpu=1` (see README.md).
from snakemake.utils import min_version

min_version("9.0")


# The embedded default, unless configs are given with --configfile: those replace it rather than
# being merged into it (a merge would add the offline models to paper.yaml's registry).
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


# common.smk validates the config (workflow/schemas/config.schema.yaml) before any rule is defined.
include: "workflow/rules/common.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/activations.smk"


if EL:

    include: "workflow/rules/expertlens_common.smk"
    include: "workflow/rules/expertlens.smk"


if FT:

    include: "workflow/rules/finetune_common.smk"
    include: "workflow/rules/finetune.smk"


if LFP:

    include: "workflow/rules/lfp_common.smk"
    include: "workflow/rules/sae.smk"
    include: "workflow/rules/probes.smk"
    include: "workflow/rules/base_control.smk"
    include: "workflow/rules/validation.smk"
    include: "workflow/rules/lfp_tables.smk"


include: "workflow/rules/figures.smk"
include: "workflow/rules/job_times.smk"


rule all:
    default_target: True
    input:
        all_targets(),
        rules.job_times.output,


# --- one named target per figure and table ------------------------------------------------


rule inventory_table:
    input:
        "results/tables/inventory.md",


if EL:

    rule expertlens_figures:
        input:
            el_figures(),

    rule expertlens_tables:
        input:
            [f"results/tables/expertlens_{t}.md" for t in EL_TABLES],


if FT:

    rule lfp_finetune_outputs:
        input:
            ft_targets(),


if LFP:

    rule lfp_outputs:
        input:
            lfp_targets(),


# Last, once every rule is defined: figures.<name> must name a figure rule.
check_figure_options([r.name for r in workflow.rules])
