"""lensflow: the science behind the workflow (ExpertLens and Learned Feedback Patterns).

Everything here is importable and testable without Snakemake; the scripts in
workflow/scripts/ only parse the `snakemake` object and call into this package.
"""

__version__ = "0.1.0"
