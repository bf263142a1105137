"""Determinism: two runs of the tiny config with the same seed give identical result tables on
CPU (conftest.py's two runs; the second was interrupted and resumed, which must not matter either),
and every Parquet output records the seed in its metadata."""

import math

import pyarrow as pa
import pytest
import yaml

from lensflow.core.io import read_metadata, with_metadata
from run_checks import content_hashes, result_files, table_digest

pytestmark = pytest.mark.slow


def test_digest_sees_any_change_of_content_but_not_metadata():
    t = pa.table({"x": [1.0, 2.0], "v": [[1.0, 2.0], [3.0]], "s": ["a", "b"]})
    d = table_digest(t)
    assert table_digest(with_metadata(t, {"seconds": 12.3})) == d
    assert table_digest(t.set_column(0, "x", pa.array([1.0, math.nextafter(2.0, 3.0)]))) != d
    assert table_digest(t.set_column(1, "v", pa.array([[1.0, 2.0], [3.5]]))) != d
    assert table_digest(t.set_column(1, "v", pa.array([[1.0], [2.0, 3.0]]))) != d
    assert table_digest(t.set_column(2, "s", pa.array(["a", "c"]))) != d


def test_same_seed_same_results(clean_run, resumed_run):
    a, b = content_hashes(clean_run.results), content_hashes(resumed_run.results)
    kinds = {k.rsplit(".", 1)[-1] for k in a}
    assert {"parquet", "csv", "md", "tsv", "safetensors"} <= kinds and len(a) > 60, sorted(a)
    assert sorted(a) == sorted(b)
    assert [k for k in a if a[k] != b[k]] == []


def test_seed_in_every_parquet_output(clean_run):
    seed = yaml.safe_load(clean_run.config.read_text())["seed"]
    parquets = result_files(clean_run.results, suffixes=(".parquet",))
    assert len(parquets) > 40
    missing = [str(p) for p in parquets if read_metadata(p).get("seed") != seed]
    assert missing == []
