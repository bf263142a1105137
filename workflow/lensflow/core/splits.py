"""Held-out parts fixed before training: their content hash, and the check an evaluation makes
that the split it recomputes is the one training recorded.

The pattern (RL prompts: lensflow.lfp.finetune.prompts / rl_eval; DPO pairs:
lensflow.lfp.finetune.dpo_eval): training splits its data with a seeded, deterministic function,
holding out a part BEFORE taking its own, and records the split's settings, sizes and the
content hash of each part in the tuned model's manifest. The evaluation recomputes the split with
the same function from that record and refuses to run when the hash or a size differs (the data or
the settings changed since training, so the held-out part is no longer what training left alone).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping


def content_sha256(texts: Iterable[str]) -> str:
    """SHA-256 (hex) of the texts in order, joined by NUL: the content hash of a split's part."""
    return hashlib.sha256("\0".join(texts).encode()).hexdigest()


def recorded_differences(recorded: Mapping, now: Mapping, keys: Iterable[str]) -> dict:
    """{key: (recorded value, value now)} for each of `keys` whose values differ (a missing key is
    None): empty when a recomputed split (or its settings) matches what training recorded."""
    return {k: (recorded.get(k), now.get(k)) for k in keys if recorded.get(k) != now.get(k)}
