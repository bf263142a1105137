"""Concept data sets (ExpertLens step 1): sentence splitting, whole-word mining, concept choice,
the sentence bank, and generation plumbing with a tiny random model."""

import numpy as np
import pandas as pd
import pytest
import torch

from lensflow.expertlens import concept_choice as CC
from lensflow.expertlens import concepts as C
from lensflow.expertlens import generate as G
from tiny_models import tiny_model, tiny_tokenizer


# ---------------------------------------------------------------------------- whole words

@pytest.mark.parametrize("text, word, hit", [
    ("The Cat sat on the mat.", "cat", True),      # case-insensitive
    ("A CAT!", "Cat", True),
    ("This category is large.", "cat", False),     # substring of a longer word
    ("A bobcat ran.", "cat", False),
    ("Two cats ran.", "cat", False),               # no lemmatisation: plurals are other words
    ("The cat's toy.", "cat", True),               # possessive counts as a mention
    ("The cat\u2019s toy.", "cat", True),          # curly apostrophe too
    ("A cat-like grace.", "cat", True),            # hyphen splits words
    ("I don't know.", "don", False),               # a contraction is not its stem
    ("Catch it", "cat", False),
    ("I like Ice Cream a lot.", "ice cream", True),  # multi-token word: regex fallback
    ("I like ice creams.", "ice cream", False),
])
def test_contains_word(text, word, hit):
    assert C.contains_word(text, word) is hit
    # the inverted index must agree with the one-off test
    assert (len(C.word_index([text], [word])[word.lower()]) == 1) is hit


def test_split_sentences_dedupes_filters_and_skips_non_strings():
    texts = ["This is the first sentence here. Short one. And this is\n the second sentence!",
             None, float("nan"), "This is the first sentence here."]
    out = C.split_sentences(texts, min_chars=20, max_chars=300)
    assert out == ["This is the first sentence here.", "And this is the second sentence!"]
    assert C.split_sentences(texts, min_chars=5, max_chars=12) == ["Short one."]


# ---------------------------------------------------------------------------- inflections

@pytest.mark.parametrize("word, forms, not_forms", [
    ("dog", {"dog", "dogs", "dogged", "dogging"}, {"doges", "dogies"}),   # -s; doubling after a short vowel
    ("box", {"boxes", "boxed", "boxing", "boxer"}, {"boxxed"}),           # -es after x; no doubled x
    ("church", {"churches"}, set()),
    ("potato", {"potatoes", "potatos"}, set()),                          # consonant + o
    ("baby", {"babies", "babied"}, set()),                               # consonant + y
    ("happy", {"happier", "happiest"}, set()),
    ("cry", {"cries", "cried", "crying"}, set()),
    ("boy", {"boys"}, {"boies"}),                                        # vowel + y keeps the y
    ("bake", {"bakes", "baked", "baking", "baker"}, set()),               # final e
    ("free", {"freed", "freeing", "freer", "freest"}, {"freing"}),       # -ee keeps its e
    ("large", {"larger", "largest"}, set()),
    ("big", {"bigger", "biggest"}, set()),
    ("stop", {"stopped", "stopping"}, set()),
    ("rain", {"rained", "raining"}, {"rainned"}),                        # two vowels: no doubling
    ("give", {"gives", "giving"}, {"gave", "given"}),                    # irregular forms are not matched
    ("child", {"childs"}, {"children"}),
    ("ice cream", {"ice cream"}, {"ice creams"}),                        # multi-token: never inflected
])
def test_inflections(word, forms, not_forms):
    got = C.inflections(word)
    assert forms <= got and not (not_forms & got) and word in got


def test_inflections_exclude_other_concepts():
    assert "news" in C.inflections("new") and "news" not in C.inflections("new", exclude={"News", "old"})
    assert C.inflections("new", exclude={"new"}) >= {"new"}  # the word itself always stays


@pytest.mark.parametrize("text, word, hit", [
    ("Two dogs ran.", "dog", True),
    ("The dog's bone.", "dog", True),
    ("The dogs' bones.", "dog", True),
    ("She was baking bread.", "bake", True),
    ("The babies slept.", "baby", True),
    ("This is the biggest one.", "big", True),
    ("A doghouse.", "dog", False),       # a compound is not an inflection
    ("Hot dogma.", "dog", False),
    ("Good news today.", "new", True),   # news counts for new ...
])
def test_contains_word_inflected(text, word, hit):
    assert C.contains_word(text, word, inflect=True) is hit
    assert C.contains_word(text, word) is (word in C.tokens(text))  # without inflect: the word only
    assert (len(C.word_index([text], [word], inflect=True)[word]) == 1) is hit


