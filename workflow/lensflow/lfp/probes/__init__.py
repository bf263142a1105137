"""LFP probes: word-substitution triples and rewrites, probe data from the SAE features, fitting
and evaluating the probes, and the base-model control."""
