"""The ExpertLens causal check: force a concept's experts (check), measure the concept word
(measures), and summarise the per-prompt conditions with intervals (stats)."""
