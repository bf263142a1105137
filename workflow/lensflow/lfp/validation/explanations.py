"""The feature explainer (paper §3.4, spec item 9): an LLM explains each feature, then labels it.

The paper used GPT-4: it explains a feature in one sentence from its top activation records
(activations scaled 0-10, Bills et al. 2023), then says whether that explanation is related to a
plain-language description of the fine-tuning task. Two interchangeable backends answer here:

  OpenAIClient  any OpenAI-compatible chat-completions server, over httpx;
  LocalClient   a local Hugging Face instruct model (greedy; yes/no by option log-probability).

Both cache every answer on disk, one JSON file per request named by the sha256 of what determines
the answer, written atomically; a rerun therefore makes no HTTP call and runs no model. The API key
is read from the environment at request time only, never stored on the client, never part of a
cache key, and redacted from every cached payload, returned text, log message and error.
"""

from __future__ import annotations

import logging
import re

import pandas as pd

from lensflow.core.llm.cache import REDACTED, ExplainerError
from lensflow.core.llm.http import OpenAIClient, first_option
from lensflow.core.llm.local import LocalClient

log = logging.getLogger("lensflow")
__all__ = ["REDACTED", "ExplainerError", "LocalClient", "OpenAIClient", "classify_related", "clean_explanation",
           "explain_feature", "explain_features", "explain_table", "first_option", "make_client"]

def make_client(spec: dict, cache_dir, model_path=None, device="cpu"):
    """The LLM client a config block asks for (lfp.explainer, lfp.triples.rewriter).

    spec: backend ("openai" | "local"), model, and for openai base_url, api_key_env, timeout,
    max_retries; max_new_tokens for both. model_path: the local model's folder (backend local), or
    a rule's optional input holding it (a list: empty for an endpoint, [folder] for a local model).
    """
    if isinstance(model_path, (list, tuple)):
        model_path = model_path[0] if model_path else None
    if spec["backend"] == "openai":
        return OpenAIClient(spec["base_url"], spec["model"], cache_dir=cache_dir, api_key_env=spec.get("api_key_env"),
                            timeout=spec["timeout"], max_retries=spec["max_retries"],
                            max_tokens=spec["max_new_tokens"])
    if spec["backend"] != "local":
        raise ValueError(f"unknown LLM backend {spec['backend']!r} (expected 'local' or 'openai')")
    if model_path is None:
        raise ValueError(f"backend local needs the model folder of {spec.get('model')!r}")
    from lensflow.core import models

    model, tok, _ = models.load(model_path, device=device)
    return LocalClient(model, tok, device=device, max_new_tokens=spec["max_new_tokens"], cache_dir=cache_dir,
                       model_id=f"local:{spec['model']}")


EXPLAIN_SYSTEM = (
    "We're studying features of a sparse autoencoder trained on a language model's MLP activations. "
    "Each feature looks for some particular thing in a short document. Look at the parts of the "
    "document the feature activates for and summarize in a single sentence what the feature is looking "
    "for. Don't list examples of words.\n\nEach record is a stretch of text with the activating token "
    "marked «like this», followed by its activation in parentheses. Activation values range from 0 to "
    "10; the higher the value, the stronger the match."
)
LEAD = "the main thing this feature does is find"


def explain_feature(client, records_text: str, layer: int, feature: int) -> str:
    """One-sentence explanation of a feature from its records; "" when the model gives none."""
    messages = [
        {"role": "system", "content": EXPLAIN_SYSTEM},
        {"role": "user", "content": f"Feature {feature} of layer {layer}\nRecords:\n{records_text}\n\n"
                                    f"Complete this sentence, in one sentence: {LEAD} ..."},
    ]
    return clean_explanation(client.complete(messages))


def clean_explanation(text: str) -> str:
    """The first sentence, without an echoed lead-in, quotes or list markers."""
    text = " ".join(text.strip().split())
    text = re.sub(rf"^(explanation:\s*)?({re.escape(LEAD)}|{re.escape(LEAD.replace('find', 'to find'))})\s*",
                  "", text, flags=re.I)
    text = text.lstrip("-*:•. \"'").strip()
    first = re.split(r"(?<=[.!?])\s", text, maxsplit=1)[0]
    return first.strip().strip("\"'").strip()[:400]


def classify_related(client, explanation: str, task_description: str) -> tuple[bool | None, str]:
    """Is the feature related to the fine-tuning task? (True/False, raw answer); None if unparseable."""
    messages = [
        {"role": "system", "content": "You judge whether a feature of a fine-tuned language model is related "
                                      "to the task it was fine-tuned on. Answer with one word: yes or no."},
        {"role": "user", "content": f"Fine-tuning task: {task_description}\nFeature explanation: {explanation}\n"
                                    "Is this feature related to the fine-tuning task? Answer yes or no."},
    ]
    if hasattr(client, "choose_with_raw"):
        choice, raw = client.choose_with_raw(messages, ["yes", "no"])
    else:  # any object with choose(messages, options) will do
        choice = client.choose(messages, ["yes", "no"])
        raw = str(choice)
    return {"yes": True, "no": False}.get(choice), raw


COLUMNS = {"layer": "int64", "feature": "int64", "explanation": "str", "related": "boolean", "answer": "str"}


def explain_features(client, records_by_feature: dict, layer: int, task_description: str) -> pd.DataFrame:
    """Explain and label each feature: DataFrame(layer, feature, explanation, related, answer).

    `related` is a nullable boolean: <NA> where the explanation was empty or the label unparseable.
    """
    rows = []
    for feature in sorted(records_by_feature):
        explanation = explain_feature(client, records_by_feature[feature], layer, int(feature))
        related, answer = classify_related(client, explanation, task_description) if explanation \
            else (None, "(no explanation to classify)")
        rows.append({"layer": int(layer), "feature": int(feature), "explanation": explanation,
                     "related": related, "answer": answer})
    df = pd.DataFrame(rows, columns=list(COLUMNS)).astype(COLUMNS)
    n_bad = int(df["related"].isna().sum())
    if n_bad:
        log.warning("layer %d: %d of %d features have no usable relevance label", layer, n_bad, len(df))
    return df


def explain_table(client, features: pd.DataFrame, task_description: str) -> pd.DataFrame:
    """Explain and label every feature of a records table (layer, feature, records_text, cosine).

    DataFrame(layer, feature, explanation, related, answer, cosine), one row per feature; with no
    live feature to explain (every SAE feature dead) an empty table of the same columns and types,
    so the tables downstream say "nothing to test" rather than fail.
    """
    tables = [explain_features(client, dict(zip(g["feature"], g["records_text"])), int(layer), task_description)
              for layer, g in features.groupby("layer", sort=True)]
    if not tables:
        log.warning("no live high-overlap feature to explain")
        tables = [pd.DataFrame({c: pd.Series(dtype=t) for c, t in COLUMNS.items()})]
    return pd.concat(tables, ignore_index=True).merge(features[["layer", "feature", "cosine"]],
                                                      on=["layer", "feature"], how="left")
