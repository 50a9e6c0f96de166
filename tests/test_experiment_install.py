"""The built wheel carries the configs, and torch-ising runs from it outside the checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytest.importorskip("hydra")

REPO = Path(__file__).resolve().parents[1]


def build_and_run(src: Path, tmp: Path) -> None:
    """Build a wheel from ``src`` (a copy of the checkout), unpack it, and run the command from elsewhere."""
    copy = tmp / "src"
    copy.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build", "dist")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (src / name).exists():
            shutil.copy2(src / name, copy / name)
    for name in ("torch_ising", "configs"):
        shutil.copytree(src / name, copy / name, ignore=ignore)
    if not (copy / "README.md").exists():
        (copy / "README.md").write_text("torch_ising\n")
    dist = tmp / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(copy), "--no-deps", "--no-build-isolation", "-q", "-w", str(dist)],
        check=True,
        capture_output=True,
        text=True,
    )
    (wheel,) = dist.glob("torch_ising-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    configs = sorted(p.relative_to(src / "configs").as_posix() for p in (src / "configs").rglob("*.yaml"))
    missing = [c for c in configs if f"torch_ising/conf/{c}" not in names]
    assert not missing, f"the wheel lacks these configs (as torch_ising/conf/...): {missing}"
    packages = sorted(p.parent.relative_to(src).as_posix() for p in (src / "torch_ising").rglob("__init__.py"))
    assert all(f"{pkg}/__init__.py" in names for pkg in packages), "the wheel lacks a subpackage"

    site = tmp / "site"
    zipfile.ZipFile(wheel).extractall(site)
    elsewhere = tmp / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TORCH_ISING_CONFIG_DIR")}
    env["PYTHONPATH"] = str(site)
    env["MPLBACKEND"] = "Agg"
    args = ["data.N=3", "data.T=10", "data.R=20", "fit.max_iter=2", "output.figures=[mll]", "hydra.run.dir=out"]
    code = (
        "import sys; from torch_ising.experiment import cli; print('CONFIG_DIR', cli.CONFIG_DIR); "
        "sys.argv = ['torch-ising', *sys.argv[1:]]; cli.main()"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert f"CONFIG_DIR {site / 'torch_ising' / 'conf'}" in proc.stdout
    assert (elsewhere / "out" / "results.npz").is_file() and (elsewhere / "out" / "figures" / "mll.png").is_file()


def test_wheel_contains_the_configs_and_runs_outside_the_checkout(tmp_path):
    build_and_run(REPO, tmp_path)
