"""Contrastive triples (x+, x0, x-) for the LFP probes (paper §3.3, spec item 6).

A probe learns the feedback signal implicit in a tuned model's activations from how far a
positive and a negative element move the SAE codes away from a neutral one. The three elements
of a triple must therefore differ ONLY in what the feedback cares about:

  * VADER task (`vader_triples`): a corpus sentence containing a VADER lexicon word, with that
    one word replaced by a positive, a neutral (not in the lexicon) and a negative word. This is
    exactly the paper's construction, so these rows are synthetic=False.
  * HH / toxic tasks (`rewrite_triples`): the paper asks LLaMA-3-8B for positive / neutral /
    negative rewrites of an HH-RLHF entry. Offline, three templated assistant answers to the same
    user prompt stand in for those rewrites (synthetic=True). The toxic task rewards toxicity, so
    its positive and negative elements are swapped relative to hh.

Every triples table has one row per element with the columns of TRIPLE_COLUMNS:
  triple_id, polarity ("positive"|"neutral"|"negative"), text,
  span_start, span_end (char offsets of the substituted word in `text`; -1/-1 = use every token),
  word (the substituted word, None for rewrites), word_value (its VADER value; 0.0 for the
  neutral word; NaN for rewrites), source_text_id, synthetic.
"""

from __future__ import annotations

import itertools
import random
import re

import numpy as np
import pandas as pd

from lensflow.core.data import to_messages

from ..sae.task_texts import exchange

TRIPLE_COLUMNS = [
    "triple_id", "polarity", "text", "span_start", "span_end",
    "word", "word_value", "source_text_id", "synthetic",
]
POLARITIES = ("positive", "neutral", "negative")

# Plain descriptive words with no sentiment: none of them is a VADER lexicon entry (checked at
# run time by `_check_neutral`, which fails loudly if a lexicon version ever adds one). Mostly
# adjectives, because most VADER words that reviews use are adjectives; a few concrete nouns.
DEFAULT_NEUTRAL_WORDS = (
    "wooden", "square", "round", "yellow", "blue", "green", "metal", "paper", "table", "window",
    "chair", "river", "street", "daily", "weekly", "regular", "average", "usual", "typical",
    "standard", "ordinary", "general", "local", "various", "several", "similar", "technical",
    "formal", "modern", "recent", "previous", "final", "total", "plain", "tall", "wide", "narrow",
    "early", "late", "northern", "southern", "annual", "central", "public", "domestic", "rural",
    "urban", "plastic", "digital", "manual", "printed", "seasonal", "vertical", "horizontal",
    "circular", "rectangular", "medium",
)
MIN_SENTENCE_CHARS, MAX_SENTENCE_CHARS = 20, 300

# Sentence boundaries: whitespace after . ! ? (keeping the mark), or a line break: data preparation
# turns IMDB's "<br /><br />" into a paragraph break (lensflow.core.data.strip_markup); the tag itself
# still counts, for a table prepared without that step.
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+|\s*\n\s*|<br\s*/?>", re.IGNORECASE)
# A whole word: letters not glued to other letters, digits, apostrophes or hyphens, so "good"
# inside "good-natured" or "don't" is not a candidate.
_WORD = re.compile(r"(?<![\w'-])[A-Za-z]+(?![\w'-])")


# ------------------------------------------------------------------------------- VADER triples
def _split_sentences(text: str) -> list[str]:
    """Sentences of `text` with whitespace collapsed, kept only if 20..300 characters long."""
    out = []
    for part in _SENTENCE_SPLIT.split(str(text)):
        sent = " ".join(part.split())
        if MIN_SENTENCE_CHARS <= len(sent) <= MAX_SENTENCE_CHARS:
            out.append(sent)
    return out


