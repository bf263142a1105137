"""The task's text (LFP §3.2): what the tuned model reads when we record its MLP outputs.

VADER task: reviews from the corpus the policy was tuned on. HH / toxic tasks: the preference
pairs' prompts with each of their two answers, written as one plain "User: ... / Assistant: ..."
transcript by `exchange` (the same layout as the contrastive rewrites and the ablation prompts),
so the SAEs see both kinds of answer.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lensflow.core.data import to_messages

_LABELS = {"user": "User", "assistant": "Assistant"}


def exchange(prompt: str, answer: str) -> str:
    """(prompt, answer) as one plain transcript, a "User: ..." / "Assistant: ..." line per turn, the
    answer last. An HH-RLHF prompt ("\\n\\nHuman: ...\\n\\nAssistant:") is split into its turns
    rather than wrapped again; a plain prompt is one user turn. Whitespace inside a turn is
    collapsed, so a line break only ever separates turns. The one place HH text is written as
    plain text: SAE texts, rewrite triples and ablation prompts all come through here."""
    turns = [*to_messages(prompt), {"role": "assistant", "content": answer}]
    return "\n".join(f"{_LABELS[t['role']]}: {' '.join(t['content'].split())}".rstrip() for t in turns)


def task_texts(method: str, table: pd.DataFrame, n_texts: int, seed: int = 0) -> pd.DataFrame:
    """(text_id, text): up to n_texts texts, a seeded sample; ids are row numbers of the result."""
    if method == "dpo":
        missing = {"prompt", "chosen", "rejected"} - set(table.columns)
        if missing:
            raise ValueError(f"preference table lacks columns {sorted(missing)}")
        texts = [exchange(p, a) for p, c, r in zip(table["prompt"], table["chosen"], table["rejected"]) for a in (c, r)]
    else:
        if "text" not in table.columns:
            raise ValueError("corpus table lacks a 'text' column")
        texts = [t for t in table["text"].dropna().astype(str) if t.strip()]
    if not texts:
        raise ValueError("no task texts: the corpus or preference table is empty")
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.permutation(len(texts))[: min(n_texts, len(texts))])
    return pd.DataFrame({"text_id": np.arange(len(pick), dtype=np.int64), "text": [texts[i] for i in pick]})
