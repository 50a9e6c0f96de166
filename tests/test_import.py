"""Nothing changes at import: importing torch_ising and the command's module leaves the process as it was."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# The state is read before and after importing torch_ising (the third-party modules it imports are imported
# first, so that only torch_ising's own import is measured).
_PROBE = """
import json, os, sys, warnings
import numpy, torch
from hydra import version
import hydra, omegaconf

def state():
    return {
        "filters": [repr(f) for f in warnings.filters],
        "environ": dict(os.environ),
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "default_dtype": str(torch.get_default_dtype()),
        "hydra_version_base": repr(version.getbase()),
        "umask": os.umask(0o022),
    }

before = state()
os.umask(int(before["umask"]))
import torch_ising
import torch_ising.experiment.cli
after = state()
print(json.dumps({"before": before, "after": after}))
"""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def test_importing_the_package_and_the_command_changes_no_process_state():
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, cwd=REPO, env=_env(), timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    before, after = out["before"], out["after"]
    assert after["filters"] == before["filters"]
    assert after["environ"] == before["environ"]
    assert after["threads"] == before["threads"]
    assert after == before


def test_the_command_state_is_restored_after_a_run(monkeypatch):
    pytest.importorskip("hydra")
    from torch_ising.experiment import cli

    monkeypatch.delenv("MPLBACKEND", raising=False)
    monkeypatch.delenv("TORCH_ISING_DEBUG", raising=False)
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")  # the user asks for tracebacks
    filters, environ = list(warnings.filters), dict(os.environ)
    with cli._command_state():
        assert os.environ["MPLBACKEND"] == "Agg" and os.environ["TORCH_ISING_DEBUG"] == "1"
        assert cli._debug()
        ignored = [f[1].pattern for f in warnings.filters if f[0] == "ignore" and f[1] is not None]
        assert any("ConfigStore schema" in pattern for pattern in ignored)
    assert list(warnings.filters) == filters and dict(os.environ) == environ

    monkeypatch.delenv("HYDRA_FULL_ERROR")
    environ = dict(os.environ)
    with cli._command_state():
        assert os.environ["HYDRA_FULL_ERROR"] == "1"  # for Hydra, which then re-raises errors
        assert not cli._debug()  # the user did not ask: errors are reported on one line
    assert dict(os.environ) == environ


def test_a_launcher_worker_that_unpickles_the_task_ignores_the_schema_warning():
    pytest.importorskip("hydra")
    from torch_ising.experiment import cli

    payload = pickle.dumps(cli._JobTask())
    code = (
        "import pickle, sys, warnings\n"
        "import torch_ising.experiment.cli\n"
        "n = len(warnings.filters)\n"
        "task = pickle.loads(sys.stdin.buffer.read())\n"
        "print(len(warnings.filters) - n, callable(task))\n"
        "warnings.warn(\"\\n'hydra/launcher/joblib' is validated against ConfigStore schema with the same name.\")\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], input=payload, capture_output=True, cwd=REPO, env=_env(), timeout=300
    )
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    assert proc.stdout.decode().split() == ["1", "True"]
    assert b"ConfigStore" not in proc.stderr


def _part(module: str) -> str:
    """The part of the package a module belongs to: its subpackage or top-level module (torch_ising.a.b -> a)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _import_graph() -> dict[str, set[str]]:
    """Edges part -> part for every import inside the package, lazy (function-level) imports included."""
    import ast

    root = REPO / "torch_ising"
    edges: dict[str, set[str]] = {}
    for path in root.rglob("*.py"):
        rel = path.relative_to(REPO).with_suffix("")
        module = ".".join(rel.parts)
        package = module[: -len(".__init__")] if module.endswith(".__init__") else module.rsplit(".", 1)[0]
        if module.endswith(".__init__"):
            module = package
        source = _part(module)
        if not source:
            continue  # torch_ising/__init__.py imports every part by design
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                targets.append(target)
                if target == "torch_ising":  # from . import x (at the top level): the parts x
                    targets += [f"torch_ising.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets += [a.name for a in node.names]
            for target in targets:
                if target.startswith("torch_ising.") and _part(target) != source:
                    edges.setdefault(source, set()).add(_part(target))
    return edges


def test_no_import_cycle_between_the_parts_of_the_package():
    graph = _import_graph()
    assert "statespace" in graph and "approx" in graph  # the graph was read
    cycles = []

    def visit(start: str, node: str, path: list[str]) -> None:
        for nxt in sorted(graph.get(node, ())):
            if nxt == start:
                cycles.append(" -> ".join([*path, nxt]))
            elif nxt not in path and nxt > start:
                visit(start, nxt, [*path, nxt])

    for start in sorted(graph):
        visit(start, start, [start])
    assert cycles == []
