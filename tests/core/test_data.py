"""Data registry: each kind and source prepares the right table, and missing sources are named."""

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from lensflow.core import data, io
from lensflow.core.assets import AssetUnavailable


def test_texts_from_local_csv_with_label_and_sampling(tmp_path):
    path = tmp_path / "reviews.csv"
    pd.DataFrame({"body": ["good film", "", "bad plot", "great actor", "awful"], "y": list("pnpnp")}).to_csv(path, index=False)
    spec = {"kind": "texts", "source": "local", "path": str(path), "text_column": "body", "label_column": "y",
            "min_chars": 1, "max_rows": 3, "substitute_for": "stanfordnlp/imdb"}
    df, meta = data.prepare(spec, "reviews", seed=0)
    assert list(df.columns) == ["text_id", "text", "label"]
    assert len(df) == 3 and "" not in set(df["text"])  # the empty text is dropped, then 3 of 4 sampled
    assert df["text_id"].is_monotonic_increasing
    again, _ = data.prepare(spec, "reviews", seed=0)
    pd.testing.assert_frame_equal(df, again)  # same seed, same sample
    assert meta["substitute_for"] == "stanfordnlp/imdb" and meta["n_rows"] == 3 and not meta["synthetic"]


def test_texts_from_lines_and_jsonl(tmp_path):
    (tmp_path / "a.cor").write_text("first doc\n\nsecond doc\n")
    df, _ = data.prepare({"kind": "texts", "source": "local", "path": str(tmp_path / "a.cor")}, "a")
    assert df["text"].tolist() == ["first doc", "second doc"]
    pd.DataFrame({"text": ["x y", "z"]}).to_json(tmp_path / "b.jsonl", orient="records", lines=True)
    df, _ = data.prepare({"kind": "texts", "source": "local", "path": str(tmp_path / "b.jsonl")}, "b")
    assert df["text"].tolist() == ["x y", "z"]


def test_missing_text_column_names_the_key(tmp_path):
    pd.DataFrame({"body": ["x"]}).to_csv(tmp_path / "r.csv", index=False)
    with pytest.raises(AssetUnavailable, match=r"data\.r\.text_column"):
        data.prepare({"kind": "texts", "source": "local", "path": str(tmp_path / "r.csv")}, "r")


def test_lexicon_keeps_last_duplicate(tmp_path):
    (tmp_path / "lex.txt").write_text("good\t1.9\t0.9\t[1, 2]\nbad\t-2.5\t0.5\t[]\ngood\t2.0\t0.1\t[]\n")
    df, _ = data.prepare({"kind": "lexicon", "source": "local", "path": str(tmp_path / "lex.txt")}, "lex")
    assert dict(zip(df["token"], df["value"])) == {"good": 2.0, "bad": -2.5}


def test_word_pairs_tab_and_men_formats(tmp_path):
    (tmp_path / "simlex.txt").write_text("# header\n# W1\tW2\tscore\nOld\tnew\t1.58\n")
    df, _ = data.prepare({"kind": "word_pairs", "source": "local", "path": str(tmp_path / "simlex.txt")}, "s")
    assert df.to_dict("records") == [{"word_a": "old", "word_b": "new", "score": 1.58}]
    (tmp_path / "men.txt").write_text("sun-n sunlight-n 50.000000\nbakery-n bread-n 45.0\n")
    df, _ = data.prepare({"kind": "word_pairs", "source": "local", "path": str(tmp_path / "men.txt")}, "men")
    assert df[["word_a", "word_b"]].values.tolist() == [["sun", "sunlight"], ["bakery", "bread"]]


def test_preferences_split_hh_transcripts(tmp_path):
    prompt = "\n\nHuman: How do I bake bread?\n\nAssistant:"
    raw = pd.DataFrame({"chosen": [prompt + " Knead and bake."], "rejected": [prompt + " No."]})
    raw.to_parquet(tmp_path / "hh.parquet")
    df, _ = data.prepare({"kind": "preferences", "source": "local", "path": str(tmp_path / "hh.parquet")}, "hh")
    assert df.iloc[0].to_dict() == {"prompt": prompt, "chosen": "Knead and bake.", "rejected": "No."}


