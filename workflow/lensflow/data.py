"""The data registry: read a configured source and prepare it as a tidy Parquet table.

Kinds (config `data.<name>.kind`) and the columns their tables have:
  texts        text_id, text[, label]            corpora (reviews, news, sentences)
  lexicon      token, value[, std]               the VADER lexicon
  word_pairs   word_a, word_b, score             human similarity judgments (SimLex, WordSim, MEN)
  preferences  prompt, chosen, rejected          DPO pairs (HH-RLHF, toxic-dpo)
Sources: `hub` (datasets.load_dataset), `local` (a file), `package` (a file inside a pip package).
Substitute or synthetic data say so in the table's metadata (`substitute_for`, `synthetic`).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .assets import AssetUnavailable, package_file

KIND_COLUMNS = {
    "texts": ["text_id", "text"],
    "lexicon": ["token", "value"],
    "word_pairs": ["word_a", "word_b", "score"],
    "preferences": ["prompt", "chosen", "rejected"],
}


def source_path(spec: dict, name: str) -> Path:
    """The file behind a `local` or `package` source; a clear error naming what is missing."""
    if spec["source"] == "package":
        return package_file(spec["package"], spec["path"], f"data '{name}'")
    path = Path(spec["path"])
    if not path.is_file():
        raise AssetUnavailable(f"data '{name}': local file '{path}' does not exist")
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


def _texts(raw: pd.DataFrame, spec: dict, name: str, seed: int) -> pd.DataFrame:
    col = spec.get("text_column", "text")
    if col not in raw.columns:
        raise AssetUnavailable(f"data '{name}': no text column '{col}' (key data.{name}.text_column); has {list(raw.columns)}")
    df = pd.DataFrame({"text_id": range(len(raw)), "text": raw[col].astype("string").str.strip()})
    if spec.get("label_column"):
        df["label"] = raw[spec["label_column"]].astype("string").values
        if spec.get("keep_labels"):
            df = df[df["label"].isin(spec["keep_labels"])]
    df = df[df["text"].notna() & (df["text"].str.len() >= spec.get("min_chars", 1))]
    if spec.get("max_rows") and len(df) > spec["max_rows"]:
        df = df.sample(n=spec["max_rows"], random_state=seed).sort_values("text_id")
    return df.reset_index(drop=True)


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
        raw = None if kind in ("lexicon", "word_pairs") else _read_file(path, spec.get("format", "auto"))
    if kind == "texts":
        df = _texts(raw, spec, name, seed)
    elif kind == "lexicon":
        df = _lexicon(path) if path else raw.rename(columns={"word": "token"})
    elif kind == "word_pairs":
        df = _word_pairs(path) if path else raw
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
    }
    return df, meta
