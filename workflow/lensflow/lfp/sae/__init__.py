"""LFP sparse autoencoders: the task texts, SAEs on the tuned models' MLP activations (model, data,
training), their tables, and the overlap of the two dictionary sizes' features."""
