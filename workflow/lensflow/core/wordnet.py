"""Word categories from WordNet's lexicographer files (noun.animal, noun.person, noun.artifact, ...).

WordNet's database (the `dict/` folder: `lexnames`, `index.<pos>`, `data.<pos>`) files every synset
in one of 45 lexicographer files. The category of a word here is the lexicographer file of its
most frequent sense: the first synset listed for the word in `index.<pos>` (WordNet orders a word's
senses by their frequency in the semantically tagged corpora), looked up part of speech by part
of speech in a given order (noun first), so a word with any noun sense gets a noun category.

Synsets are found by the 8-digit byte-offset field that starts every data line, not by seeking to
that offset: packaged copies may split a data file into parts (`data.noun1`, `data.noun2`), and the
cut loses a newline, so offsets into the joined parts are off by one byte after it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

POS_NAMES = ("noun", "verb", "adj", "adv")
DEFAULT_POS_ORDER = ("noun", "verb", "adj")
RULE = ("WordNet lexicographer file (lexname) of the word's most frequent sense: the first synset in "
        "index.<pos>, parts of speech tried in order {order}")


def read_lexnames(path: str | Path) -> dict[int, str]:
    """lex_filenum -> lexicographer file name, from WordNet's `lexnames` (`05<TAB>noun.animal<TAB>1`)."""
    names = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].isdigit():
            names[int(parts[0])] = parts[1]
    return names


def first_senses(index_path: str | Path) -> dict[str, str]:
    """lemma -> offset of its first (most frequent) synset, from an `index.<pos>` file.

    A line is `lemma pos synset_cnt p_cnt [ptr_symbol...] sense_cnt tagsense_cnt offset...`, with
    synset_cnt offsets at its end; the license header's lines start with spaces and are skipped.
    """
    out = {}
    for line in Path(index_path).read_text(encoding="utf-8", errors="replace").splitlines():
        if not line or line[0] == " ":
            continue
        parts = line.split()
        n = int(parts[2])
        out[parts[0]] = parts[len(parts) - n]
    return out


def data_files(dict_dir: str | Path, pos: str) -> list[Path]:
    """`data.<pos>`, or its numbered parts (`data.noun1`, `data.noun2`, ...) in order."""
    d = Path(dict_dir)
    whole = d / f"data.{pos}"
    if whole.is_file():
        return [whole]
    parts = [p for p in d.glob(f"data.{pos}*") if re.fullmatch(rf"data\.{pos}\d+", p.name)]
    return sorted(parts, key=lambda p: int(p.name[len(f"data.{pos}"):]))


def synset_lexfiles(paths: list[Path], wanted: set[str] | None = None) -> dict[str, int]:
    """synset offset (the 8-digit field starting a data line) -> its lex_filenum (the second field)."""
    out = {}
    for path in paths:
        for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
            if len(line) < 12 or not line[:8].isdigit():
                continue
            offset, filenum = line[:8], line[9:11]
            if wanted is None or offset in wanted:
                out[offset] = int(filenum)
    return out


def lexname_table(dict_dir: str | Path, pos_order=DEFAULT_POS_ORDER) -> pd.DataFrame:
    """word, category, pos for every lemma of the listed parts of speech (the first one that has it).

    Words are WordNet lemmas: lower case, multiword ones joined by '_'.
    """
    d = Path(dict_dir)
    unknown = [p for p in pos_order if p not in POS_NAMES]
    if unknown:
        raise ValueError(f"unknown parts of speech {unknown}; known: {POS_NAMES}")
    names = read_lexnames(d / "lexnames")
    rows: dict[str, tuple[str, str]] = {}
    for pos in pos_order:
        senses = {w: o for w, o in first_senses(d / f"index.{pos}").items() if w not in rows}
        files = data_files(d, pos)
        if not files:
            raise FileNotFoundError(f"no data.{pos} file in {d}")
        lexfiles = synset_lexfiles(files, set(senses.values()))
        missing = sorted(set(senses.values()) - set(lexfiles))
        if missing:
            raise ValueError(f"{len(missing)} synsets of index.{pos} not found in {[f.name for f in files]}, "
                             f"e.g. {missing[:3]}")
        rows.update({w: (names[lexfiles[o]], pos) for w, o in senses.items()})
    return pd.DataFrame([(w, c, p) for w, (c, p) in rows.items()], columns=["word", "category", "pos"])


def wordnet_version(dict_dir: str | Path) -> str:
    """'WordNet Release 3.0' or the like, from the folder's LICENSE file ('' when there is none)."""
    for name in ("LICENSE.txt", "LICENSE"):
        path = Path(dict_dir) / name
        if path.is_file():
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                if "WordNet" in line:
                    return line.strip()
    return ""


def lemma_form(word: str) -> str:
    """A word as WordNet spells its lemmas: lower case, the words of a phrase joined by '_'."""
    return "_".join(str(word).strip().lower().split())


def label_words(table: pd.DataFrame, words) -> pd.DataFrame:
    """concept, category, pos for each word (category and pos missing where the table has no entry).

    table: word, category[, pos]; a word is looked up as written and in WordNet's lemma form.
    """
    by_word = table.drop_duplicates("word").set_index("word")
    rows = []
    for w in words:
        key = next((k for k in (str(w), lemma_form(w)) if k in by_word.index), None)
        hit = by_word.loc[key] if key is not None else None
        rows.append({"concept": w, "category": None if hit is None else hit["category"],
                     "pos": None if hit is None or "pos" not in by_word.columns else hit["pos"]})
    return pd.DataFrame(rows, columns=["concept", "category", "pos"]).astype({"category": "string", "pos": "string"})