def test_inflected_form_of_another_concept_belongs_to_it():
    # ... but not when "news" is a concept itself
    assert not C.contains_word("Good news today.", "new", inflect=True, exclude={"news"})
    idx = C.word_index(["Good news today.", "A new car.", "New cars."], ["new", "news", "car"], inflect=True)
    assert idx["new"].tolist() == [1, 2] and idx["news"].tolist() == [0] and idx["car"].tolist() == [1, 2]


# ---------------------------------------------------------------------------- mining

SENTS = [f"Sentence {i} has a cat in it." for i in range(30)] + \
        [f"Sentence {i} has a dog in it." for i in range(5)] + ["A category, not a match."]


def test_count_mentions():
    assert C.count_mentions(SENTS, ["cat", "Dog", "bird"]) == {"cat": 30, "dog": 5, "bird": 0}


def test_mine_caps_is_deterministic_and_only_returns_mentions():
    a = C.mine(SENTS, ["cat", "dog", "bird"], n_positive=10, seed=1)
    assert a == C.mine(SENTS, ["bird", "dog", "cat"], n_positive=10, seed=1)  # order-free
    assert len(a["cat"]) == 10 and len(a["dog"]) == 5 and a["bird"] == []
    assert len(set(a["cat"])) == 10 and all(C.contains_word(s, "cat") for s in a["cat"])
    assert a["cat"] != C.mine(SENTS, ["cat"], n_positive=10, seed=2)["cat"]
    # a concept's sample does not depend on which other concepts are mined
    assert C.mine(SENTS, ["cat"], n_positive=10, seed=1)["cat"] == a["cat"]


# ---------------------------------------------------------------------------- concept choice

def _pairs(*edges):
    return pd.DataFrame(edges, columns=["word_a", "word_b"]).assign(score=1.0)


def test_choose_concepts_reasons_and_coverage():
    # a hub x with three leaves, a triangle a-b-c, and g too rare; two tables, one duplicate pair
    pairs = [_pairs(("X", "p"), ("x", "q"), ("x", "r"), ("a", "b")),
             _pairs(("b", "c"), ("c", "a"), ("a", "b"), ("g", "a"))]
    counts = {w: 10 for w in "xpqrabc"} | {"g": 2}
    df = CC.choose_concepts(pairs, counts, min_positive=5, max_concepts=3)
    assert list(df.columns) == ["concept", "n_available", "kept", "reason"]
    assert sorted(df.concept) == sorted("xpqrabcg")  # every candidate has a row
    row = df.set_index("concept")
    assert row.loc["g", "reason"] == "only 2 sentences (< min_positive 5)" and not row.loc["g", "kept"]
    # the hub has the highest degree, but keeping the triangle covers 3 pairs instead of 1
    assert set(df.concept[df.kept]) == {"a", "b", "c"}
    assert row.loc["a", "reason"] == "kept (covers 2 pairs)"
    assert row.loc["x", "reason"] == "over max_concepts 3 (covers 0 pairs)"
    assert CC.pairs_covered(pairs, df.concept[df.kept]) == 3
    assert df.n_available.dtype == np.int64 and df.kept.dtype == bool
    # no cap: every eligible word is kept
    assert CC.choose_concepts(pairs, counts, 5, None).kept.sum() == 7


def test_choose_concepts_ties_are_deterministic():
    pairs = [_pairs(("a", "b"), ("c", "d"), ("e", "f"))]
    df = CC.choose_concepts(pairs, dict.fromkeys("abcdef", 9), min_positive=1, max_concepts=4)
    assert set(df.concept[df.kept]) == {"a", "b", "c", "d"}


def _clique(words):
    return [(a, b) for i, a in enumerate(words) for b in words[i + 1:]]


def _by_set(tables, df):
    kept = df.concept[df.kept]
    return [CC.pairs_covered([t], kept) for t in tables]


