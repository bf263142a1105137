"""A local stand-in of the Hugging Face Hub for rehearsing config/paper.yaml offline.

What it builds (see ../shared/docs/hub-rehearsal.md for the real hub facts it mirrors):
- a hub cache (`HF_HUB_CACHE`, to be used with `HF_HUB_OFFLINE=1`) holding, under paper.yaml's own
  model ids and revisions, randomly initialised models of the real architecture classes, layer
  counts, head counts and module names (GPTNeoXForCausalLM for every Pythia size and `stepN`
  revision, GPTNeoForCausalLM with alternating global/local attention, GemmaForCausalLM with one KV
  head), shrunk in width only, saved in the hub's dtype (Pythia fp16, Gemma bf16);
- tokenizers like the real ones where it matters to the code: Pythia / GPT-Neo get a byte-level BPE
  with `<|endoftext|>` as bos = eos, no pad token and no chat template; Gemma gets `<bos>`/`<eos>`/
  `<pad>` and a chat template that, like Gemma's, rejects a system message and raises unless roles
  alternate user/assistant. Gemma's stand-in vocabulary is a small word list (the corpus' concept
  words): with random weights a byte-level vocabulary never writes a sentence that uses a given
  word, and the generation stage then (rightly) stops the run;
- dataset repos in the hub's layouts and schemas, as local folders under the hub id (which
  `datasets.load_dataset(id)` reads before the hub): stanfordnlp/imdb (parquet, ClassLabel neg/pos,
  train/test sorted by label + unsupervised with label -1, `<br /><br />` markup),
  Anthropic/hh-rlhf (subfolders of train/test.jsonl.gz with whole multi-turn transcripts, some
  with an empty last answer or a transcript that diverges before the last turn; red-team-attempts
  with other columns and no split files), unalignment/toxic-dpo-v0.2 (prompt/chosen/rejected/id);
  and the MEN file at the local path paper.yaml names, in its natural-form format.
The texts are sentences over word-similarity words (SimLex-999 and WordSim-353 as gensim ships
them) so ExpertLens finds concepts with pairs in every human-judgment set.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json
import random
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

# --- the models paper.yaml names: real facts, widths shrunk ------------------------------------
# (id, architecture, layers, heads, shrunk head width, hub dtype). Head widths of 8 keep rotary's
# 25% of a Pythia head at 2 dims (it needs an even count).
PYTHIA = {"EleutherAI/pythia-70m": 6, "EleutherAI/pythia-160m": 12, "EleutherAI/pythia-1b": 16,
          "EleutherAI/pythia-12b": 36}
PYTHIA_HEADS = {"EleutherAI/pythia-70m": 8, "EleutherAI/pythia-160m": 12, "EleutherAI/pythia-1b": 8,
                "EleutherAI/pythia-12b": 40}
HEAD_WIDTH = 8
EOT = "<|endoftext|>"

# Gemma's template, in its observable behaviour: BOS first, no system role, strict alternation,
# `model` for the assistant's turns.
GEMMA_TEMPLATE = (
    "{{ bos_token }}"
    "{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
    "{% for message in messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)

FILLER = ("the a this that my his her our and but with was is very quite really old new good bad big "
          "small great little near far from in on at by for about after before saw liked found made "
          "took gave felt said kept had").split()


# --- words and texts ------------------------------------------------------------------------------
def similarity_words(n: int = 16) -> list[str]:
    """n words with many pairs among themselves in both SimLex-999 and WordSim-353 (the gensim
    copies), chosen greedily, so the rehearsal's concepts have human pairs to be scored on."""
    root = Path(importlib.util.find_spec("gensim").submodule_search_locations[0]) / "test" / "test_data"
    adj: list[dict[str, set[str]]] = []  # per set: word -> its partners
    for name, skip in (("simlex999.txt", 1), ("wordsim353.tsv", 0)):
        adj.append({})
        for line in (root / name).read_text().splitlines()[skip:]:
            a, b, *_ = [w.lower() for w in line.split("\t")] + ["", ""]
            if not line.startswith("#") and a.isalpha() and b.isalpha() and a != b:
                adj[-1].setdefault(a, set()).add(b)
                adj[-1].setdefault(b, set()).add(a)
    words = sorted(set(adj[0]) | set(adj[1]))
    chosen: set[str] = set()
    order: list[str] = []
    while len(order) < n:  # the word that closes the most pairs with those chosen, in both sets
        def gain(w):
            closed = [len(g.get(w, set()) & chosen) for g in adj]
            return min(closed), sum(closed), sum(len(g.get(w, ())) for g in adj), w
        best = max((w for w in words if w not in chosen), key=gain)
        chosen.add(best)
        order.append(best)
    return order


