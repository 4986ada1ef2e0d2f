"""lnn.threads: the one place that chooses torch's thread count (no timing here; see benchmarks/ and Timings)."""

from __future__ import annotations

import pytest
import torch

import lnn.threads as threads


def test_book_threads_default_and_environment(monkeypatch):
    monkeypatch.delenv("LNN_NUM_THREADS", raising=False)
    assert threads.book_threads() == 1
    monkeypatch.setenv("LNN_NUM_THREADS", "2")
    assert threads.book_threads() == 2
    monkeypatch.setenv("LNN_NUM_THREADS", "two")
    with pytest.raises(ValueError, match="LNN_NUM_THREADS must be a positive integer or 'auto'"):
        threads.book_threads()
    monkeypatch.setenv("LNN_NUM_THREADS", "0")
    with pytest.raises(ValueError, match="LNN_NUM_THREADS"):
        threads.book_threads()


def test_use_book_threads_and_limit_threads_restore(monkeypatch):
    monkeypatch.delenv("LNN_NUM_THREADS", raising=False)
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert threads.use_book_threads() == 1 and torch.get_num_threads() == 1
        with threads.limit_threads(2):
            assert torch.get_num_threads() == 2
        assert torch.get_num_threads() == 1
        with threads.limit_threads(None):
            assert torch.get_num_threads() == 1
        with pytest.raises(ValueError, match="num_threads must be a positive integer"):
            with threads.limit_threads(0):
                pass
        with pytest.raises(RuntimeError):
            with threads.limit_threads(2):
                raise RuntimeError("inside")
        assert torch.get_num_threads() == 1  # restored after an exception too
    finally:
        torch.set_num_threads(old)
