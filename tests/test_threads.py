"""Single-threaded work for small CPU problems, decided by the problem size alone."""

from __future__ import annotations

import os

import pytest
import torch

from torch_ising import _threads
from torch_ising._threads import SMALL_D, SMALL_WORK, threads_for


@pytest.fixture
def two_threads():
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(old)


def test_a_small_problem_runs_single_threaded_and_the_count_is_restored(two_threads):
    with threads_for(2**10, 78):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2
    with threads_for(SMALL_WORK, SMALL_D, "cpu"):  # the bounds are small
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2


def test_the_count_is_restored_when_the_block_raises(two_threads):
    with pytest.raises(RuntimeError, match="inside"), threads_for(16, 4):
        assert torch.get_num_threads() == 1
        raise RuntimeError("inside")
    assert torch.get_num_threads() == 2


@pytest.mark.parametrize("n_patterns, D", [(SMALL_WORK + 1, 10), (10, SMALL_D + 1), (2**24, 300)])
def test_a_large_problem_keeps_the_thread_count(two_threads, n_patterns, D):
    with threads_for(n_patterns, D):
        assert torch.get_num_threads() == 2
    assert torch.get_num_threads() == 2


@pytest.mark.parametrize("device", ["cuda", "meta", torch.device("cuda", 0)], ids=["gpu", "meta", "gpu0"])
def test_a_small_problem_off_the_cpu_keeps_the_thread_count(two_threads, device):
    with threads_for(16, 4, device):
        assert torch.get_num_threads() == 2


@pytest.mark.parametrize("load", [0.0, 100.0])
def test_the_machine_load_does_not_decide(two_threads, monkeypatch, load):
    monkeypatch.setattr(os, "getloadavg", lambda: (load, load, load))
    with threads_for(2**24, 300):  # large: torch's count, however loaded the machine
        assert torch.get_num_threads() == 2
    with threads_for(16, 4):  # small: one thread, however idle the machine
        assert torch.get_num_threads() == 1
    assert not hasattr(_threads, "busy")
