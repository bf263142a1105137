"""The controlled-sentiment (VADER) reward of the LFP paper, eq. 3.

    Reward(s) = clip( (1/5) * sum_{token in s} V(token), -10, +10 )

where tokens come from spaCy's English tokenizer, each token is lowercased before the
lexicon lookup, and tokens outside the VADER lexicon score 0. This is a bag-of-words sum:
no VADER heuristics (negation, boosters, capitalisation), exactly as in the paper.

The paper tokenizes with the `en_core_web_md` pipeline; only its tokenizer matters here and
that is the rule-based English tokenizer that `spacy.blank("en")` also builds, so no model
download is needed.
"""

from __future__ import annotations

import functools
import importlib.util
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

SCALE = 5.0  # the paper divides the lexicon sum by 5 ...
CLIP = 10.0  # ... and clamps to [-10, 10] to stop PPO collapsing on huge rewards


@functools.lru_cache(maxsize=1)
def _tokenizer():
    """spaCy's English tokenizer, built once (spaCy import + construction cost ~1 s)."""
    import spacy

    return spacy.blank("en").tokenizer


def tokenize(text: str) -> list[str]:
    """Lowercased spaCy token texts of one string (the lexicon lookup keys)."""
    return [tok.text.lower() for tok in _tokenizer()(text)]


def _tokenize_many(texts: Iterable[str]) -> Iterable[list[str]]:
    # Tokenizer.pipe streams docs without building per-text Python overhead twice.
    for doc in _tokenizer().pipe(texts):
        yield [tok.text.lower() for tok in doc]


def default_lexicon_path() -> Path:
    """`vader_lexicon.txt` shipped inside the installed vaderSentiment package.

    Located with importlib's spec so nothing from the package is imported or executed
    (we only need its data file, not the VADER analyser).
    """
    spec = importlib.util.find_spec("vaderSentiment")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("vaderSentiment is not installed; pass the lexicon path explicitly")
    path = Path(next(iter(spec.submodule_search_locations))) / "vader_lexicon.txt"
    if not path.is_file():
        raise FileNotFoundError(f"no vader_lexicon.txt in the vaderSentiment package at {path.parent}")
    return path


def load_vader_lexicon(path: str | Path | None = None) -> dict[str, float]:
    """Read the VADER lexicon into {token: mean rating}.

    Each line is `token<TAB>mean<TAB>std<TAB>[10 raw ratings]` (the shipped file has CRLF line
    ends). Keys are kept exactly as written, as VADER itself does: the handful of entries
    with capitals (e.g. emoticons like "O.o") or spaces ("fed up") can never match a
    lowercased single spaCy token, which is the paper's behaviour too.
    """
    path = default_lexicon_path() if path is None else Path(path)
    lexicon: dict[str, float] = {}
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            fields = line.split("\t")
            if len(fields) < 2:
                raise ValueError(f"{path}:{lineno}: expected token<TAB>mean..., got {line!r}")
            lexicon[fields[0]] = float(fields[1])
    return lexicon


def read_lexicon_table(path: str | Path) -> dict[str, float]:
    """{token: value} from the prepared lexicon table (results/data/<lexicon>.parquet, columns
    token and value): what every LFP job that scores text with the lexicon reads."""
    from lensflow.core import io

    table = io.read_table(path, required=["token", "value"])
    return dict(zip(table["token"], table["value"].astype(float)))


def _score(tokens: list[str], lexicon: Mapping[str, float]) -> float:
    raw = sum(lexicon.get(tok, 0.0) for tok in tokens) / SCALE
    return float(min(CLIP, max(-CLIP, raw)))


def vader_reward(texts: Iterable[str], lexicon: Mapping[str, float]) -> list[float]:
    """Paper eq. 3 for each text: clip(sum of lexicon values of lowercased tokens / 5, -10, 10)."""
    return [_score(tokens, lexicon) for tokens in _tokenize_many(list(texts))]


def _as_text(item) -> str:
    """A TRL prompt/completion as plain text: a string, or a list of chat messages."""
    if isinstance(item, str):
        return item
    if isinstance(item, Mapping):  # a single message
        return str(item.get("content", ""))
    # Conversational format: [{"role": ..., "content": ...}, ...]; content may itself be a
    # list of typed parts ({"type": "text", "text": ...}) in multimodal chat templates.
    parts = []
    for msg in item:
        content = msg.get("content", "") if isinstance(msg, Mapping) else msg
        if isinstance(content, list):
            content = " ".join(p.get("text", "") for p in content if isinstance(p, Mapping))
        parts.append(str(content))
    return "\n".join(parts)


def make_vader_reward_fn(lexicon: Mapping[str, float], include_prompt: bool = True) -> Callable[..., list[float]]:
    """A reward function with TRL's signature: `fn(prompts=..., completions=..., **kwargs)`.

    The paper scores the *concatenated* prefix + completion (§3.1), so by default the prompt
    is prepended when TRL passes one. For plain-text prompts the two strings are joined with
    nothing in between: TRL decodes the completion tokens on their own, so the decoded text
    already carries its leading space when the model emitted one (joining with a space
    would split words the model continued). Chat prompts/completions are joined by newlines.
    """

    def vader_reward_fn(completions=None, prompts=None, **kwargs) -> list[float]:
        if completions is None:
            raise TypeError("reward function needs `completions`")
        texts = [_as_text(c) for c in completions]
        if include_prompt and prompts is not None:
            if len(prompts) != len(texts):
                raise ValueError(f"{len(prompts)} prompts for {len(texts)} completions")
            sep = [("" if isinstance(p, str) and isinstance(c, str) else "\n") for p, c in zip(prompts, completions)]
            texts = [_as_text(p) + s + t for p, s, t in zip(prompts, sep, texts)]
        return vader_reward(texts, lexicon)

    # TRL logs each reward function under its __name__.
    vader_reward_fn.__name__ = "vader_reward"
    return vader_reward_fn


def lexicon_word_counts(texts: Iterable[str], lexicon: Mapping[str, float]) -> Counter:
    """How often each lexicon word occurs in `texts` (same tokenization as the reward).

    Used for the paper's Fig. 4 (probe error vs how often the tuned policy generates a word).
    Words that never occur are absent from the Counter (their count reads as 0).
    """
    counts: Counter = Counter()
    for tokens in _tokenize_many(list(texts)):
        counts.update(tok for tok in tokens if tok in lexicon)
    return counts
