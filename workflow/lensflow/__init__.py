"""lensflow: the science behind the workflow (ExpertLens and Learned Feedback Patterns).

Everything here is importable and testable without Snakemake; the scripts in
workflow/scripts/ only parse the `snakemake` object and call into this package.

Three packages, one per concern:
  core        shared by both papers: config, tables, runtime, models, data, activation cache,
              hooks, statistics, plots, the claims-row helper, LLM clients (core.llm)
  expertlens  ExpertLens (Fedzechkina et al.): concepts, expertise, similarity, alignment,
              baselines, the causal check, claims, figures
  lfp         Learned Feedback Patterns: finetune, sae, probes, validation, claims, figures
expertlens and lfp import only from core, never from each other; core imports neither
(tests/core/test_package_boundaries.py).
"""

__version__ = "0.1.0"