def sentence(rng: random.Random, words: list[str]) -> str:
    """One plain sentence using one or two of `words`, 5-12 words long."""
    picks = rng.sample(words, rng.choice((1, 2)))
    body = rng.sample(FILLER, rng.randint(3, 8)) + picks
    rng.shuffle(body)
    return " ".join(body).capitalize() + rng.choice(".....!?")


def review(rng: random.Random, words: list[str]) -> str:
    """An IMDB-like review: sentences, some paragraphs joined by the site's <br /> markup."""
    parts = [" ".join(sentence(rng, words) for _ in range(rng.randint(2, 4))) for _ in range(rng.randint(1, 3))]
    return "<br /><br />".join(parts)


def hh_transcript(rng: random.Random, words: list[str], turns: int, last_answer: str) -> str:
    """A whole HH-RLHF transcript: alternating Human/Assistant turns, the last answer given."""
    text = ""
    for t in range(turns):
        text += "\n\nHuman: " + " ".join(sentence(rng, words) for _ in range(rng.randint(1, 6)))
        answer = last_answer if t == turns - 1 else " ".join(sentence(rng, words) for _ in range(rng.randint(1, 8)))
        text += "\n\nAssistant:" + (" " + answer if answer else "")
    return text


# --- tokenizers -------------------------------------------------------------------------------
def bpe_tokenizer(corpus: list[str], vocab_size: int = 1024):
    """A byte-level BPE trained on `corpus`, Pythia/GPT-Neo style: <|endoftext|> is bos = eos = unk,
    no pad token, no chat template."""
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOT],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=EOT, eos_token=EOT, unk_token=EOT,
                                   model_max_length=2048)


def gemma_tokenizer(words: list[str]):
    """Gemma-like specials and chat template over a word-level vocabulary (see the module doc).

    Each word comes as "w", "with a w" and "and the w", and sentence ends as "." and "too." etc.
    (the longer forms are only ever sampled, never produced by encoding), so that random sampling
    writes complete sentences that use a given word often enough: with plain words ~7% of samples
    were usable and a bank got 1-2 concepts; with these forms 5-6 of 16 concepts got 2 sentences
    each (3 seeds tried), and the generation step needs at least 2.
    """
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"]
    forms = [f"\u2581{w}" for w in words] + [f"\u2581with\u2581a\u2581{w}" for w in words] + \
        [f"\u2581and\u2581the\u2581{w}" for w in words] + words  # bare: a quoted word in a prompt
    ends = [".", "!"] + [f"\u2581{w}." for w in ("too", "again", "today", "there", "now", "then", "here", "still")]
    vocab = {t: i for i, t in enumerate(specials + forms + ends + [",", "\u2581user", "\u2581model"])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Metaspace(), pre_tokenizers.Punctuation()])
    tok.decoder = decoders.Metaspace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
                                   unk_token="<unk>", additional_special_tokens=specials[4:],
                                   model_max_length=8192)
    fast.chat_template = GEMMA_TEMPLATE
    fast.add_bos_token = True
    return fast


