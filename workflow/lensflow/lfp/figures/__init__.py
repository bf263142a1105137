"""LFP figures: fine-tuning curves and divergence (finetune), probes (probes), SAEs (sae)."""
