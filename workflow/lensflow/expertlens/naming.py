"""The names ExpertLens tables share, each built and read by one function here.

- Similarity measures: "jaccard@<tau>" (the Jaccard of expert sets at threshold tau, tau written
  with `:g`: 0.5 -> "jaccard@0.5") and "cosine_ap" (threshold-free). The headline measure is the
  Jaccard at the lowest tau.
- Similarity sources: "<source_type>|<model>|<dataset>", e.g. "neurons|pythia-70m|onesec", or
  "baseline||onesec" (a baseline that depends on the data set only); empty fields stay empty.
"""

from __future__ import annotations

JACCARD_PREFIX = "jaccard@"
COSINE = "cosine_ap"


def jaccard_measure(tau) -> str:
    """The measure name of the Jaccard similarity at threshold `tau`: 0.5 -> "jaccard@0.5"."""
    return f"{JACCARD_PREFIX}{tau:g}"


def headline_measure(taus) -> str:
    """The measure the paper's headline numbers use: the Jaccard at the lowest tau."""
    return jaccard_measure(min(taus))


def jaccard_tau(measure: str) -> float | None:
    """The tau of a "jaccard@<tau>" measure name; None for any other name (e.g. "cosine_ap")."""
    if not measure.startswith(JACCARD_PREFIX):
        return None
    try:
        return float(measure[len(JACCARD_PREFIX):])
    except ValueError:
        return None


def measure_key(measure: str):
    """Sort key: jaccard@tau by tau, then cosine_ap, then everything else alphabetically."""
    tau = jaccard_tau(measure)
    if tau is not None:
        return (0, tau, measure)
    return (1 if measure == COSINE else 2, 0.0, measure)


def source_label(source_type: str, model: str = "", dataset: str = "") -> str:
    """The label of a similarity source: ("neurons", "pythia-70m", "onesec") -> "neurons|pythia-70m|onesec"."""
    parts = (source_type, model, dataset)
    bad = [p for p in parts if "|" in p]
    if bad:
        raise ValueError(f"a similarity source label's fields cannot contain '|': {bad}")
    return "|".join(parts)


def parse_source_label(label: str) -> tuple[str, str, str]:
    """(source_type, model, dataset) of a label made by source_label."""
    parts = label.split("|")
    if len(parts) != 3:
        raise ValueError(f"not a similarity source label 'source_type|model|dataset': {label!r}")
    return parts[0], parts[1], parts[2]
