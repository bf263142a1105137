"""ExpertLens (Fedzechkina et al.): concepts, expert units and their expertise, similarities,
alignment with human judgments, baselines, the causal check, claims and figures. Imports only
lensflow.core, never lensflow.lfp."""
