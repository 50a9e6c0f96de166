"""Test configuration: float64 everywhere, device from TORCH_ISING_TEST_DEVICE.

``TORCH_ISING_TEST_DEVICE=cuda pytest`` reruns the suite on a GPU; tests
marked ``cuda`` skip cleanly on machines without one.
"""

from __future__ import annotations

import os

import matplotlib
import pytest
import torch

matplotlib.use("Agg")
torch.set_default_dtype(torch.float64)

DEVICE = os.environ.get("TORCH_ISING_TEST_DEVICE", "cpu")


def pytest_collection_modifyitems(config, items):
    if not torch.cuda.is_available():
        skip = pytest.mark.skip(reason="needs a CUDA device")
        for item in items:
            if "cuda" in item.keywords:
                item.add_marker(skip)


@pytest.fixture
def device() -> torch.device:
    if DEVICE.startswith("cuda") and not torch.cuda.is_available():
        pytest.skip("TORCH_ISING_TEST_DEVICE=cuda but no CUDA device")
    return torch.device(DEVICE)
