"""The one device rule of torch_ising: the Python API's ``device=`` and the command's ``fit.device``."""

from __future__ import annotations

import torch

__all__ = ["resolve_device", "CONFIG_DEVICES"]

#: The device names a config setting (``fit.device``) may take.
CONFIG_DEVICES = ("auto", "cpu", "cuda")


def resolve_device(
    device: torch.device | str | None,
    fallback: torch.device | str | None = None,
    *,
    option: str | None = None,
) -> torch.device:
    """The device a computation runs on.

    ``None`` is ``fallback`` (the CPU when that is None too); ``"auto"`` is CUDA when torch sees a
    CUDA GPU, else the CPU; anything else is ``torch.device(device)``, which must not be a CUDA device
    on a machine without one (no silent fall-back to the CPU).

    Args:
        device: None, "auto", or a device torch accepts ("cpu", "cuda", "cuda:1", a torch.device).
        fallback: the device for ``device=None``, e.g. that of the data.
        option: the name of the setting ``device`` was read from, for the error messages: None for
            the ``device=`` argument of the Python API, or a config key such as ``"fit.device"``, whose
            value must then be one of :data:`CONFIG_DEVICES`.

    Returns:
        the device.

    Raises:
        ValueError: for a CUDA device on a machine without a usable CUDA GPU, or (``option`` given) a
            name outside :data:`CONFIG_DEVICES`.
    """
    if option is not None and device not in CONFIG_DEVICES:
        raise ValueError(f"{option} must be {', '.join(CONFIG_DEVICES[:-1])} or {CONFIG_DEVICES[-1]}; got {device!r}")
    if device is None:
        return torch.device("cpu" if fallback is None else fallback)
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        if option is None:
            raise ValueError("device='cuda' was requested but no CUDA GPU is available; use device='cpu' or 'auto'")
        raise ValueError(
            f"{option}={device} but no CUDA GPU is available to torch (torch.cuda.is_available() is False); "
            f"use {option}=auto or {option}=cpu"
        )
    return dev