def test_package_sources_ship_the_offline_data():
    df, meta = data.prepare({"kind": "word_pairs", "source": "package", "package": "gensim",
                             "path": "test/test_data/wordsim353.tsv"}, "wordsim353")
    assert len(df) == 353 and meta["source"]["package"] == "gensim"
    lex, _ = data.prepare({"kind": "lexicon", "source": "package", "package": "vaderSentiment",
                           "path": "vader_lexicon.txt"}, "vader")
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
    assert dict(zip(lex["token"], lex["value"])) == SentimentIntensityAnalyzer().lexicon


def test_missing_sources_are_named(tmp_path):
    with pytest.raises(AssetUnavailable, match="no_such_pkg"):
        data.prepare({"kind": "texts", "source": "package", "package": "no_such_pkg", "path": "x.csv"}, "d")
    with pytest.raises(AssetUnavailable, match="nope.csv"):
        data.prepare({"kind": "texts", "source": "package", "package": "gensim", "path": "nope.csv"}, "d")
    with pytest.raises(AssetUnavailable, match=str(tmp_path / "missing.csv")):
        data.prepare({"kind": "texts", "source": "local", "path": str(tmp_path / "missing.csv")}, "d")


def test_hub_source_offline_names_the_id(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(AssetUnavailable, match="stanfordnlp/imdb"):
        data.prepare({"kind": "texts", "source": "hub", "id": "stanfordnlp/imdb", "split": "train"}, "imdb")


def test_tables_round_trip_with_metadata_and_corrupt_files_are_named(tmp_path):
    df = pd.DataFrame({"a": [1, 2]})
    io.write_table(df, tmp_path / "t.parquet", {"seed": 3})
    assert io.read_metadata(tmp_path / "t.parquet") == {"seed": 3}
    pd.testing.assert_frame_equal(io.read_table(tmp_path / "t.parquet"), df)
    with pytest.raises(io.TableError, match="missing column"):
        io.read_table(tmp_path / "t.parquet", required=["b"])
    raw = (tmp_path / "t.parquet").read_bytes()
    (tmp_path / "cut.parquet").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(io.TableError, match="cut.parquet"):
        io.read_table(tmp_path / "cut.parquet")
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_texts_lose_html_markup_and_the_metadata_counts_it(tmp_path):
    imdb = [
        "A fine film.<br /><br />The cast is great &amp; the plot <i>works</i>.",
        "No markup here: 3 < 4 and 5 > 2, AT&T &copy it.",  # not markup: left exactly as it is
        "Dull.<br/>Too long.   Skip it.",
        "<br /><br />",  # nothing left: dropped like any empty text
    ]
    pd.DataFrame({"text": imdb, "label": [1, 0, 0, 1]}).to_parquet(tmp_path / "imdb.parquet")
    df, meta = data.prepare({"kind": "texts", "source": "local", "path": str(tmp_path / "imdb.parquet"),
                             "label_column": "label"}, "imdb")
    assert df["text"].tolist() == ["A fine film.\n\nThe cast is great & the plot works.", imdb[1],
                                   "Dull.\nToo long.   Skip it."]
    assert meta["markup_stripped"] is True and meta["n_markup_stripped"] == 2
    assert data.strip_markup(imdb[1]) == imdb[1]
    assert data.strip_markup("a <b>bold</b>  move <i> now") == "a bold move now"


def test_prepare_data_script_records_the_markup_in_the_table(tmp_path):
    pd.DataFrame({"text": ["Good.<br /><br />Bad.", "plain"]}).to_csv(tmp_path / "r.csv", index=False)
    script = Path(__file__).resolve().parents[2] / "workflow" / "scripts" / "prepare_data.py"
    spec = importlib.util.spec_from_file_location("prepare_data", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "r.parquet"
    source = {"kind": "texts", "source": "local", "path": str(tmp_path / "r.csv")}
    module.main(SimpleNamespace(params=SimpleNamespace(spec=source, name="r", seed=0),
                                output=[str(out)], log=[str(tmp_path / "r.log")]))
    assert io.read_table(out)["text"].tolist() == ["Good.\n\nBad.", "plain"]
    assert io.read_metadata(out)["n_markup_stripped"] == 1
    assert "HTML markup stripped from 1 texts" in (tmp_path / "r.log").read_text()