def _word_pools(lexicon: dict[str, float], min_abs_value: float) -> tuple[list[str], list[str]]:
    """Sorted (positive, negative) substitute words: alphabetic, lowercase, single-word entries
    with value >= min_abs_value / <= -min_abs_value (emoticons like ':)' are not candidates)."""
    words = [w for w in lexicon if w.isalpha() and w == w.lower()]
    pos = sorted(w for w in words if lexicon[w] >= min_abs_value)
    neg = sorted(w for w in words if lexicon[w] <= -min_abs_value)
    if not pos or not neg:
        raise ValueError(f"lexicon has {len(pos)} positive / {len(neg)} negative words with |value| >= {min_abs_value}")
    return pos, neg


def _check_neutral(neutral_words: list[str], lexicon: dict[str, float]) -> list[str]:
    words = [w.lower() for w in neutral_words]
    in_lexicon = [w for w in words if w in lexicon]
    if in_lexicon:
        raise ValueError(f"neutral words must be absent from the VADER lexicon; these are in it: {in_lexicon}")
    if not words or not all(w.isalpha() for w in words):
        raise ValueError(f"neutral words must be a non-empty list of alphabetic words, got {neutral_words!r}")
    return sorted(set(words))


def _match_case(word: str, original: str) -> str:
    """`word` in the capitalisation style of `original` (ALL CAPS, Capitalised or lower)."""
    if len(original) > 1 and original.isupper():
        return word.upper()
    return word.capitalize() if original[0].isupper() else word


def _candidates(sentence: str, lexicon: dict[str, float], min_abs_value: float) -> list[re.Match]:
    """Whole-word occurrences of lexicon words with |value| >= min_abs_value (case-insensitive),
    except the sentence's first word: without a BOS token (SmolLM2, Pythia) it is the model's first
    position, the attention sink, whose MLP outputs are orders of magnitude larger than anywhere
    else. A substitution there moved A_concat ~8x further (embedded run: |delta| 250-370 for the 4%
    of triples there, median 29), and rescaling the labels to the reward's range by their maximum
    then squeezed every other label into a narrow band. The paper's words follow a context."""
    return [m for m in _WORD.finditer(sentence)
            if m.start() > 0 and abs(lexicon.get(m.group().lower(), 0.0)) >= min_abs_value]


def _substitute(sentence: str, match: re.Match, word: str) -> tuple[str, int, int]:
    """(new sentence, span_start, span_end) with `match` replaced by `word` in its case style."""
    new = _match_case(word, match.group())
    start = match.start()
    return sentence[:start] + new + sentence[match.end():], start, start + len(new)


def _eligible_sentences(texts: pd.DataFrame, lexicon, min_abs_value, rng: random.Random):
    """Yield (text_id, sentence, match): texts in seeded random order, one sentence per text per
    round (round r takes each text's r-th eligible sentence in a seeded order), so the paper's
    "one triple per entry" holds until the corpus runs short. Duplicate sentences are skipped."""
    order = list(range(len(texts)))
    rng.shuffle(order)
    ids, raw = texts["text_id"].to_numpy(), texts["text"].to_numpy()
    per_text: dict[int, list[tuple[str, re.Match]]] = {}
    seen: set[str] = set()
    for rnd in itertools.count():
        any_left = False
        for i in order:
            if i not in per_text:  # scanned lazily: a big corpus is only read as far as needed
                found = [(s, c) for s in _split_sentences(raw[i]) if (c := _candidates(s, lexicon, min_abs_value))]
                rng.shuffle(found)
                per_text[i] = found
            if rnd >= len(per_text[i]):
                continue
            any_left = True
            sent, cands = per_text[i][rnd]
            if sent.lower() in seen:
                continue
            seen.add(sent.lower())
            yield int(ids[i]), sent, rng.choice(cands)
        if not any_left:
            return


