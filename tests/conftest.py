"""Make `lensflow` importable whether or not it is pip-installed (it lives in workflow/).

Tests never use the network: the hub is switched off before anything imports huggingface_hub,
so a test of an unavailable hub model fails fast instead of retrying for a minute.
"""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))
# The helpers every test folder shares (tiny models, running the workflow, result checks).
sys.path.insert(0, str(ROOT / "tests" / "support"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# Fixtures shared by several test files (the figure spy of the plotting tests).
pytest_plugins = ["figure_spy"]
