"""HH text is written once: task_texts.exchange renders a (prompt, answer) pair as one plain
transcript, whether or not the prompt already is an HH-RLHF transcript."""

import pandas as pd

from lensflow.lfp.sae.task_texts import exchange, task_texts
from lensflow.lfp.validation.ablation import ablation_prompts
from tiny_models import tiny_tokenizer

HH = "\n\nHuman: hi there\n\nAssistant: hello,\nfriend\n\nHuman: help me\n\nAssistant:"


def test_exchange_writes_an_hh_prompt_once():
    assert exchange(HH, " sure ") == "User: hi there\nAssistant: hello, friend\nUser: help me\nAssistant: sure"
    assert exchange(" plain  request ", "ok") == "User: plain request\nAssistant: ok"
    assert exchange(HH, "") == "User: hi there\nAssistant: hello, friend\nUser: help me\nAssistant:"


def test_dpo_task_texts_and_ablation_prompts_of_hh_pairs():
    table = pd.DataFrame({"prompt": [HH], "chosen": ["Sure."], "rejected": ["No."]})
    texts = task_texts("dpo", table, n_texts=5)["text"].tolist()
    assert texts == [exchange(HH, "Sure."), exchange(HH, "No.")]
    assert not any("Human:" in t for t in texts)
    assert ablation_prompts("hh", table, tiny_tokenizer(), n=1) == [exchange(HH, "")]
