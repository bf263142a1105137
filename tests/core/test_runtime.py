"""pick_device: CUDA only for a job with a GPU where CUDA exists, and one log line saying which."""

from __future__ import annotations

import logging

import torch

from lensflow.core.runtime import pick_device


def test_cpu_job_logs_its_device(caplog):
    with caplog.at_level(logging.INFO, logger="lensflow"):
        assert pick_device(0, threads=1) == torch.device("cpu")
    assert "device: cpu (job gpu=0, threads=1, cuda available=" in caplog.text


def test_gpu_job_without_cuda_says_cpu(caplog, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with caplog.at_level(logging.INFO, logger="lensflow"):
        assert pick_device(1) == torch.device("cpu")
    assert "device: cpu (job gpu=1, threads=" in caplog.text and "cuda available=False" in caplog.text


def test_gpu_job_with_cuda_says_cuda(caplog, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with caplog.at_level(logging.INFO, logger="lensflow"):
        assert pick_device(1) == torch.device("cuda")
    assert "device: cuda (job gpu=1" in caplog.text


def test_job_logs_keep_libraries_chatter_out(tmp_path):
    """matplotlib's PDF backend runs fontTools' subsetter, whose INFO lines (hundreds per figure)
    buried each figure job's own log lines."""
    from lensflow.core.runtime import setup_logging

    path = tmp_path / "job.log"
    setup_logging(str(path)).info("ours")
    logging.getLogger("fontTools.subset").info("Glyph names: ...")
    logging.getLogger("fontTools.subset").warning("a real problem")
    text = path.read_text()
    assert "ours" in text and "a real problem" in text and "Glyph names" not in text

