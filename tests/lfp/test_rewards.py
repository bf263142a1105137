"""The VADER reward (paper eq. 3) against hand computations from the lexicon."""

import pytest

from lensflow.lfp.finetune.rewards import (
    lexicon_word_counts,
    load_vader_lexicon,
    make_vader_reward_fn,
    tokenize,
    vader_reward,
)


@pytest.fixture(scope="module")
def lex():
    return load_vader_lexicon()


def test_lexicon_parses_shipped_file(lex):
    assert len(lex) > 7000
    # Known entries of the VADER lexicon (mean of ten human ratings).
    assert lex["good"] == pytest.approx(1.9)
    assert lex["bad"] == pytest.approx(-2.5)
    assert "movie" not in lex


def test_lexicon_custom_path(tmp_path):
    p = tmp_path / "lex.txt"
    p.write_text("yay\t2.5\t0.5\t[2, 3]\r\nboo\t-1.0\t0.1\t[-1, -1]\r\n\n", encoding="utf-8")
    assert load_vader_lexicon(p) == {"yay": 2.5, "boo": -1.0}


def test_reward_matches_hand_computation(lex):
    text = "I love this movie, it is great but the ending was bad."
    # Only love, great and bad are lexicon tokens; everything else scores 0.
    assert not {"i", "this", "movie", "it", "is", "but", "the", "ending", "was", ","} & lex.keys()
    expected = (lex["love"] + lex["great"] + lex["bad"]) / 5
    assert vader_reward([text], lex) == [pytest.approx(expected)]

    text2 = "Terrible acting :) and a good soundtrack!"
    expected2 = (lex["terrible"] + lex[":)"] + lex["good"]) / 5
    assert vader_reward([text2], lex) == [pytest.approx(expected2)]

    # No lexicon word at all -> exactly 0; several texts keep their order.
    assert vader_reward(["The movie has a plot.", text], lex) == [0.0, pytest.approx(expected)]


def test_punctuation_is_split_by_spacy(lex):
    # "great!!" would miss the lexicon under whitespace splitting; spaCy splits the "!".
    assert tokenize("great!!") == ["great", "!", "!"]
    assert vader_reward(["great!!"], lex) == [pytest.approx(lex["great"] / 5)]


def test_case_insensitive(lex):
    lower, upper, mixed = vader_reward(["so good", "SO GOOD", "So GoOd"], lex)
    assert lower == upper == mixed == pytest.approx(lex["good"] / 5)


def test_clipping(lex):
    pos = " ".join(["wonderful"] * 40)  # 40 * 2.7 / 5 = 21.6 before clipping
    neg = " ".join(["terrible"] * 40)  # 40 * -2.1 / 5 = -16.8
    assert 40 * lex["wonderful"] / 5 > 10
    assert vader_reward([pos, neg], lex) == [10.0, -10.0]
    # Just below the bound is untouched.
    three = " ".join(["wonderful"] * 3)
    assert vader_reward([three], lex) == [pytest.approx(3 * lex["wonderful"] / 5)]


def test_trl_reward_fn_strings_and_prompt_concat(lex):
    fn = make_vader_reward_fn(lex)
    assert fn.__name__ == "vader_reward"
    # The paper scores prefix + completion: "good" in the prompt counts.
    out = fn(prompts=["A good"], completions=[" and great film"], completion_ids=[[1, 2]])
    assert out == [pytest.approx((lex["good"] + lex["great"]) / 5)]
    # Joined without a separator: the completion continues the prompt's last word.
    assert fn(prompts=["gr"], completions=["eat"]) == [pytest.approx(lex["great"] / 5)]
    # Completion only.
    only = make_vader_reward_fn(lex, include_prompt=False)
    assert only(prompts=["A good"], completions=[" and great film"]) == [pytest.approx(lex["great"] / 5)]


def test_trl_reward_fn_chat_messages(lex):
    fn = make_vader_reward_fn(lex)
    prompts = [[{"role": "user", "content": "Review the film."}]]
    completions = [[{"role": "assistant", "content": "It was BAD, so bad."}]]
    assert fn(prompts=prompts, completions=completions) == [pytest.approx(2 * lex["bad"] / 5)]
    # Typed content parts (multimodal chat templates).
    parts = [[{"role": "assistant", "content": [{"type": "text", "text": "love it"}]}]]
    assert fn(completions=parts) == [pytest.approx(lex["love"] / 5)]


def test_lexicon_word_counts(lex):
    counts = lexicon_word_counts(["Good, GOOD movie.", "bad but good"], lex)
    assert counts["good"] == 3
    assert counts["bad"] == 1
    assert "movie" not in counts and "," not in counts


def test_read_lexicon_table_gives_token_values_and_names_a_bad_file(tmp_path):
    import pandas as pd

    from lensflow.core import io
    from lensflow.lfp.finetune.rewards import read_lexicon_table

    good = tmp_path / "lex.parquet"
    io.write_table(pd.DataFrame({"token": ["good", "bad"], "value": [1.9, -2.5]}), good, {})
    assert read_lexicon_table(good) == {"good": 1.9, "bad": -2.5}
    bad = tmp_path / "no_value.parquet"
    io.write_table(pd.DataFrame({"token": ["good"]}), bad, {})
    with pytest.raises(Exception, match="no_value.parquet"):
        read_lexicon_table(bad)
