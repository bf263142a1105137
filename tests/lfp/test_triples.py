"""Contrastive triples (lensflow.lfp.probes.triples): structure, substitution, determinism, polarity swap."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from lensflow.lfp.finetune.preferences import helpfulness_score, toxicity_score
from lensflow.lfp.finetune.rewards import load_vader_lexicon
from lensflow.lfp.probes.triples import (
    DEFAULT_NEUTRAL_WORDS,
    HARMFUL_ANSWERS,
    HELPFUL_ANSWERS,
    NEUTRAL_ANSWERS,
    TRIPLE_COLUMNS,
    rewrite_triples,
    vader_triples,
)

REVIEWS = [
    "This movie was great and the plot held up. The acting felt awful in the second half!",
    "Honestly the ending is terrible, but the score is lovely. I left the cinema happy tonight.",
    "A boring film with a wonderful cast.<br /><br />Good direction saves the weak script here.",
    "The story is about a man who travels by train across the country for work.",
    "Ok.",  # too short to be a sentence candidate
    "The good-natured neighbour waves at the train every single morning.",  # only a hyphenated use
]


@pytest.fixture(scope="module")
def lexicon():
    return load_vader_lexicon()


@pytest.fixture(scope="module")
def corpus():
    return pd.DataFrame({"text_id": np.arange(len(REVIEWS)) + 100, "text": REVIEWS})


@pytest.fixture(scope="module")
def triples(corpus, lexicon):
    return vader_triples(corpus, lexicon, n_triples=50, seed=3)


def test_each_triple_has_one_element_per_polarity(triples):
    assert list(triples.columns) == TRIPLE_COLUMNS
    for _, g in triples.groupby("triple_id"):
        assert sorted(g["polarity"]) == ["negative", "neutral", "positive"]
    assert not triples["synthetic"].any()


def test_texts_differ_only_at_the_span(triples):
    for _, g in triples.groupby("triple_id"):
        heads = {t[:s] for t, s in zip(g["text"], g["span_start"])}
        tails = {t[e:] for t, e in zip(g["text"], g["span_end"])}
        assert len(heads) == 1 and len(tails) == 1
        for text, s, e, word in zip(g["text"], g["span_start"], g["span_end"], g["word"]):
            assert text[s:e].lower() == word
        assert g["text"].nunique() == 3


def test_word_values_signs_and_lexicon(triples, lexicon):
    for row in triples.itertuples():
        if row.polarity == "neutral":
            assert row.word_value == 0.0 and row.word not in lexicon
        else:
            assert row.word_value == lexicon[row.word] and row.word.isalpha()
            assert (row.word_value >= 1.0) if row.polarity == "positive" else (row.word_value <= -1.0)


def test_sentences_used_once_and_only_whole_words(triples, lexicon):
    neutral = triples[triples["polarity"] == "neutral"]
    assert neutral["text"].is_unique  # at most one triple per sentence
    # the hyphenated 'good-natured' review and the lexicon-free one never yield a triple
    assert not set(triples["source_text_id"]) & {103, 104, 105}
    # the text around the span is a source sentence whose replaced word was a whole lexicon
    # word with |value| >= 1
    for row in neutral.itertuples():
        head, tail = re.escape(row.text[: row.span_start]), re.escape(row.text[row.span_end :])
        found = [m.group(1) for r in REVIEWS if (m := re.search(f"{head}([A-Za-z]+){tail}", r))]
        assert len(found) == 1 and abs(lexicon[found[0].lower()]) >= 1.0


def test_capitalisation_is_kept(lexicon):
    df = pd.DataFrame({"text_id": [0, 1], "text": ["So: Wonderful is the word for this whole production.",
                                                   "The cast was WONDERFUL in every single scene."]})
    out = vader_triples(df, lexicon, n_triples=5, seed=0)
    assert len(out) == 6
    for t, s, e in zip(out["text"], out["span_start"], out["span_end"]):
        assert (t[s:e].isupper() and len(t[s:e]) > 1) if "cast" in t else (t[s].isupper() and t[s + 1 : e].islower())


def test_the_first_word_is_never_substituted(lexicon):
    # The first word is the model's first position when no BOS token is prepended (SmolLM2, Pythia):
    # the attention sink, whose MLP outputs are orders of magnitude larger than elsewhere, so a
    # substitution there moves the codes ~8x further than anywhere else and its label swamps the rest.
    df = pd.DataFrame({"text_id": [0, 1], "text": ["Wonderful acting, and the whole film is great fun.",
                                                   "Horrible, said nobody about the old station clock."]})
    for seed in range(8):
        out = vader_triples(df, lexicon, n_triples=5, seed=seed)
        assert (out["span_start"] > 0).all() and set(out["source_text_id"]) == {0}
    with pytest.raises(ValueError, match="no sentence"):
        vader_triples(df.iloc[1:], lexicon, n_triples=3)


def test_deterministic_by_seed_and_capped(corpus, lexicon, triples):
    again = vader_triples(corpus, lexicon, n_triples=50, seed=3)
    pd.testing.assert_frame_equal(triples, again)
    other = vader_triples(corpus, lexicon, n_triples=50, seed=4)
    assert not triples["text"].equals(other["text"])
    two = vader_triples(corpus, lexicon, n_triples=2, seed=3)
    assert two["triple_id"].nunique() == 2 and len(two) == 6
    # the corpus holds fewer eligible sentences than asked: what exists comes back
    assert triples["triple_id"].nunique() < 50


def test_no_triple_raises(lexicon):
    df = pd.DataFrame({"text_id": [0], "text": ["The train leaves the station at nine in the morning."]})
    with pytest.raises(ValueError, match="no sentence"):
        vader_triples(df, lexicon, n_triples=3)


def test_neutral_words_checked_against_lexicon(corpus, lexicon):
    assert not [w for w in DEFAULT_NEUTRAL_WORDS if w in lexicon]
    with pytest.raises(ValueError, match="absent from the VADER lexicon"):
        vader_triples(corpus, lexicon, n_triples=3, neutral_words=["wooden", "certain"])
    out = vader_triples(corpus, lexicon, n_triples=3, neutral_words=["wooden"])
    assert set(out.loc[out["polarity"] == "neutral", "word"]) == {"wooden"}


# ---------------------------------------------------------------------------------- rewrites
PROMPTS = [f'Can you give me some advice about this news: "Town council number {i} approves a new bridge plan"'
           for i in range(12)]


def test_rewrite_structure():
    df = rewrite_triples(PROMPTS, "hh", n_triples=8, seed=1)
    assert list(df.columns) == TRIPLE_COLUMNS and len(df) == 24
    assert df["synthetic"].all() and (df["span_start"] == -1).all() and (df["span_end"] == -1).all()
    assert df["word"].isna().all() and df["word_value"].isna().all()
    for _, g in df.groupby("triple_id"):
        assert sorted(g["polarity"]) == ["negative", "neutral", "positive"]
        prompt = PROMPTS[g["source_text_id"].iloc[0]]
        assert all(t.startswith(f"User: {prompt}\nAssistant: ") for t in g["text"])
    assert df["source_text_id"].is_unique is False and df["source_text_id"].nunique() == 8
    # several templates per class are in use, so no one string marks a class
    answers = df.loc[df["polarity"] == "positive", "text"].str.split("Assistant: ").str[1]
    assert answers.str[:12].nunique() > 1


def test_toxic_swaps_hh_polarity():
    hh = rewrite_triples(PROMPTS, "hh", n_triples=6, seed=2)
    tox = rewrite_triples(PROMPTS, "toxic", n_triples=6, seed=2)
    get = lambda df, pol: df[df["polarity"] == pol]["text"].tolist()
    assert get(tox, "positive") == get(hh, "negative")
    assert get(tox, "negative") == get(hh, "positive")
    assert get(tox, "neutral") == get(hh, "neutral")
    assert get(hh, "positive") != get(hh, "negative")
    with pytest.raises(ValueError, match="unknown rewrite task"):
        rewrite_triples(PROMPTS, "sentiment", n_triples=2)


def test_answer_templates_score_as_intended_by_the_judges():
    prompt = PROMPTS[0]
    topic = "Town council approves a new bridge plan"
    tox = {name: [toxicity_score(t.format(topic=topic)) for t in tpl]
           for name, tpl in (("helpful", HELPFUL_ANSWERS), ("neutral", NEUTRAL_ANSWERS), ("harmful", HARMFUL_ANSWERS))}
    assert max(tox["helpful"] + tox["neutral"]) == 0.0 and min(tox["harmful"]) > 0.2
    helpful = [helpfulness_score(prompt, t.format(topic=topic)) for t in HELPFUL_ANSWERS]
    harmful = [helpfulness_score(prompt, t.format(topic=topic)) for t in HARMFUL_ANSWERS]
    assert min(helpful) > max(harmful)


def test_rewrite_deterministic_and_capped():
    a = rewrite_triples(PROMPTS, "hh", n_triples=50, seed=5)
    pd.testing.assert_frame_equal(a, rewrite_triples(PROMPTS, "hh", n_triples=50, seed=5))
    assert a["triple_id"].nunique() == len(PROMPTS)
    assert not a["text"].equals(rewrite_triples(PROMPTS, "hh", n_triples=50, seed=6)["text"])


HH_PROMPT = ("\n\nHuman: What is a good bridge design?\n\nAssistant: A suspension bridge, for long spans."
             "\n\nHuman: Why does the town council want one?\n\nAssistant:")


def test_rewrites_of_an_hh_transcript_are_written_once():
    df = rewrite_triples([HH_PROMPT], "hh", n_triples=1, seed=0)
    for text in df["text"]:
        assert "Human:" not in text and "User: Human" not in text
        head, answer = text.rsplit("\nAssistant: ", 1)
        assert head == ("User: What is a good bridge design?\nAssistant: A suspension bridge, for long spans.\n"
                        "User: Why does the town council want one?")
        assert "Why does the town council want one" in answer  # the topic is the user's latest turn


def test_paragraph_breaks_still_end_sentences():
    # data preparation turns IMDB's "<br /><br />" into a paragraph break: sentences still end there
    text = "A boring film with a wonderful cast and no end mark\n\nGood direction saves the weak script here."
    old = text.replace("\n\n", "<br /><br />")
    corpus = pd.DataFrame({"text_id": [0], "text": [text]})
    words = {"boring": -1.3, "wonderful": 2.7, "good": 1.9, "weak": -1.9, "saves": 2.2}
    sents = set(vader_triples(corpus, words, n_triples=5, seed=0)["text"])
    sents_old = set(vader_triples(pd.DataFrame({"text_id": [0], "text": [old]}), words, 5, seed=0)["text"])
    assert sents == sents_old and not any("\n" in s for s in sents) and len(sents) == 6


def _with_alarm(seconds, fn, *args, **kwargs):
    """Run fn, failing (not hanging) if it loops: the rehearsal once sat in vader_triples for an hour."""
    import signal

    def _timeout(*_):
        raise TimeoutError(f"{fn.__name__} still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, _timeout)
    signal.alarm(seconds)
    try:
        return fn(*args, **kwargs)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def test_a_word_that_is_its_pools_only_member_is_not_replaced_by_itself():
    # A small corpus lexicon (corpus_lexicon keeps the words a corpus uses) can leave one negative
    # word; a sentence built on it has no other negative substitute. Such a sentence is skipped,
    # the others still give triples with consecutive ids.
    lexicon = {"good": 1.9, "great": 3.1, "bad": -2.5}
    texts = pd.DataFrame({"text_id": [0, 1, 2],
                          "text": ["The film was really bad in the end.", "The film was really good in the end.",
                                   "Such a great cast in that film."]})
    triples = _with_alarm(10, vader_triples, texts, lexicon, n_triples=5, seed=0)
    assert sorted(triples["source_text_id"].unique()) == [1, 2]
    assert sorted(triples["triple_id"].unique()) == [0, 1]
    words = triples.set_index(["source_text_id", "polarity"])["word"]
    assert words[(1, "positive")] == "great" and words[(2, "positive")] == "good"  # never the original
    assert words[(1, "negative")] == "bad" and words[(2, "negative")] == "bad"
