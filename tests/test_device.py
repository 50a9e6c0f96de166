"""One device rule for the Python API's ``device=`` and the command's ``fit.device``."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import torch_ising as ti
from torch_ising._device import CONFIG_DEVICES, resolve_device

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture
def a_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)


def test_none_is_the_fallback():
    assert resolve_device(None, torch.device("meta")) == torch.device("meta")
    assert resolve_device(None) == torch.device("cpu")


def test_explicit_devices_are_kept():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu"), torch.device("meta")) == torch.device("cpu")
    assert resolve_device("cpu", option="fit.device") == torch.device("cpu")


def test_auto_is_cuda_only_with_a_gpu(no_gpu):
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("auto", option="fit.device") == torch.device("cpu")


def test_auto_and_cuda_with_a_gpu(a_gpu):
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cuda", option="fit.device") == torch.device("cuda")
    assert resolve_device("cuda:1") == torch.device("cuda", 1)


@pytest.mark.parametrize("device", ["cuda", "cuda:0", torch.device("cuda")], ids=["name", "index", "device"])
def test_cuda_without_a_gpu_is_refused(no_gpu, device):
    with pytest.raises(ValueError, match=r"^device='cuda' was requested but no CUDA GPU is available"):
        resolve_device(device, torch.device("cpu"))


def test_the_command_names_its_setting(no_gpu):
    with pytest.raises(ValueError) as info:
        resolve_device("cuda", option="fit.device")
    # the message the command's documentation shows
    assert str(info.value) in (REPO / "docs" / "experiments.md").read_text(encoding="utf-8")
    for bad in ("gpu", "cuda:0", None):
        with pytest.raises(ValueError, match=r"fit.device must be auto, cpu or cuda; got "):
            resolve_device(bad, option="fit.device")
    assert CONFIG_DEVICES == ("auto", "cpu", "cuda")


def test_fit_and_the_command_use_the_same_rule(no_gpu):
    from torch_ising.statespace import inputs

    assert inputs.resolve_device is resolve_device  # fit's data preparation
    spikes = torch.zeros(4, 3, 2, dtype=torch.uint8)
    with pytest.raises(ValueError, match="no CUDA GPU is available"):
        ti.fit(spikes, 1, device="cuda", progress=False)
    pytest.importorskip("hydra")
    from torch_ising.experiment import cli, schemas

    assert cli.resolve_device is resolve_device
    fit_cfg = schemas.FitConfig(device="cuda")
    with pytest.raises(ValueError, match=r"^fit.device=cuda but no CUDA GPU"):
        cli.fit_kwargs(fit_cfg, schemas.ModelConfig(order=2), N=4)
    kwargs = cli.fit_kwargs(schemas.FitConfig(device="auto"), schemas.ModelConfig(order=2), N=4)
    assert kwargs["device"] == torch.device("cpu")
