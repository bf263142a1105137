"""LFP validation of the features: activation records, LLM explanations, their activity on
high-prediction inputs (Table 7), and ablating them (Table 6)."""