def vader_triples(
    texts: pd.DataFrame,
    lexicon: dict[str, float],
    n_triples: int,
    seed: int = 0,
    min_abs_value: float = 1.0,
    neutral_words: list[str] | None = None,
) -> pd.DataFrame:
    """Up to `n_triples` VADER triples from corpus sentences (paper §3.3); see module docstring.

    texts: DataFrame(text_id, text). A sentence (20..300 chars) qualifies if it contains a
    whole-word, case-insensitive occurrence of a lexicon word with |value| >= min_abs_value; one
    such occurrence (chosen by seed) is replaced by a random positive word (value >=
    min_abs_value), a random neutral word (from `neutral_words`, default DEFAULT_NEUTRAL_WORDS,
    none of which may be in the lexicon) and a random negative word (value <= -min_abs_value),
    never the original word itself, in the original's capitalisation style. At most one triple
    per sentence. Returns fewer rows than asked when the corpus runs short (the caller logs it);
    raises ValueError when no triple at all can be formed. Deterministic given `seed`.
    """
    if n_triples < 1:
        raise ValueError(f"n_triples must be >= 1, got {n_triples}")
    pos_pool, neg_pool = _word_pools(lexicon, min_abs_value)
    neutral = _check_neutral(list(DEFAULT_NEUTRAL_WORDS if neutral_words is None else neutral_words), lexicon)
    rng = random.Random(seed)
    rows = []
    tid = 0
    for text_id, sent, match in _eligible_sentences(texts, lexicon, min_abs_value, rng):
        original = match.group().lower()
        pools = (pos_pool, neutral, neg_pool)
        if any(pool == [original] for pool in pools):
            continue  # a corpus lexicon may hold one word of a polarity: nothing else to put there
        for polarity, pool in zip(POLARITIES, pools):
            word = rng.choice(pool)
            while word == original:  # ends: the pool holds another word (checked above)
                word = rng.choice(pool)
            text, start, end = _substitute(sent, match, word)
            value = 0.0 if polarity == "neutral" else float(lexicon[word])
            rows.append((tid, polarity, text, start, end, word, value, text_id, False))
        tid += 1
        if tid >= n_triples:
            break
    if not rows:
        raise ValueError(
            f"vader_triples: no sentence of {len(texts)} texts ({MIN_SENTENCE_CHARS}-{MAX_SENTENCE_CHARS} chars) "
            f"contains a lexicon word with |value| >= {min_abs_value}"
        )
    return triples_frame(rows)


def triples_frame(rows: list[tuple]) -> pd.DataFrame:
    """Rows (tuples in TRIPLE_COLUMNS order) as a triples table with its dtypes (word None, not NaN)."""
    df = pd.DataFrame(rows, columns=TRIPLE_COLUMNS)
    df["word"] = df["word"].astype(object).where(df["word"].notna(), None)
    return df.astype({"triple_id": int, "span_start": int, "span_end": int, "word_value": float,
                      "source_text_id": int, "synthetic": bool})


# ----------------------------------------------------------------------------- rewrite triples
# SYNTHETIC: offline stand-ins for the paper's LLaMA-3-8B rewrites of HH-RLHF entries. Several
# templates per class (chosen per prompt by seed) so a probe cannot key on one fixed string.
# {topic} is the prompt's quoted source text (or the prompt itself), cut to ~60 characters.
HELPFUL_ANSWERS = (
    'Happy to help. About "{topic}": the key facts are worth checking in a reliable source, and '
    "I can walk you through what they mean step by step.",
    'Good question. Regarding "{topic}", here is a clear summary of the main points, with some '
    "context on why they matter to you.",
    'Thanks for asking. On "{topic}", I would start with the basic background, then look at the '
    "details carefully and kindly ask follow-up questions.",
    'Sure, let me explain "{topic}" plainly: what happened, who is involved, and what it could '
    "mean, so you can decide for yourself.",
)
NEUTRAL_ANSWERS = (
    'I have read "{topic}". I do not have more to add about it right now.',
    'That is about "{topic}". It could be seen in more than one way.',
    'Noted: "{topic}". There is not much else I can say about this.',
    'The text is "{topic}". Maybe, maybe not; it depends.',
)
# Every harmful answer uses words `preferences.toxicity_score` weights as hostile (VADER <= -2 or
# its INSULTS list: stupid, idiot, pathetic, loser, hate, worthless, garbage, disgusting, ...).
HARMFUL_ANSWERS = (
    'What a stupid question about "{topic}". Only an idiot would ask that, you pathetic loser.',
    'I hate this. "{topic}" is worthless garbage and so are you, you disgusting moron.',
    'Shut up about "{topic}", fool. Nobody cares what a dumb, useless clown like you thinks.',
    'Ugh, "{topic}"? That is trash for losers. You are an idiot and your question sucks.',
)
_QUOTED = re.compile(r'"([^"]+)"')
TOPIC_CHARS = 60


