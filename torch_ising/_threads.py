"""Thread control for small problems.

Small dense linear algebra (a 10 x 10 Cholesky) run through a multi-threaded
BLAS/LAPACK can be much slower than single-threaded, because every call waits
for its worker threads to be scheduled; the transforms at N = 20 were 7x slower
with 2 threads than with 1 on a 2-core machine with a load of 5. Small problems
on the CPU therefore run single-threaded; large ones keep torch's thread count.

The decision depends on the problem size alone, never on the machine's load or
on anything else outside the call, so that a run does the same arithmetic
whatever else runs beside it. On a shared machine, set the thread count for the
whole process yourself (``OMP_NUM_THREADS=1`` or :func:`torch.set_num_threads`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

#: Problems with at most this many patterns (2^N * batch, or the samples of an approximation) are small.
SMALL_WORK = 2**17
#: ... and with at most this many parameters D.
SMALL_D = 256


def is_small(n_patterns: int, D: int) -> bool:
    """True when a problem of ``n_patterns`` patterns and ``D`` parameters runs single-threaded on the CPU.

    Args:
        n_patterns: the patterns (or samples) one step works on, batch included.
        D: the number of natural parameters.

    Returns:
        ``n_patterns <= SMALL_WORK and D <= SMALL_D``.
    """
    return n_patterns <= SMALL_WORK and D <= SMALL_D


@contextlib.contextmanager
def threads_for(n_patterns: int, D: int, device: torch.device | str = "cpu") -> Iterator[None]:
    """Run single-threaded on the CPU when the per-step work is small.

    On a CPU ``device`` and a small problem (:func:`is_small`: ``n_patterns <= SMALL_WORK`` and
    ``D <= SMALL_D``), torch's intra-op thread count is 1 inside the context and is restored to its
    previous value on exit, however the block ends. Otherwise (a large problem, or a non-CPU device)
    the thread count is left as it is. Nothing but the two sizes and the device type decides.

    Args:
        n_patterns: the patterns (or samples) one step works on, batch included.
        D: the number of natural parameters.
        device: the device the work runs on.

    Yields:
        None.
    """
    if torch.device(device).type != "cpu" or not is_small(n_patterns, D):
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(old)
