"""Every tutorial notebook runs top to bottom in a fresh kernel, in smoke mode (CI=true).

The notebooks are executed with nbclient in memory (the committed files are not touched), with the
repository root on PYTHONPATH so they also run from a checkout without ``pip install``. Run times are
printed (``pytest -s``) and recorded as the test property ``seconds``; they are measured, not asserted.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "tutorials").glob("*.ipynb"))


def test_tutorials_present():
    names = {p.name for p in NOTEBOOKS}
    assert {"01_ising_model.ipynb", "02_time_varying.ipynb"} <= names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_with_outputs(path):
    """The committed notebook was executed top to bottom, so it renders with its outputs and figures."""
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, "no code cells"
    counts = [c.get("execution_count") for c in code]
    assert all(n is not None for n in counts), "some code cells were not executed"
    assert counts == sorted(counts), "cells were not executed in order"
    errors = [o for c in code for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, f"committed outputs hold an error: {errors[0].get('ename')}"
    if any("plt." in c.source or "plotting." in c.source for c in code):
        images = [o for c in code for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
        assert images, "the notebook draws figures but none were saved"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_in_smoke_mode(path, monkeypatch, record_property):
    monkeypatch.setenv("CI", "true")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    start = time.perf_counter()
    client.execute()  # raises CellExecutionError, with the cell and traceback, if a cell fails
    seconds = time.perf_counter() - start
    record_property("seconds", round(seconds, 1))
    print(f"{path.name}: {seconds:.1f} s in smoke mode")
