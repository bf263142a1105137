"""Claims tables of both papers: each paper claim, the statistic this run measured (with CI or p),
and a verdict.

Verdicts are mechanical, decided before looking at the numbers: "supported" when the interval
excludes the null in the claimed direction, "not supported" when it does not, "untestable" when
this run lacks the data (e.g. no checkpoints offline). Nothing here is tuned to pass. Each paper's
claims are in lensflow.expertlens.claims and lensflow.lfp.claims.
"""

from __future__ import annotations

import numpy as np


def claim_row(claim: str, statistic: str, value=np.nan, ci_low=np.nan, ci_high=np.nan, p=np.nan, n=0,
              verdict: str | None = None, note: str = "") -> dict:
    """One row; the verdict defaults to "CI above zero" (the claimed direction is positive)."""
    if verdict is None:
        verdict = "untestable" if np.isnan(ci_low) else ("supported" if ci_low > 0 else "not supported")
    if verdict == "untestable" and not note:  # a claims table says why it could not test a claim
        note = "no interval: the statistic is undefined in this run (too few or constant values)"
    return {"claim": claim, "statistic": statistic, "value": value, "ci_low": ci_low, "ci_high": ci_high,
            "p": p, "n": n, "verdict": verdict, "note": note}