@pytest.mark.parametrize("max_concepts, old, new", [(5, [10, 0], [3, 1]), (7, [15, 0], [3, 2]), (8, [15, 1], [6, 2])])
def test_choose_concepts_balances_the_pair_sets(max_concepts, old, new):
    # a big set (a 6-word clique: 15 pairs) and a small one (three disjoint pairs): maximising
    # total coverage spends every slot on the clique and leaves the small set nothing
    big = _pairs(*_clique(["s1", "s2", "s3", "s4", "s5", "s6"]))
    small = _pairs(("w1", "w2"), ("w3", "w4"), ("w5", "w6"))
    counts = dict.fromkeys(["s1", "s2", "s3", "s4", "s5", "s6", "w1", "w2", "w3", "w4", "w5", "w6"], 9)
    total_only = CC.choose_concepts([pd.concat([big, small])], counts, 1, max_concepts)  # one set: the old rule
    assert _by_set([big, small], total_only) == old
    df = CC.choose_concepts([big, small], counts, 1, max_concepts)
    assert _by_set([big, small], df) == new  # the minimum over sets first, then the total
    # (at 8, peeling alone stops at [3, 2] with an unpaired w; the swap step trades it for s4)
    assert df.kept.sum() == max_concepts
    # every dropped word still has its reason
    assert df.reason[~df.kept].str.match(r"over max_concepts \d+ \(covers \d+ pairs\)").all()
    # deterministic, and the order of the pair tables does not matter
    pd.testing.assert_frame_equal(df, CC.choose_concepts([small, big], counts, 1, max_concepts))


def test_choose_concepts_unreachable_set_does_not_constrain():
    # a set whose words are all too rare cannot be covered: the choice is the one without it
    big = _pairs(*_clique(["s1", "s2", "s3", "s4"]), ("s4", "t"), ("t", "u"))
    rare = _pairs(("r1", "r2"), ("r3", "r4"))
    counts = dict.fromkeys(["s1", "s2", "s3", "s4", "t", "u"], 9) | dict.fromkeys(["r1", "r2", "r3", "r4"], 1)
    df = CC.choose_concepts([big, rare], counts, 5, 4)
    alone = CC.choose_concepts([big], counts, 5, 4)
    assert set(df.concept[df.kept]) == set(alone.concept[alone.kept]) == {"s1", "s2", "s3", "s4"}
    assert df.reason[df.concept.str.startswith("r")].str.startswith("only 1 sentences").all()


# ---------------------------------------------------------------------------- bank

POS = {"cat": ["The cat sat down.", "A cat and a dog met."],
       "dog": ["A cat and a dog met.", "The dog barked loudly."],
       "fish": ["Fish swim all day.", "The cat ate the fish."]}


def test_build_bank_every_sentence_once_and_clean_negatives():
    sents, mem = C.build_bank(POS, n_negative=10, seed=0)
    assert list(sents.columns) == ["text_id", "text"] and list(mem.columns) == ["concept", "text_id", "label"]
    assert sents.text.is_unique and len(sents) == 5
    assert sents.text_id.tolist() == list(range(5)) and sents.text_id.dtype == np.int64
    assert mem.text_id.dtype == np.int64 and set(mem.text_id) <= set(sents.text_id)
    text = dict(zip(sents.text_id, sents.text))
    for c, g in mem.groupby("concept"):
        pos = g.text_id[g.label == "positive"].map(text)
        neg = g.text_id[g.label == "negative"].map(text)
        assert sorted(pos) == sorted(POS[c])
        assert not any(C.contains_word(s, c) for s in neg)  # never mentions the concept
        assert not set(pos) & set(neg)
    counts = mem.groupby(["concept", "label"]).size().to_dict()
    # cat: 3 other sentences, but "The cat ate the fish." mentions it; dog and fish: all 3 others
    assert counts == {("cat", "negative"): 2, ("cat", "positive"): 2, ("dog", "negative"): 3,
                      ("dog", "positive"): 2, ("fish", "negative"): 3, ("fish", "positive"): 2}