# --- the hub cache ------------------------------------------------------------------------------
def _snapshot(cache: Path, repo_id: str, revision: str) -> Path:
    """The snapshot folder of (repo, revision), with refs/<revision> pointing at it."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    commit = hashlib.sha1(f"{repo_id}@{revision}".encode()).hexdigest()
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / revision).write_text(commit)
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True, exist_ok=True)
    return snap


def _save(model, tok, snap: Path, dtype: torch.dtype, hub_keys: dict) -> None:
    model.to(dtype).save_pretrained(snap)
    tok.save_pretrained(snap)
    cfg = json.loads((snap / "config.json").read_text())
    (snap / "config.json").write_text(json.dumps({**cfg, **hub_keys}, indent=2))


def pythia(tok, layers: int, heads: int, seed: int):
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    torch.manual_seed(seed)
    width = heads * HEAD_WIDTH
    cfg = GPTNeoXConfig(vocab_size=len(tok), hidden_size=width, intermediate_size=4 * width,
                        num_hidden_layers=layers, num_attention_heads=heads, rotary_pct=0.25,
                        use_parallel_residual=True, max_position_embeddings=2048, tie_word_embeddings=False,
                        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    return GPTNeoXForCausalLM(cfg)


def gpt_neo(tok, seed: int):
    from transformers import GPTNeoConfig, GPTNeoForCausalLM

    torch.manual_seed(seed)
    cfg = GPTNeoConfig(vocab_size=len(tok), hidden_size=12 * HEAD_WIDTH, num_layers=12, num_heads=12,
                       attention_types=[[["global", "local"], 6]], window_size=256, max_position_embeddings=2048,
                       bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    return GPTNeoForCausalLM(cfg)


def gemma(tok, seed: int):
    from transformers import GemmaConfig, GemmaForCausalLM

    torch.manual_seed(seed)
    cfg = GemmaConfig(vocab_size=len(tok), hidden_size=8 * HEAD_WIDTH, intermediate_size=32 * HEAD_WIDTH,
                      num_hidden_layers=18, num_attention_heads=8, num_key_value_heads=1, head_dim=HEAD_WIDTH,
                      hidden_act="gelu_pytorch_tanh", max_position_embeddings=8192, tie_word_embeddings=True,
                      pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id)
    return GemmaForCausalLM(cfg)


def build_models(cache: Path, config: dict, words: list[str], corpus: list[str]) -> list[str]:
    """Every (hub id, revision) that `config`'s models name, as snapshots in `cache`; returns them."""
    bpe, gem = bpe_tokenizer(corpus), gemma_tokenizer(words)
    built = []
    for i, spec in enumerate(m for m in config["models"].values() if m.get("source") == "hub"):
        repo = spec["id"]
        for j, rev in enumerate([spec.get("revision", "main"), *spec.get("checkpoints", [])]):
            seed = 1000 * i + j
            if repo in PYTHIA:
                model, tok, dtype = pythia(bpe, PYTHIA[repo], PYTHIA_HEADS[repo], seed), bpe, torch.float16
            elif repo == "EleutherAI/gpt-neo-125m":
                model, tok, dtype = gpt_neo(bpe, seed), bpe, torch.float32
            elif repo == "google/gemma-2b-it":
                model, tok, dtype = gemma(gem, seed), gem, torch.bfloat16
            else:
                raise KeyError(f"the fake hub has no stand-in for model '{repo}'")
            _save(model, tok, _snapshot(cache, repo, rev), dtype, {"torch_dtype": str(dtype).split(".")[1]})
            built.append(f"{repo}@{rev}")
    return built


