"""Shared by both papers: config, tables and I/O, runtime and models, data, the activation cache,
hooks, statistics, plots, the claims-row helper, and the LLM clients (llm/). Imports neither
lensflow.expertlens nor lensflow.lfp."""
