"""LFP fine-tuning: RL on the VADER reward or DPO on preferences, evaluation of the tuned policy,
synthetic preferences, and the layers whose parameters moved most (divergence)."""