def test_build_bank_negatives_exclude_inflected_forms():
    pos = {"dog": ["The dog ran home."], "cat": ["Two dogs chased the cat."], "new": ["A new day began."],
           "news": ["The news came late."], "car": ["The car was new and fast."]}
    sents, mem = C.build_bank(pos, n_negative=10, seed=0)
    text = dict(zip(sents.text_id, sents.text))
    neg = {c: set(g.text_id[g.label == "negative"].map(text)) for c, g in mem.groupby("concept")}
    assert "Two dogs chased the cat." not in neg["dog"]  # "dogs" is dog's
    assert "The news came late." in neg["new"]            # "news" is a concept of its own
    assert "The car was new and fast." not in neg["new"] and "A new day began." in neg["news"]


def test_build_bank_caps_negatives_deterministically():
    a = C.build_bank(POS, n_negative=2, seed=3)
    b = C.build_bank(dict(reversed(list(POS.items()))), n_negative=2, seed=3)  # dict order irrelevant
    pd.testing.assert_frame_equal(a[0], b[0])
    pd.testing.assert_frame_equal(a[1], b[1])
    assert (a[1][a[1].label == "negative"].groupby("concept").size() == 2).all()


# ---------------------------------------------------------------------------- generation

def test_first_sentence_and_filter():
    assert G.first_sentence(' "The cat sat on the mat." It purred.') == "The cat sat on the mat."
    assert G.first_sentence("Here is one:\nThe dog ran home quickly!\nMore") == "The dog ran home quickly!"
    assert G.first_sentence('1. The cat sat.\n2. More') == "The cat sat."
    assert G.first_sentence("Here's a simple sentence: \"The cat sat.\" Done") == "The cat sat."
    assert G.first_sentence("The time is: now. Or not") == "The time is: now."  # no lead-in word
    assert G.keep("The cat sat on the mat.", "cat")
    assert not G.keep("The cat sat on the mat", "cat")                       # truncated
    assert not G.keep("This category is large enough.", "cat")               # not the word
    assert not G.keep('A simple sentence with the word "cat" in it.', "cat")  # about the word
    assert not G.keep("Cat.", "cat")                                          # too short
    assert G.reject_reason("The cat sat on the mat", "cat") == "incomplete"
    assert G.reject_reason("The dog sat on the mat.", "cat") == "no_word"
    assert G.reject_reason('Here "cat" is used in a short line.', "cat") == "meta"
    assert G.reject_reason("I wrote a sentence about it.", "sentence") is None  # the concept itself
    # simple inflections count (generated positives), unless the form is another concept
    assert G.reject_reason("The dogs barked at the mailman.", "dog") is None
    assert G.reject_reason("She was baking bread all morning.", "bake") is None
    assert G.reject_reason("The news came late that night.", "new") is None
    assert G.reject_reason("The news came late that night.", "new", exclude={"news"}) == "no_word"
    assert G.reject_reason("The children played in the yard.", "child") == "no_word"  # irregular
    assert G.reject_reason('I really like "dogs" a lot.', "dog") == "meta"
    assert G.reject_reason("A doghouse stood in the yard.", "dog") == "no_word"


