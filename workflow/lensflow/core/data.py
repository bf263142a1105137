"""The data registry: read a configured source and prepare it as a tidy Parquet table.

Kinds (config `data.<name>.kind`) and the columns their tables have:
  texts        text_id, text[, label]            corpora (reviews, news, sentences)
  lexicon      token, value[, std]               the VADER lexicon
  word_pairs   word_a, word_b, score             human similarity judgments (SimLex, WordSim, MEN)
  preferences  prompt, chosen, rejected          DPO pairs (HH-RLHF, toxic-dpo)
  categories   word, category, pos               word categories: WordNet's lexicographer files
                                                 (`path`: a WordNet dict/ folder; lensflow.core.wordnet)
Sources: `hub` (datasets.load_dataset), `local` (a file), `package` (a file inside a pip package).
Substitute or synthetic data say so in the table's metadata (`substitute_for`, `synthetic`).
Texts lose their HTML markup here, once (IMDB's `<br /><br />`), so no later stage sees it; the
metadata says how many texts that changed (`markup_stripped`, `n_markup_stripped`).
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import pandas as pd

from . import wordnet
from .assets import AssetUnavailable, package_file

KIND_COLUMNS = {
    "texts": ["text_id", "text"],
    "lexicon": ["token", "value"],
    "word_pairs": ["word_a", "word_b", "score"],
    "preferences": ["prompt", "chosen", "rejected"],
    "categories": ["word", "category"],
}
# Kinds whose `path` is a folder (a WordNet dict/), not a file.
FOLDER_KINDS = ("categories",)


def source_path(spec: dict, name: str) -> Path:
    """The file (folder, for FOLDER_KINDS) behind a `local` or `package` source; a clear error
    naming what is missing."""
    folder = spec.get("kind") in FOLDER_KINDS
    if spec["source"] == "package":
        return package_file(spec["package"], spec["path"], f"data '{name}'", folder=folder)
    path = Path(spec["path"])
    if not (path.is_dir() if folder else path.is_file()):
        raise AssetUnavailable(f"data '{name}': local {'folder' if folder else 'file'} '{path}' does not exist")
    return path


def _read_file(path: Path, fmt: str) -> pd.DataFrame:
    """A raw table from a file; `auto` picks the reader from the suffix (compression allowed)."""
    suffixes = [s for s in path.suffixes if s not in (".bz2", ".gz", ".xz", ".zip")]
    if fmt == "auto":
        fmt = {".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".jsonl": "jsonl"}.get(
            suffixes[-1] if suffixes else "", "lines"
        )
    if fmt == "csv":
        return pd.read_csv(path)
    if fmt == "tsv":
        return pd.read_csv(path, sep="\t")
    if fmt == "parquet":
        return pd.read_parquet(path)
    if fmt == "jsonl":
        return pd.read_json(path, lines=True)
    lines = [ln.strip() for ln in path.read_text(encoding="utf-8", errors="replace").splitlines()]
    return pd.DataFrame({"text": [ln for ln in lines if ln]})


def _read_hub(spec: dict, name: str) -> pd.DataFrame:
    import datasets

    kwargs = {k: spec[k] for k in ("revision",) if k in spec}
    try:
        ds = datasets.load_dataset(spec["id"], spec.get("config_name"), split=spec.get("split", "train"), **kwargs)
    except Exception as e:  # datasets raises many types when offline or when the id is wrong
        raise AssetUnavailable(f"data '{name}': cannot load hub dataset '{spec['id']}' (offline?): {e}") from None
    return ds.to_pandas()


# An HTML tag: '<' or '</' straight before a letter, so "3 < 4 and 5 > 2" is not one. Spaces or
# tabs around it are captured so that dropping it leaves no doubled space.
_TAG = re.compile(r"([ \t]*)</?([A-Za-z][A-Za-z0-9]*)\b[^<>]*>([ \t]*)")
_LINE_BREAK_TAGS = {"br", "p", "div", "li"}
# Only complete character references ("&amp;", "&#39;"): "AT&T" or a bare "&copy" is plain text.
_ENTITY = re.compile(r"&(?:#[0-9]+|#[xX][0-9a-fA-F]+|[A-Za-z][A-Za-z0-9]*);")


def _drop_tag(m: re.Match) -> str:
    if m.group(2).lower() in _LINE_BREAK_TAGS:
        return "\n"  # a paragraph or line break stays one, so sentence splitting still sees it
    return " " if m.group(1) or m.group(3) else ""  # inline (<i>, <b>): the words it wrapped stay


def strip_markup(text: str) -> str:
    """`text` without HTML tags and with character references decoded; a text with neither is
    returned exactly as it is."""
    out = _ENTITY.sub(lambda m: html.unescape(m.group()), _TAG.sub(_drop_tag, text))
    return out if out == text else out.strip()


def _texts(raw: pd.DataFrame, spec: dict, name: str, seed: int) -> tuple[pd.DataFrame, int]:
    """(table, how many of its texts lost HTML markup)."""
    col = spec.get("text_column", "text")
    if col not in raw.columns:
        raise AssetUnavailable(f"data '{name}': no text column '{col}' (key data.{name}.text_column); has {list(raw.columns)}")
    text = raw[col].astype("string").str.strip()
    clean = text.map(strip_markup, na_action="ignore").astype("string")
    changed = (clean != text).fillna(False).to_numpy()
    df = pd.DataFrame({"text_id": range(len(raw)), "text": clean.to_numpy()})
    if spec.get("label_column"):
        df["label"] = raw[spec["label_column"]].astype("string").values
        if spec.get("keep_labels"):
            df = df[df["label"].isin(spec["keep_labels"])]
    df = df[df["text"].notna() & (df["text"].str.len() >= spec.get("min_chars", 1))]
    if spec.get("max_rows") and len(df) > spec["max_rows"]:
        df = df.sample(n=spec["max_rows"], random_state=seed).sort_values("text_id")
    return df.reset_index(drop=True), int(changed[df["text_id"].to_numpy()].sum())


def _lexicon(path: Path) -> pd.DataFrame:
    """VADER's format: token<TAB>mean<TAB>std<TAB>[raw ratings]; a plain token<TAB>value file also works."""
    rows = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        parts = line.split("\t")
        if len(parts) >= 2 and parts[0]:
            rows.append((parts[0], float(parts[1]), float(parts[2]) if len(parts) > 2 else float("nan")))
    # The file lists 14 tokens twice; VADER's own analyzer keeps the last entry, and so do we.
    return pd.DataFrame(rows, columns=["token", "value", "std"]).drop_duplicates("token", keep="last")


