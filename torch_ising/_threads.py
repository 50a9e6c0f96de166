"""Thread control for small problems.

Small dense linear algebra (a 10 x 10 Cholesky) run through a multi-threaded
BLAS/LAPACK can be thousands of times slower than single-threaded when the
machine is busy, because every call waits for its worker threads to be
scheduled. Small problems therefore run single-threaded; large ones keep
torch's default.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

#: Problems with 2^N * batch below this many patterns run single-threaded.
SMALL_WORK = 2**17


@contextlib.contextmanager
def threads_for(n_patterns: int, D: int, device: torch.device | str = "cpu") -> Iterator[None]:
    """Run single-threaded on the CPU when the per-step work is small."""
    small = torch.device(device).type == "cpu" and n_patterns <= SMALL_WORK and D <= 256
    if not small:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(old)