@pytest.fixture
def one_thread():
    """Tiny models gain nothing from threads, and on a busy CPU thread spin-waits make them slow."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _tiny():
    tok = tiny_tokenizer()
    tok.padding_side = "right"  # generate_sentences must switch to left padding itself
    return tiny_model("llama", seed=0), tok


def test_generate_plumbing_with_tiny_model(monkeypatch, one_thread):
    model, tok = _tiny()
    raw, checked = [], []
    real_complete, real_reason = G.complete, G.reject_reason

    def spy_complete(*a, **k):
        texts, n = real_complete(*a, **k)
        raw.append(texts)
        return texts, n

    def spy_reason(s, c, *a, **k):
        checked.append((s, c, real_reason(s, c, *a, **k) is None))
        return real_reason(s, c, *a, **k)

    monkeypatch.setattr(G, "complete", spy_complete)
    monkeypatch.setattr(G, "reject_reason", spy_reason)
    args = dict(concepts=["cat", "dog", "film"], n_per_concept=2, max_new_tokens=6, batch_size=4, max_tries=2)
    stats = {}
    a = G.generate_sentences(model, tok, seed=0, stats=stats, **args)
    assert set(a) == {"cat", "dog", "film"} and all(len(v) <= 2 for v in a.values())
    assert tok.padding_side == "right"  # restored
    # budget: at most max_tries * n_per_concept samples per concept, all filtered
    assert stats["samples"] == len(checked) <= 3 * 2 * 2 and stats["new_tokens"] > 0
    assert stats["kept"] + sum(stats["rejected"].values()) == stats["samples"]
    assert all(raw[0]) and len(raw[0]) == 6  # round 0 asks every concept for 2
    for s, c, ok in checked:
        others = {"cat", "dog", "film"} - {c}
        assert ok == (C.contains_word(s, c, inflect=True, exclude=others) and s.endswith((".", "!", "?"))
                      and len(s) >= 20)
    first_raw = list(raw)
    raw.clear()
    assert G.generate_sentences(model, tok, seed=0, **args) == a
    assert raw == first_raw  # same seed, same samples
    raw.clear()
    G.generate_sentences(model, tok, seed=1, **args)
    assert raw[0] != first_raw[0]


def test_generate_retries_until_full_and_gives_up(monkeypatch):
    # canned completions: "cat" succeeds every other sample, "zebra" never does
    calls = []

    def fake_complete(model, tok, prompts, *a, **k):
        calls.append(len(prompts))
        out = []
        for i, p in enumerate(prompts):
            ok = "cat" in p and (len(calls) + i) % 2 == 0
            out.append(f"The cat number {len(calls)}-{i} sat down." if ok else "Nothing to see here.")
        return out, len(prompts)

    monkeypatch.setattr(G, "complete", fake_complete)
    stats = {}
    got = G.generate_sentences(None, tiny_tokenizer(), ["cat", "zebra"], n_per_concept=3, max_tries=4, stats=stats)
    assert len(got["cat"]) == 3 and len(set(got["cat"])) == 3 and got["zebra"] == []
    assert calls[0] == 6 and stats["samples"] == sum(calls)
    assert stats["samples"] <= 2 * 4 * 3  # zebra stopped at its budget of 12 samples


def test_generate_accepts_inflections_but_not_other_concepts(monkeypatch):
    def fake_complete(model, tok, prompts, *a, **k):  # every prompt gets the same two kinds of answer
        out = []
        for i, p in enumerate(prompts):
            out.append(f"Some dogs ran around the yard {i}." if "dog" in p else f"The news of day {i} was good.")
        return out, len(prompts)

    monkeypatch.setattr(G, "complete", fake_complete)
    stats = {}
    got = G.generate_sentences(None, tiny_tokenizer(), ["dog", "new", "news"], n_per_concept=2, max_tries=2,
                               stats=stats)
    assert len(got["dog"]) == 2 and len(got["news"]) == 2
    assert got["new"] == []  # "news" belongs to the concept news, not to new
    assert stats["inflected"] == 2 and stats["rejected"]["no_word"] == 4  # new: its budget of 2 x 2


def test_chat_template_is_used_when_present(one_thread):
    tok = tiny_tokenizer()
    plain, templated = G._prompts(tok, ["cat"], G.DEFAULT_PROMPT)
    assert plain == ['Write one short, simple sentence that uses the word "cat".'] and not templated
    tok.chat_template = ("{% for m in messages %}<s>USER {{ m['content'] }}{% endfor %}"
                         "{% if add_generation_prompt %} BOT{% endif %}")
    chat, templated = G._prompts(tok, ["cat"], "Say {concept}.")
    assert chat == ["<s>USER Say cat. BOT"] and templated
    torch.manual_seed(0)
    texts, _ = G.complete(tiny_model("llama"), tok, chat, templated, 3, 1.0, 1.0, 2, "cpu")
    assert len(texts) == 1


def test_complete_pads_on_the_left(one_thread):
    model, tok = _tiny()
    seen = []  # the attention mask of every forward (the first is the prompts' prefill)
    handle = model.register_forward_pre_hook(lambda m, a, kw: seen.append(kw["attention_mask"]), with_kwargs=True)
    torch.manual_seed(0)
    try:
        texts, n_new = G.complete(model, tok, ["the cat", "the cat sat on the mat"], False, 3, 1.0, 1.0, 8, "cpu")
    finally:
        handle.remove()
    mask = seen[0]  # [2, t]
    assert mask[:, -1].all() and not mask[0, 0]  # every prompt ends at the last column
    assert len(texts) == 2 and 0 < n_new <= 6 and tok.padding_side == "right"