# --- the data sets ------------------------------------------------------------------------------
def build_imdb(root: Path, rng: random.Random, words: list[str], n: dict[str, int]) -> list[str]:
    """stanfordnlp/imdb: parquet shards per split, README `configs:` + ClassLabel features."""
    import datasets

    repo = root / "stanfordnlp" / "imdb"
    (repo / "plain_text").mkdir(parents=True, exist_ok=True)
    features = datasets.Features({"text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["neg", "pos"])})
    texts = []
    for split, size in n.items():
        rows = [review(rng, words) for _ in range(size)]
        labels = [-1] * size if split == "unsupervised" else sorted(rng.randint(0, 1) for _ in range(size))
        texts += rows
        ds = datasets.Dataset.from_dict({"text": rows, "label": labels},
                                        features=features if split != "unsupervised" else None)
        ds.cast(features).to_parquet(repo / "plain_text" / f"{split}-00000-of-00001.parquet")
    splits = "".join(f"  - split: {s}\n    path: plain_text/{s}-*\n" for s in n)
    (repo / "README.md").write_text(
        "---\nconfigs:\n- config_name: plain_text\n  data_files:\n" + splits + "  default: true\n"
        "dataset_info:\n  config_name: plain_text\n  features:\n  - name: text\n    dtype: string\n"
        "  - name: label\n    dtype:\n      class_label:\n        names:\n          '0': neg\n          '1': pos\n"
        "---\n# IMDB (rehearsal stand-in)\n")
    return texts


def _jsonl_gz(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)


def build_hh(root: Path, rng: random.Random, words: list[str], n: dict[str, int]) -> list[str]:
    """Anthropic/hh-rlhf: whole transcripts in `chosen` / `rejected`, per subfolder and split."""
    repo, texts = root / "Anthropic" / "hh-rlhf", []
    for sub in ("helpful-base", "harmless-base", "helpful-online", "helpful-rejection-sampled"):
        for split, size in n.items():
            rows = []
            for k in range(size):
                turns = rng.choice((1, 1, 2, 3, 4))
                state = rng.getstate()
                last = "" if k % 17 == 3 else " ".join(sentence(rng, words) for _ in range(rng.randint(1, 3)))
                chosen = hh_transcript(rng, words, turns, last)
                rng.setstate(state)  # the rejected answer shares the dialogue ...
                other = " ".join(sentence(rng, words) for _ in range(rng.randint(1, 3)))
                rejected = hh_transcript(rng, words, turns, other)
                if k % 23 == 5 and turns > 1:  # ... except where the transcripts diverge earlier
                    rejected = hh_transcript(rng, words, turns, other)
                rows.append({"chosen": chosen, "rejected": rejected})
                texts += [chosen, rejected]
            _jsonl_gz(repo / sub / f"{split}.jsonl.gz", rows)
    _jsonl_gz(repo / "red-team-attempts" / "red_team_attempts.jsonl.gz",
              [{"transcript": hh_transcript(rng, words, 2, "no"), "min_harmlessness_score_transcript": 0.5,
                "num_params": "52B", "model_type": "plain lm", "rating": 1.0, "task_description": "x",
                "task_descripton_harmlessness_score": 0.1, "red_team_member_id": 1, "is_upworker": False,
                "tags": None}])
    (repo / "README.md").write_text("---\nlicense: mit\n---\n# HH-RLHF (rehearsal stand-in)\n")
    return texts


def build_toxic(root: Path, rng: random.Random, words: list[str], n: int) -> None:
    """unalignment/toxic-dpo-v0.2: one parquet file, train split, prompt/chosen/rejected/id."""
    import pandas as pd

    repo = root / "unalignment" / "toxic-dpo-v0.2"
    repo.mkdir(parents=True, exist_ok=True)
    rows = [{"prompt": sentence(rng, words)[:-1] + "?", "chosen": " ".join(sentence(rng, words) for _ in range(3)),
             "rejected": "I cannot help with that. " + sentence(rng, words), "id": f"toxic-{k}"} for k in range(n)]
    pd.DataFrame(rows).to_parquet(repo / "toxic.parquet")
    (repo / "README.md").write_text("---\nlicense: cc-by-4.0\n---\n# toxic-dpo-v0.2 (rehearsal stand-in)\n")


def build_men(path: Path, rng: random.Random, words: list[str], n: int = 300) -> None:
    """MEN_dataset_natural_form_full: `word1 word2 score` per line, scores 0-50."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pairs = {tuple(sorted(rng.sample(words, 2))) for _ in range(n)}
    path.write_text("".join(f"{a} {b} {rng.uniform(0, 50):.6f}\n" for a, b in sorted(pairs)))


def build(workdir: Path, cache: Path, config: dict, seed: int = 0, imdb: dict | None = None,
          hh: dict | None = None, toxic: int = 120) -> dict:
    """The whole stand-in: data repos under `workdir` (the run's working directory), models in
    `cache`. Returns what was built."""
    rng = random.Random(seed)
    words = similarity_words()
    texts = build_imdb(workdir, rng, words, imdb or {"train": 300, "test": 200, "unsupervised": 20})
    texts += build_hh(workdir, rng, words, hh or {"train": 60, "test": 30})
    build_toxic(workdir, rng, words, toxic)
    build_men(workdir / config["data"]["men"]["path"], rng, words)
    models_built = build_models(cache, config, words, texts)
    return {"words": words, "models": models_built}
