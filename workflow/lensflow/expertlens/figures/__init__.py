"""ExpertLens figures: alignment, expert counts and layers, the causal check (results); concept
domains (domains); stability, scaling and training dynamics (stability)."""