def _word_pairs(path: Path) -> pd.DataFrame:
    """Tab- or space-separated `word_a word_b score`; '#' comments; MEN's POS suffixes (-n/-v/-j) dropped."""
    rows = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        parts = line.strip().split("\t") if "\t" in line else line.split()
        if len(parts) < 3 or line.startswith("#"):
            continue
        a, b = (w.strip().lower().rsplit("-", 1)[0] if w[-2:] in ("-n", "-v", "-j") else w.strip().lower() for w in parts[:2])
        rows.append((a, b, float(parts[2])))
    return pd.DataFrame(rows, columns=["word_a", "word_b", "score"])


# HH-RLHF's speaker markers; a transcript is "\n\nHuman: ...\n\nAssistant: ...", a prompt ends in "Assistant:".
_HH_TURN = re.compile(r"\n\n(Human|Assistant):")


def to_messages(prompt: str) -> list[dict]:
    """Chat turns ({"role", "content"}) of a prompt: an HH-RLHF transcript split at its
    Human/Assistant markers, any other text a single user turn. The one parser of HH text (DPO's
    chat data, the plain transcripts of task_texts.exchange). Empty turns (the trailing
    "Assistant:") are dropped and a speaker's consecutive turns merged, so user and assistant
    alternate as chat templates like Gemma's require."""
    parts = _HH_TURN.split("\n\n" + prompt.lstrip("\n"))  # [before, speaker, text, speaker, text, ...]
    turns = [("user", parts[0])] + [("user" if who == "Human" else "assistant", text)
                                     for who, text in zip(parts[1::2], parts[2::2])]
    msgs: list[dict] = []
    for role, text in turns:
        if not text.strip():
            continue
        if msgs and msgs[-1]["role"] == role:
            msgs[-1]["content"] += "\n\n" + text.strip()
        else:
            msgs.append({"role": role, "content": text.strip()})
    return msgs or [{"role": "user", "content": prompt.strip()}]


def split_dialogue(chosen: str, rejected: str) -> tuple[str, str, str]:
    """HH-RLHF stores whole transcripts: the prompt is the shared text up to the last 'Assistant:'."""
    marker = "\n\nAssistant:"
    cut = chosen.rfind(marker) + len(marker)
    prompt = chosen[:cut]
    if not rejected.startswith(prompt):
        cut = rejected.rfind(marker) + len(marker)
    return prompt, chosen[len(prompt):].strip(), rejected[cut:].strip()


def _preferences(raw: pd.DataFrame, name: str) -> pd.DataFrame:
    if not {"chosen", "rejected"} <= set(raw.columns):
        raise AssetUnavailable(f"data '{name}': preference data needs 'chosen' and 'rejected' columns; has {list(raw.columns)}")
    if "prompt" in raw.columns:
        return raw[["prompt", "chosen", "rejected"]].astype(str).reset_index(drop=True)
    triples = [split_dialogue(c, r) for c, r in zip(raw["chosen"], raw["rejected"])]
    return pd.DataFrame(triples, columns=["prompt", "chosen", "rejected"])


def prepare(spec: dict, name: str, seed: int = 0) -> tuple[pd.DataFrame, dict]:
    """(table, metadata) for data set `name` as configured in `spec`."""
    kind = spec["kind"]
    if spec["source"] == "hub":
        raw, path = _read_hub(spec, name), None
    else:
        path = source_path(spec, name)
        raw = None if kind in ("lexicon", "word_pairs", *FOLDER_KINDS) else _read_file(path, spec.get("format", "auto"))
    extra = {}
    if kind == "texts":
        df, n_stripped = _texts(raw, spec, name, seed)
        extra = {"markup_stripped": True, "n_markup_stripped": n_stripped}
    elif kind == "lexicon":
        df = _lexicon(path) if path else raw.rename(columns={"word": "token"})
    elif kind == "word_pairs":
        df = _word_pairs(path) if path else raw
    elif kind == "categories":
        if path is None:
            raise AssetUnavailable(f"data '{name}': categories are read from a WordNet folder (source local or package)")
        df = wordnet.lexname_table(path, spec["pos"])
        extra = {"labels": wordnet.RULE.format(order=", ".join(spec["pos"])), "wordnet": wordnet.wordnet_version(path)}
    else:
        df = _preferences(raw, name)
    missing = [c for c in KIND_COLUMNS[kind] if c not in df.columns]
    if missing or df.empty:
        raise AssetUnavailable(f"data '{name}': prepared table is empty or lacks {missing} (source {spec})")
    meta = {
        "name": name,
        "kind": kind,
        "source": spec,
        "synthetic": bool(spec.get("synthetic", False)),
        "substitute_for": spec.get("substitute_for"),
        "n_rows": len(df),
        "seed": seed,
        **extra,
    }
    return df, meta
