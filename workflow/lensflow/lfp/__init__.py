"""Learned Feedback Patterns: fine-tuning (finetune), sparse autoencoders (sae), probes on their
features (probes), validating the features (validation), claims and figures. Sub-packages match
the rule files. Imports only lensflow.core, never lensflow.expertlens."""
