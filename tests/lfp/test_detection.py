"""Detection scoring of feature explanations (issue 16 item 6): held-out balanced contexts across
activation quantiles, the yes/no parser, the scorer on constructed features whose true explanation is
known (vs a random one), the related-feature restriction for Tables 6/7, and the script end to end
over a real per-token cache against the fake OpenAI-compatible server."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from types import SimpleNamespace as NS

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
from scipy import stats
from script_runner import load_script, run_script

from lensflow.core import io
from lensflow.core.cache import CacheSpec, cache_activations
from lensflow.lfp.sae.model import SparseAutoencoder, save_saes
from lensflow.lfp.validation.contexts import context_texts, draw_contexts, feature_codes, window_max
from lensflow.lfp.validation.detection import (
    detection_claims,
    detection_messages,
    draw_controls,
    feature_scores,
    parse_yes_no,
    related_note,
    restrict_related,
    run_detection,
    run_summary,
    wilson,
)
from fake_llm_server import server  # noqa: F401 (pytest fixture)
from tiny_models import WORDS, save_tiny, tiny_model, tiny_tokenizer

ROOT = Path(__file__).resolve().parents[2]
WINDOW = 4


def corpus(n_texts=60, length=12, seed=0):
    """Token table of random word texts and a code per (feature) that fires only on its word."""
    tok = tiny_tokenizer()
    rng = np.random.default_rng(seed)
    rows = []
    for t in range(n_texts):
        words = rng.choice(WORDS, size=length)
        ids = tok.convert_tokens_to_ids(list(words))
        rows += [(100 + t, p, i, w) for p, (i, w) in enumerate(zip(ids, words))]
    tokens = pd.DataFrame(rows, columns=["text_id", "position", "token_id", "word"])
    return tokens, tok, rng


def codes_for(tokens, words, rng):
    """[n, f]: feature j is active (a random strength in 1..10) exactly on words[j]."""
    return np.stack([np.where(tokens["word"] == w, 1 + 9 * rng.random(len(tokens)), 0.0) for w in words], axis=1)


def contexts_with_text(tokens, codes, feats, shown, tok, k=6, seed=0):
    ctx = draw_contexts(tokens[["text_id", "position"]], codes, feats, shown, k, WINDOW, seed)
    return ctx.assign(layer=3, text=context_texts(ctx, tokens, tok, WINDOW))


class KeywordClient:
    """A fake scorer with only complete(): 'Yes.' iff the word the description names is in the text."""

    def __init__(self, reply=None):
        self.calls, self.reply = 0, reply

    def complete(self, messages):
        self.calls += 1
        if self.reply is not None:
            return self.reply
        user = messages[-1]["content"]
        word = re.search(r"the word (\w+)", user).group(1)
        text = re.search(r"Text: (.*)\nDoes", user).group(1)
        return "Yes." if re.search(rf"\b{word}\b", text) else "No, it does not."


def test_window_max_is_the_max_over_the_token_and_its_predecessors_in_the_text():
    tokens, _, rng = corpus()
    codes = codes_for(tokens, ["great", "dog"], rng)
    got = window_max(codes, tokens["text_id"].to_numpy(), WINDOW)
    for i in rng.choice(len(tokens), 50, replace=False):
        t, p = tokens.loc[i, ["text_id", "position"]]
        mask = (tokens["text_id"] == t) & (tokens["position"].between(p - WINDOW, p))
        assert got[i] == pytest.approx(codes[mask.to_numpy()].max(axis=0))


def test_contexts_are_held_out_balanced_and_span_the_activation_quantiles():
    tokens, tok, rng = corpus()
    codes = codes_for(tokens, ["great", "dog"], rng)
    shown = {0: {100, 101, 102, 103}, 1: {104}}
    ctx = draw_contexts(tokens[["text_id", "position"]], codes, [0, 1], shown, 5, WINDOW, seed=7)
    for f, g in ctx.groupby("feature"):
        assert not set(g["text_id"]) & shown[f]  # nothing the explainer saw
        act, non = g[g["activating"]], g[~g["activating"]]
        assert len(act) == len(non) == 5 and sorted(g["context"]) == list(range(10))
        assert (act["activation"] > 0).all() and (non["window_max"] == 0).all() and (non["activation"] == 0).all()
        assert sorted(act["bin"]) == list(range(5))  # one per quantile bin, low to high
        held = codes[~tokens["text_id"].isin(shown[f]).to_numpy(), f]
        pos = np.sort(held[held > 0])
        chunks = np.array_split(np.arange(len(pos)), 5)  # equal-count bins of the ranks
        for b, qq in zip(act["bin"], act["quantile"]):
            assert round(qq * len(pos) - 0.5) in chunks[b]
        for a, qq in zip(act["activation"], act["quantile"]):  # quantile = mid-rank among held-out actives
            assert qq == pytest.approx((np.searchsorted(pos, a) + 0.5) / len(pos))
        assert g["activating"].iloc[:5].tolist() != [True] * 5 or g["activating"].iloc[5:].any()  # shuffled
    again = draw_contexts(tokens[["text_id", "position"]], codes, [0, 1], shown, 5, WINDOW, seed=7)
    pd.testing.assert_frame_equal(ctx, again)


def test_a_feature_that_fires_almost_everywhere_takes_the_lowest_windows_and_stays_balanced():
    tokens, _, rng = corpus(n_texts=6)
    codes = (1 + rng.random((len(tokens), 1))) * (tokens["word"] != "great").to_numpy()[:, None]  # zero only on "great"
    ctx = draw_contexts(tokens[["text_id", "position"]], codes, [0], {}, 50, WINDOW, seed=0)
    act, non = ctx[ctx["activating"]], ctx[~ctx["activating"]]
    assert len(act) == len(non) == int((codes[:, 0] == 0).sum())  # balanced: as many as the rarer kind
    assert (non["activation"] == 0).all() and (non["window_max"] > 0).any()  # windows reach active tokens
    assert draw_contexts(tokens[["text_id", "position"]], codes * 0, [0], {}, 5, WINDOW, seed=0).empty  # dead


def test_parse_yes_no():
    assert parse_yes_no("Yes.") == "yes" and parse_yes_no("**No** - nothing there") == "no"
    assert parse_yes_no("  y") == "yes" and parse_yes_no("False") == "no"
    assert parse_yes_no("The answer is yes") == "yes"
    assert parse_yes_no("I cannot say yes or no") is None and parse_yes_no("maybe") is None
    assert parse_yes_no("") is None and parse_yes_no("Nothing notable") is None


def test_wilson_matches_scipy():
    for k, n in ((0, 10), (7, 10), (10, 10), (33, 80)):
        ci = stats.binomtest(k, n).proportion_ci(method="wilson")
        assert wilson(k, n) == pytest.approx((ci.low, ci.high))
    assert np.isnan(wilson(0, 0)[0])


def test_controls_are_other_features_explanations_seeded():
    ex = pd.DataFrame({"layer": [3, 3, 5, 5], "feature": [0, 1, 0, 2],
                       "explanation": ["the word great", "the word dog", "", "the word great"]})
    c = draw_controls(ex, seed=1)
    own = dict(zip(zip(ex["layer"], ex["feature"]), ex["explanation"]))
    for r in c.itertuples():
        assert r.control_explanation != own[(r.layer, r.feature)] and r.control_explanation != ""
        assert own[(r.control_layer, r.control_feature)] == r.control_explanation
    pd.testing.assert_frame_equal(c, draw_controls(ex, seed=1))
    lone = draw_controls(ex.iloc[:1], seed=1)
    assert lone["control_explanation"].iloc[0] == "" and lone["control_feature"].iloc[0] == -1


def test_known_explanation_beats_a_random_one():
    """The issue's test: a constructed feature with a known explanation scores perfectly and beats
    its random-explanation control; a wrong explanation scores at chance and does not."""
    tokens, tok, rng = corpus(n_texts=80)
    codes = codes_for(tokens, ["great", "dog", "cat"], rng)
    shown = {f: set(tokens.loc[codes[:, f] > 0, "text_id"].unique()[:3]) for f in range(3)}
    ctx = contexts_with_text(tokens, codes, [0, 1, 2], shown, tok, k=6)
    ex = pd.DataFrame({"layer": 3, "feature": [0, 1, 2], "related": [True, True, False],
                       "explanation": ["the word great", "the word zebra", "the word cat"]})
    client = KeywordClient()
    answers = run_detection(client, ex, ctx, seed=0)
    assert client.calls == len(answers) == 2 * len(ctx)  # every context, explanation and control
    scores = feature_scores(answers, ex, alpha=0.05, n_boot=200, seed=0).set_index("feature")
    right, wrong = scores.loc[0], scores.loc[1]
    assert right["accuracy"] == 1.0 and right["n_contexts"] == 12 and right["n_activating"] == 6
    assert right["control_accuracy"] < right["accuracy"] and right["diff"] > 0 and right["beats_control"]
    assert right["p_control"] == pytest.approx(0.5 ** right["n_better"]) and right["n_worse"] == 0
    assert right["accuracy_ci_low"] > 0.5 and len(right["quantiles"].split(",")) == 6
    assert wrong["accuracy"] == 0.5 and not wrong["beats_control"]  # "zebra" never appears: all "no"
    assert scores.loc[2, "accuracy"] == 1.0
    assert (scores["n_unparsed"] == 0).all()
    # Tables 6/7: feature 1 was labelled related but its explanation does not beat its control
    kept = restrict_related(ex, scores.reset_index())
    assert kept.set_index("feature")["related"].tolist() == [True, False, False]
    assert kept["related_labelled"].tolist() == [True, True, False]
    summary = run_summary(scores.reset_index(), ex, n_boot=200)
    assert summary["n_related_labelled"] == 2 and summary["n_related_kept"] == 1
    assert summary["n_beats_control"] == int(scores["beats_control"].sum()) >= 1
    assert "1 of 2 labelled related kept" in related_note(ex, scores.reset_index())


def test_unparseable_answers_score_half_and_are_counted():
    tokens, tok, rng = corpus()
    codes = codes_for(tokens, ["great", "dog"], rng)
    ctx = contexts_with_text(tokens, codes, [0, 1], {}, tok, k=3)
    ex = pd.DataFrame({"layer": 3, "feature": [0, 1], "related": [True, pd.NA],
                       "explanation": ["the word great", "the word dog"]})
    answers = run_detection(KeywordClient(reply="I am not sure."), ex, ctx, seed=0)
    assert (answers["answer"] == "").all() and (answers["score"] == 0.5).all()
    scores = feature_scores(answers, ex, n_boot=100)
    assert (scores["accuracy"] == 0.5).all() and (scores["n_unparsed"] == 6).all()
    assert (scores["n_unparsed_control"] == 6).all() and not scores["beats_control"].any()
    note = related_note(ex, scores)
    assert note.startswith("no related feature: 1 labelled related") and "0 of 2 scored" in note
    summary = pd.DataFrame([{"model": "m", "task": "t", **run_summary(scores, ex, n_boot=100)}])
    assert summary.loc[0, "n_unparsed"] == 24
    rows = detection_claims(summary)
    assert [r["verdict"] for r in rows] == ["not supported", "not supported"]
    assert "24 of 24 answers unparseable" in rows[0]["note"]


def test_features_without_explanation_or_contexts_are_unscored_with_a_reason():
    ex = pd.DataFrame({"layer": 3, "feature": [0, 1], "related": [pd.NA, pd.NA], "explanation": ["", "the word dog"]})
    empty = pd.DataFrame(columns=["layer", "feature", "context", "activating", "text"])
    scores = feature_scores(run_detection(KeywordClient(), ex, empty, seed=0), ex)
    assert scores["reason"].tolist() == ["no explanation", "no held-out activating and non-activating contexts"]
    assert scores["n_contexts"].tolist() == [0, 0] and not scores["beats_control"].any()
    assert "0 of 0 scored" in related_note(ex, scores)


def test_the_rehearsal_endpoint_answers_detection_prompts_yes_or_no():
    spec = importlib.util.spec_from_file_location("fake_openai", ROOT / "tests/rehearsal/fake_openai.py")
    fake = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fake)
    got = {parse_yes_no(fake.answer({"model": "m", "messages": detection_messages("sentiment words", f"a «{w}»")}))
           for w in WORDS}
    assert got == {"yes", "no"}


# --- the script over a real per-token cache -------------------------------------------------------
MODULE = "model.layers.0.mlp"


def test_script_scores_every_explained_feature_over_a_real_cache(tmp_path, server):  # noqa: F811
    rng = np.random.default_rng(0)
    texts = pd.DataFrame({"text_id": np.arange(100, 140),
                          "text": [" ".join(rng.choice(WORDS, size=rng.integers(6, 16))) for _ in range(40)]})
    cache = tmp_path / "activations.parquet"
    cache_activations(tiny_model("llama"), tiny_tokenizer(), texts, CacheSpec([MODULE], pooling="none"), cache,
                      batch_size=8, rows_per_group=50, meta={"layers": [0]})
    sae = SparseAutoencoder(d_in=16, d_hidden=8, seed=1)
    save_saes({0: sae}, tmp_path / "n.safetensors", {})
    (tmp_path / "layers.json").write_text(json.dumps({"highest": [0]}))
    save_tiny(tmp_path / "model")
    x = torch.tensor(np.stack(pq.read_table(cache)[MODULE].to_numpy(zero_copy_only=False)))
    with torch.no_grad():
        alive = [int(f) for f in torch.nonzero(((sae.encode(x) > 0).float().mean(0) - 0.5).abs() < 0.45)[:3, 0]]
    assert len(alive) >= 2
    tokens, codes = feature_codes(cache, MODULE, sae, alive, batch_rows=33)  # several batches, sorted back
    table = pq.read_table(cache).to_pandas().sort_values(["text_id", "position"])
    assert tokens["text_id"].tolist() == table["text_id"].tolist()
    assert tokens["position"].tolist() == table["position"].tolist()
    with torch.no_grad():
        direct = sae.encode(torch.tensor(np.stack(table[MODULE].to_numpy()), dtype=torch.float32))[:, alive].numpy()
    np.testing.assert_allclose(codes, direct, rtol=1e-5, atol=1e-6)
    ex = pd.DataFrame({"layer": 0, "feature": alive, "related": True,
                       "explanation": [f"explanation number {f}" for f in alive]})
    io.write_table(ex, tmp_path / "explanations.parquet", {})
    io.write_table(pd.DataFrame({"layer": 0, "feature": alive, "rank": 0, "text_id": 100, "position": 0,
                                 "activation": 1.0}), tmp_path / "records.parquet", {})
    server.answer = lambda req: ("Yes" if "number" in req["messages"][-1]["content"] else "No") + "."
    out = tmp_path / "out"
    out.mkdir()
    sm = NS(input=NS(activations=str(cache), saes=str(tmp_path / "n.safetensors"), layers=str(tmp_path / "layers.json"),
                     tokenizer=str(tmp_path / "model"), records=str(tmp_path / "records.parquet"),
                     explanations=str(tmp_path / "explanations.parquet"), explainer=[]),
            output=NS(answers=str(out / "detection_answers.parquet"), scores=str(out / "detection.parquet")),
            params=NS(model="m+t", explainer={"backend": "openai", "base_url": server.url, "model": "fake",
                                              "api_key_env": None, "timeout": 5, "max_retries": 0,
                                              "max_new_tokens": 8},
                      k=3, window=WINDOW, alpha=0.05, n_boot=100, cache_dir=str(tmp_path / "cache"), seed=0),
            resources={}, threads=1, log=[str(tmp_path / "log.txt")])
    run_script("lfp_detection", sm)
    answers, scores = io.read_table(sm.output.answers), io.read_table(sm.output.scores)
    assert sorted(scores["feature"]) == sorted(alive) and (scores["n_contexts"] == 6).all()
    assert (scores["accuracy"] == 0.5).all()  # the fake says yes to everything
    assert set(answers["condition"]) == {"explanation", "control"} and (answers["answer"] == "yes").all()
    assert not (answers["text_id"] == 100).any()  # the shown record's text is held out
    assert answers["text"].str.contains("«").all() and answers.loc[answers["activating"], "quantile"].notna().all()
    meta = io.read_metadata(sm.output.scores)
    assert meta["k"] == 3 and meta["summary"]["n_scored"] == len(alive)
    assert len(server.requests) == len(answers)
    run_script("lfp_detection", sm)  # a rerun is answered from the cache
    assert len(server.requests) == len(answers)


def test_ablation_claim_says_why_nothing_was_zeroed_with_the_detection_numbers():
    from lensflow.lfp.claims import ablation_claims

    t = pd.DataFrame({"model": "m", "task": "t", "condition": ["model", "sae", "related"], "diff_vs_sae": 0.0,
                      "diff_ci_low": 0.0, "diff_ci_high": 0.0, "n": 8, "n_zeroed": 0,
                      "related_note": "no related feature: 2 labelled related by the explainer, none with an "
                                      "explanation that beats its control; mean detection accuracy 0.52"})
    rows = ablation_claims(t)
    assert rows[0]["verdict"] == "untestable" and "mean detection accuracy 0.52" in rows[0]["note"]
    assert rows[0]["note"].endswith("so nothing was zeroed")


def test_tables_merge_scores_into_the_explanations_and_summarise_each_run(tmp_path):
    from lensflow.lfp.validation.explanations import COLUMNS

    tokens, tok, rng = corpus(n_texts=80)
    codes = codes_for(tokens, ["great", "dog"], rng)
    ctx = contexts_with_text(tokens, codes, [0, 1], {}, tok, k=6)
    ex = pd.DataFrame({"layer": 3, "feature": [0, 1], "related": [True, True], "answer": "yes", "cosine": 0.5,
                       "explanation": ["the word great", "the word zebra"]})
    scores = feature_scores(run_detection(KeywordClient(), ex, ctx, seed=0), ex, n_boot=100)
    empty_ex = pd.DataFrame({c: pd.Series(dtype=t) for c, t in COLUMNS.items()}).assign(cosine=pd.Series(dtype=float))
    empty_scores = feature_scores(run_detection(KeywordClient(), empty_ex, ctx.iloc[:0], seed=0), empty_ex)
    paths = {}
    for name, df in (("ex1", ex), ("sc1", scores), ("ex2", empty_ex), ("sc2", empty_scores)):
        io.write_table(df, tmp_path / f"{name}.parquet", {})
        paths[name] = str(tmp_path / f"{name}.parquet")
    runs = [{"model": "m", "task": "a"}, {"model": "m", "task": "b"}]
    table, summary = load_script("lfp_tables").scored_explanations(
        runs, [paths["ex1"], paths["ex2"]], [paths["sc1"], paths["sc2"]], 100, 0)
    assert len(table) == 2 and table["related"].tolist() == [True, False]
    assert table["related_labelled"].tolist() == [True, True] and table["accuracy"].notna().all()
    assert summary["task"].tolist() == ["a", "b"] and summary["n_scored"].tolist() == [2, 0]
    assert summary.loc[0, "n_related_kept"] == 1 and summary.loc[1, "n_related_labelled"] == 0
    assert np.isnan(summary.loc[1, "accuracy"])
    rows = detection_claims(summary)
    assert len(rows) == 4 and rows[2]["verdict"] == rows[3]["verdict"] == "untestable"


def test_local_client_one_pass_scores_equal_the_padded_batch():
    """LocalClient scores single-token options (yes/no) from one forward pass of the prompt; the
    numbers must be those of the padded batch it uses for longer options."""
    from lensflow.core.llm.local import LocalClient

    model, tok = tiny_model("llama"), tiny_tokenizer()
    lc = LocalClient(model, tok)
    msgs = [{"role": "user", "content": "the movie was great"}]
    prompt = lc.prompt(msgs)

    def brute(option):
        p, full = tok(prompt)["input_ids"], tok(prompt + " " + option)["input_ids"]
        with torch.inference_mode():
            logp = torch.log_softmax(model(input_ids=torch.tensor([full])).logits[0].float(), -1)
        return sum(float(logp[t - 1, full[t]]) for t in range(len(p), len(full)))

    single = lc.option_logprobs(msgs, ["cat", "dog"])  # one pass
    multi = lc.option_logprobs(msgs, ["cat", "dog", "the cat"])  # padded batch (a two-token option)
    for o in ("cat", "dog"):
        expected = float(torch.logsumexp(torch.tensor([brute(o), brute(o.capitalize())]), 0))
        assert single[o] == pytest.approx(expected, abs=1e-4) and multi[o] == pytest.approx(expected, abs=1e-4)


def test_auc_is_the_mann_whitney_probability():
    from lensflow.lfp.validation.detection import auc

    rng = np.random.default_rng(0)
    act = np.array([True] * 6 + [False] * 6)
    margin = np.round(rng.normal(size=12) + act, 1)  # ties included
    u = stats.mannwhitneyu(margin[act], margin[~act]).statistic
    assert auc(act, margin) == pytest.approx(u / 36)
    assert auc(act, np.where(act, 1.0, 0.0)) == 1.0 and np.isnan(auc(act, np.full(12, np.nan)))


def test_a_local_scorer_gives_margins_and_an_auc():
    from lensflow.core.llm.local import LocalClient

    tokens, tok, rng = corpus()
    codes = codes_for(tokens, ["great", "dog"], rng)
    ctx = contexts_with_text(tokens, codes, [0, 1], {}, tok, k=3)
    ex = pd.DataFrame({"layer": 3, "feature": [0, 1], "related": False, "explanation": ["great words", "dog words"]})
    answers = run_detection(LocalClient(tiny_model("llama"), tok), ex, ctx, seed=0)
    assert np.isfinite(answers["margin"]).all()
    scores = feature_scores(answers, ex, n_boot=100)
    assert scores["auc"].between(0, 1).all() and scores["control_auc"].between(0, 1).all()
