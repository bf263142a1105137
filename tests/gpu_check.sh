#!/usr/bin/env bash
# The GPU check (issue 12, item 4) as one command on the GPU machine, from the repository root:
#     bash tests/gpu_wheels.sh                 # here first: fills .whl with what the machine lacks
#     device run: command "bash tests/gpu_check.sh", carry [".whl"], timeout_s 540
# Installs the carried wheels (if there is a .whl folder) the way /work/.library/device/README.md
# says, then runs tests/gpu_check.py, killed at 480 s (its own budget is 420 s). Results go to $OUT
# (else ./gpu_check_out); extra arguments go to gpu_check.py. Exit status: gpu_check.py's (124: killed).
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD/workflow
if [ -d .whl ]; then
  python3 -c "import lzma" || { echo "gpu_check.sh: this python cannot read LZMA wheels (see tests/gpu_wheels.sh)" >&2; exit 1; }
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD/workflow || exit
fi
PYTHONUNBUFFERED=1 timeout 480 python3 tests/gpu_check.py "$@"
