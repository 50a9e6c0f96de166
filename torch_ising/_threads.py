"""Thread control for small problems.

Small dense linear algebra (a 10 x 10 Cholesky) run through a multi-threaded
BLAS/LAPACK can be thousands of times slower than single-threaded when the
machine is busy, because every call waits for its worker threads to be
scheduled; the transforms at N = 20 were 7x slower with 2 threads than with 1
on a 2-core machine with a load of 5. Small problems, and every problem on a
machine whose load already fills its cores, therefore run single-threaded;
large ones on an idle machine keep torch's default.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

#: Problems with 2^N * batch below this many patterns run single-threaded.
SMALL_WORK = 2**17


@contextlib.contextmanager
def threads_for(n_patterns: int, D: int, device: torch.device | str = "cpu") -> Iterator[None]:
    """Run single-threaded on the CPU when the per-step work is small."""
    on_cpu = torch.device(device).type == "cpu"
    small = n_patterns <= SMALL_WORK and D <= 256
    if not on_cpu or not (small or busy()):
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def busy() -> bool:
    """True when the 1-minute load average already fills the cores torch would use."""
    try:
        load = os.getloadavg()[0]
    except (OSError, AttributeError):
        return False
    return load >= torch.get_num_threads() - 0.5