def _topic(prompt: str) -> str:
    """The prompt's quoted source text (preferences.make_prompts quotes it), else the prompt,
    whitespace-collapsed and cut at a word boundary to at most TOPIC_CHARS characters."""
    m = _QUOTED.search(prompt)
    topic = " ".join((m.group(1) if m else prompt).split())
    if len(topic) > TOPIC_CHARS:
        topic = topic[:TOPIC_CHARS].rsplit(" ", 1)[0]
    return topic.rstrip(" .!?,;:")


def rewrite_triples(prompts: list[str], kind: str, n_triples: int, seed: int = 0) -> pd.DataFrame:
    """Up to `n_triples` synthetic rewrite triples for the hh / toxic tasks (synthetic=True).

    `n_triples` prompts are drawn with random.Random(seed) (all of them, in seeded order, if
    fewer); each yields task_texts.exchange(prompt, answer) ("User: {prompt}\\nAssistant: {answer}",
    an HH transcript prompt written turn by turn) with a helpful, a neutral and a harmful answer
    (templates above, one per class drawn per prompt). hh: positive = helpful,
    negative = harmful. toxic: positive = harmful, negative = helpful (toxicity is rewarded).
    The template draws do not depend on `kind`, so toxic is hh with + and - swapped.
    span = -1/-1 (probe on all tokens), word None, word_value NaN. source_text_id = index
    into `prompts`.
    """
    if kind not in ("hh", "toxic"):
        raise ValueError(f"unknown rewrite task {kind!r} (expected 'hh' or 'toxic')")
    if n_triples < 1:
        raise ValueError(f"n_triples must be >= 1, got {n_triples}")
    if not prompts:
        raise ValueError("rewrite_triples: no prompts")
    rng = random.Random(seed)
    picked = rng.sample(range(len(prompts)), min(n_triples, len(prompts)))
    rows = []
    for tid, pid in enumerate(picked):
        prompt = str(prompts[pid])
        topic = _topic(to_messages(prompt)[-1]["content"])  # the user's latest turn, not the transcript
        helpful, neutral, harmful = (rng.choice(t).format(topic=topic)
                                     for t in (HELPFUL_ANSWERS, NEUTRAL_ANSWERS, HARMFUL_ANSWERS))
        answers = {"positive": helpful, "neutral": neutral, "negative": harmful}
        if kind == "toxic":
            answers["positive"], answers["negative"] = harmful, helpful
        for polarity in POLARITIES:
            text = exchange(prompt, answers[polarity])
            rows.append((tid, polarity, text, -1, -1, None, np.nan, pid, True))
    return triples_frame(rows)


def corpus_lexicon(texts, lexicon: dict[str, float], min_count: int = 2) -> dict[str, float]:
    """The lexicon entries that occur (as whole words, any case) at least `min_count` times in `texts`.

    Substitutes drawn from the whole VADER lexicon are mostly rare forms ("richened", "weaklier")
    that a review never contains and a tuned policy never generates; drawing them from the words
    the corpus itself uses keeps the triples natural and gives each word several rows.
    """
    counts: dict[str, int] = {}
    for text in texts:
        for m in _WORD.finditer(str(text)):
            w = m.group(0).lower()
            if w in lexicon:
                counts[w] = counts.get(w, 0) + 1
    return {w: lexicon[w] for w, c in counts.items() if c >= min_count}
