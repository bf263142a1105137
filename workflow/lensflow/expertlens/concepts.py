"""ExpertLens concept data sets: which words are concepts, and their positive/negative sentences.

A concept is one word of the human-judgment pairs (SimLex, WordSim, MEN). Its positive sentences
mention the word; its negatives are sentences of *other* concepts that do not mention it (as in
apple/ml-selfcond, where a concept's negatives are other concepts' sentences). Two sources:
  mined      sentences split from the prepared corpora (this module)
  generated  sentences written by an instruct model (generate.py)
Both end in the same "bank" (build_bank): every distinct sentence once, plus a membership table
saying which concept uses which sentence with which label.

Whole-word matching rule (used everywhere: mining, the generation filter, negatives):
  text is lowercased, curly apostrophes become straight ones, and the tokens are the runs of
  `[a-z]+(?:'[a-z]+)?`. A word is mentioned iff it is one of the tokens, or the token is its
  possessive: "Cat", "cat-like", "cat's" mention "cat"; "category", "cats", "bobcat" do not;
  "don't" does not mention "don". Mining uses exactly this (no lemmatisation: plurals are other
  words, as in the pairs).
Words that are not a single token under that regex (none in SimLex/WordSim; e.g. "ice cream")
fall back to a case-insensitive `\\b...\\b` regex search.

Inflection rule (inflect=True: generated positives, and every negative set of both sources):
  a word is also mentioned by its simple regular inflections (`inflections`): -s; -es after
  s/x/z/ch/sh or a consonant + o; -ed, -ing, -er, -est; with the spelling rules final e
  (bake: baked, baking, baker), consonant + y (baby: babies; cry: cried; happy: happier, happiest)
  and a doubled final consonant after one short vowel (big: bigger; stop: stopped, stopping).
  The forms are generated, not looked up: irregular forms (children, gave, women) are not
  matched, and a generated form can be an unrelated word (car: cared; cent: center), so a form
  that is itself one of the other concepts (`exclude`) belongs to that concept, not to this one
  ("news" is not "new" when both are concepts). Multi-token words are never inflected.
"""

from __future__ import annotations

import re
import zlib
from collections import defaultdict
from functools import lru_cache

import numpy as np
import pandas as pd

TOKEN = re.compile(r"[a-z]+(?:'[a-z]+)?")
WORD = re.compile(r"[a-z]+(?:'[a-z]+)?\Z")  # is a word a single token under TOKEN?


# ---------------------------------------------------------------------------- sentences

@lru_cache(maxsize=1)
def _sentencizer():
    """spaCy's rule-based sentence splitter on a blank English pipeline (no model download)."""
    import spacy

    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    nlp.max_length = 10_000_000  # the sentencizer is linear; long news documents are fine
    return nlp


def split_sentences(texts, min_chars: int = 20, max_chars: int = 300, batch_size: int = 256) -> list[str]:
    """Distinct sentences of `texts` (first occurrence kept) with min_chars <= len <= max_chars.

    Whitespace runs (newlines in reviews) are collapsed so a sentence is one line; non-strings
    (None, NaN) are skipped.
    """
    nlp = _sentencizer()
    docs = nlp.pipe((t for t in texts if isinstance(t, str)), batch_size=batch_size)
    seen: dict[str, None] = {}  # insertion-ordered set
    for doc in docs:
        for sent in doc.sents:
            s = " ".join(sent.text.split())
            if min_chars <= len(s) <= max_chars:
                seen.setdefault(s, None)
    return list(seen)


# ---------------------------------------------------------------------------- whole-word matching

def tokens(text: str) -> set[str]:
    """The word tokens of `text` (see the module docstring), possessive stems included."""
    toks = set(TOKEN.findall(text.lower().replace("\u2019", "'")))
    return toks | {t[:-2] for t in toks if t.endswith("'s")}


def _fallback(word: str) -> re.Pattern:
    return re.compile(r"\b" + re.escape(word) + r"\b", re.IGNORECASE)


_VOWELS = "aeiou"


def inflections(word: str, exclude=()) -> set[str]:
    """`word` (lowercased) and its simple regular inflections (module docstring), minus the
    words in `exclude` (other concepts). A multi-token word or one with an apostrophe: itself only."""
    w = word.lower()
    if not WORD.match(w) or "'" in w:
        return {w}
    out = {w + "s", w + "ing", w + "ed", w + "er", w + "est"}
    consonant_before = len(w) >= 2 and w[-2] not in _VOWELS
    if w.endswith(("s", "x", "z", "ch", "sh")) or (w.endswith("o") and consonant_before):
        out.add(w + "es")
    if w.endswith("y") and consonant_before:
        out |= {w[:-1] + x for x in ("ies", "ied", "ier", "iest")}
    if w.endswith("e"):
        out |= {w + "d", w + "r", w + "st"}
        if not w.endswith("ee"):
            out.add(w[:-1] + "ing")
    if len(w) >= 3 and w[-1] not in _VOWELS + "wxy" and w[-2] in _VOWELS and w[-3] not in _VOWELS:
        out |= {w + w[-1] + x for x in ("ed", "ing", "er", "est")}
    return (out - {x.lower() for x in exclude}) | {w}


