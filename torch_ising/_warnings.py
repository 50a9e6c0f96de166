"""Point a library warning at the user's line, however deep inside torch_ising it is raised."""

from __future__ import annotations

import os
import sys

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def user_stacklevel() -> int:
    """The ``stacklevel`` for :func:`warnings.warn` that names the first frame outside torch_ising.

    Call it from the function that calls ``warnings.warn``: level 1 is that function, and every
    enclosing torch_ising frame (``fit``, the compat facade, the experiment runner) adds one.
    """
    level = 1
    frame = sys._getframe(1)
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE_DIR + os.sep):
        frame = frame.f_back
        level += 1
    return level
