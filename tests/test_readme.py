"""The README's Python snippets run as written, in order, in one namespace."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import matplotlib.pyplot as plt

README = Path(__file__).resolve().parents[1] / "README.md"


#: Smaller sizes, patched into the snippets so that the test stays short (as written the tour takes
#: about 10 min on a loaded 2-core machine, most of it the learned-F fit). Each must match the README.
PATCHES = {
    "T=100": "T=20",  # the tour's generated paths: 20 bins instead of 100
    "R=200": "R=40",  # 40 trials instead of 200
    "state_ar=1.0)": "state_ar=1.0, max_iter=3)",  # the learned-F fit: 3 iterations
    "n_samples=1000": "n_samples=100",
}


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.M | re.S)


def test_readme_python_snippets_run(tmp_path, monkeypatch):
    blocks = _python_blocks(README.read_text(encoding="utf-8"))
    assert len(blocks) >= 4, "the README should hold its Python examples"
    source = "\n".join(blocks)
    for old, new in PATCHES.items():
        assert old in source, f"the README no longer contains {old!r}; update PATCHES"
        blocks = [b.replace(old, new) for b in blocks]
    monkeypatch.chdir(tmp_path)  # result.save("fit.npz") and friends write here
    namespace: dict = {"__name__": "readme"}
    with warnings.catch_warnings():
        # the snippets' own warnings (a FitWarning the tour mentions, DataWarnings of binning) are part of the story
        warnings.simplefilter("ignore")
        for k, block in enumerate(blocks):
            try:
                exec(compile(block, f"README.md python block {k}", "exec"), namespace)
            except Exception as exc:  # name the block that failed
                raise AssertionError(f"README python block {k} failed: {exc!r}\n{block}") from exc
    plt.close("all")
    assert namespace["data"].spikes.shape == (100, 40, 4)