def contains_word(text: str, word: str, inflect: bool = False, exclude=()) -> bool:
    """Does `text` mention `word` as a whole word (case-insensitive)? With inflect, one of its
    simple inflections counts too (`inflections(word, exclude)`)."""
    word = word.lower()
    if WORD.match(word):
        return bool(tokens(text) & (inflections(word, exclude) if inflect else {word}))
    return bool(_fallback(word).search(text))


def word_index(sentences: list[str], words, inflect: bool = False) -> dict[str, np.ndarray]:
    """word -> sorted int64 indices of the sentences that mention it (every word has an entry).

    With inflect, a word's simple inflections count too, except forms that are themselves one of
    `words` (see the module docstring). One token set per sentence, inverted once: ~40k
    sentences x ~2k words in about a second, instead of 80M regex searches.
    """
    words = {w.lower() for w in words}
    owner: dict[str, set[str]] = defaultdict(set)  # token form -> the words it mentions
    for w in words:
        for f in (inflections(w) - words) | {w} if inflect else {w}:  # == inflections(w, words - {w})
            owner[f].add(w)
    forms = set(owner)
    hits: dict[str, set[int]] = defaultdict(set)
    for i, s in enumerate(sentences):
        for t in tokens(s) & forms:
            for w in owner[t]:
                hits[w].add(i)
    out = {w: np.asarray(sorted(hits.get(w, ())), dtype=np.int64) for w in words}
    for w in words:
        if not WORD.match(w):  # rare multi-token words: a regex scan
            pat = _fallback(w)
            out[w] = np.asarray([i for i, s in enumerate(sentences) if pat.search(s)], dtype=np.int64)
    return out


def _rng(seed: int, word: str) -> np.random.Generator:
    """A generator per (seed, word): adding or removing a concept leaves the others' samples alone."""
    return np.random.default_rng([seed, zlib.crc32(word.encode("utf-8"))])


def count_mentions(sentences: list[str], words) -> dict[str, int]:
    """word (lowercased) -> number of sentences mentioning it."""
    return {w: len(ix) for w, ix in word_index(sentences, words).items()}


def mine(sentences: list[str], words, n_positive: int, seed: int) -> dict[str, list[str]]:
    """word -> up to n_positive sentences mentioning it, sampled without replacement (seeded)."""
    index = word_index(sentences, words)
    out = {}
    for w in sorted(index):
        ix = index[w]
        if len(ix) > n_positive:
            ix = np.sort(_rng(seed, w).choice(ix, size=n_positive, replace=False))
        out[w] = [sentences[i] for i in ix]
    return out


# ---------------------------------------------------------------------------- the bank

def build_bank(positives: dict[str, list[str]], n_negative: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(sentences, membership) for a set of concepts with their positive sentences.

    sentences:  text_id (int64, 0..N-1), text (str) -- every distinct sentence once, so a sentence
                shared by several concepts is run through the model once.
    membership: concept (str), text_id (int64), label ("positive" | "negative"), sorted by
                concept, label, text_id. Negatives: up to n_negative sentences, sampled (seeded
                per concept) from the other concepts' positives that do not mention the concept
                or one of its simple inflections (inflect=True in word_index: "dogs" is never a
                negative of "dog", whichever source wrote it).
    """
    blank = [c for c in positives if not str(c).strip()]
    if blank:
        raise ValueError(f"empty concept name {blank[0]!r}: every concept must be a word")
    empty = sorted(c for c, sents in positives.items() if len(sents) == 0)
    if empty:
        raise ValueError(f"concept(s) {empty} have no positive sentences: drop them before building the bank")
    concepts = sorted(positives)  # dict order must not change the ids
    text_id: dict[str, int] = {}
    own: dict[str, np.ndarray] = {}
    for c in concepts:
        own[c] = np.asarray(sorted({text_id.setdefault(s, len(text_id)) for s in positives[c]}), dtype=np.int64)
    texts = list(text_id)
    mentions = word_index(texts, concepts, inflect=True)  # concept -> ids of bank sentences mentioning it
    all_ids = np.arange(len(texts), dtype=np.int64)
    parts = []
    for c in concepts:
        # own positives all mention c when mined; generated ones too (filtered), but be explicit
        pool = np.setdiff1d(all_ids, np.union1d(own[c], mentions[c.lower()]), assume_unique=True)
        neg = pool if len(pool) <= n_negative else np.sort(_rng(seed, c).choice(pool, size=n_negative, replace=False))
        parts.append(pd.DataFrame({"concept": c, "text_id": own[c], "label": "positive"}))
        parts.append(pd.DataFrame({"concept": c, "text_id": neg, "label": "negative"}))
    sentences = pd.DataFrame({"text_id": all_ids, "text": pd.Series(texts, dtype=object)})
    cols = {"concept": pd.Series(dtype=object), "text_id": pd.Series(dtype="int64"), "label": pd.Series(dtype=object)}
    membership = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(cols)
    membership = membership.astype({"text_id": "int64"})
    return sentences, membership.sort_values(["concept", "label", "text_id"], ignore_index=True)
