"""The torch-ising command: a run, bad input as a new user types it, SIGTERM and resume, a real sweep."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("hydra")

from hydra import compose, initialize_config_dir  # noqa: E402

import torch_ising as ti  # noqa: E402
from torch_ising.experiment import cli, schemas  # noqa: E402
from torch_ising.experiment.outputs import load_checkpoint, load_results  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SMALL = ["data.N=3", "data.T=12", "data.R=30", "output.figures=[]"]


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.pop("HYDRA_FULL_ERROR", None)
    env["MPLBACKEND"] = "Agg"
    env.update(extra)
    return env


def _compose(overrides: list[str]):
    schemas.register_configs()
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        return compose("config", overrides=overrides)


def _d(N: int, order: int) -> int:
    return sum(math.comb(N, k) for k in range(1, order + 1))


# --------------------------------------------------------------------------------------------- one run


def test_run_experiment_writes_results_that_match_a_direct_fit(tmp_path):
    cfg = _compose([*SMALL, "fit.max_iter=4", "output.figures=[mll]", "seed=3"])
    summary = cli.run_experiment(cfg, tmp_path)

    # the same data and fit, built directly from the library
    theta = ti.generate_thetas(3, 2, 12, seed=3)
    spikes = ti.generate_spikes(theta, 30, seed=4, N=3, order=2)
    with pytest.warns(ti.FitWarning, match="max_iter=4"):
        direct = ti.fit(spikes, 2, max_iter=4, state_cov=0.01, stop="converged", tol=1e-5, sigma_o=0.1, progress=False)

    res = load_results(tmp_path / "results.npz")  # numpy alone, allow_pickle=False
    np.testing.assert_allclose(res["theta_s"], direct.theta_s.numpy(), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(res["theta_true"], theta.numpy())
    assert res["mll"] == pytest.approx(direct.mll, rel=1e-12)
    D = _d(3, 2)
    k = D + 1  # mu (D) + scalar Q (1), MODEL.md 4
    assert summary.k == k
    assert summary.aic == pytest.approx(-2 * direct.mll + 2 * k, rel=1e-12)
    assert summary.bic == pytest.approx(-2 * direct.mll + k * math.log(12 * 30), rel=1e-12)
    assert (summary.N, summary.T, summary.R, summary.order) == (3, 12, 30, 2)
    assert summary.iterations == direct.iterations and summary.wall_time > 0
    assert "model:\n  _target_" in res["config_yaml"] and "order: 2" in res["config_yaml"]
    assert (tmp_path / "config_resolved.yaml").read_text() == res["config_yaml"]
    text = (tmp_path / "summary.txt").read_text()
    for needle in ("N ", "T ", "R ", "order", "mll", "AIC", "iterations", "wall time"):
        assert needle in text
    assert (tmp_path / "figures" / "mll.png").is_file()
    # the returned record is the summary the run wrote, and cannot be changed
    assert isinstance(summary, cli.ExperimentSummary)
    assert json.loads((tmp_path / "summary.json").read_text()) == summary.to_dict()
    assert cli.ExperimentSummary.from_dict(summary.to_dict()) == summary
    assert "surrogates" not in summary.to_dict() and summary.surrogates is None  # no analysis was asked for
    with pytest.raises(dataclasses.FrozenInstanceError):
        summary.mll = 0.0  # type: ignore[misc]
    # nested mappings are read-only too, and round-trip through JSON
    with_cv = cli.ExperimentSummary.from_dict({**summary.to_dict(), "cv_heldout_ll": {"1": -3.0, "2": -2.5}})
    with pytest.raises(TypeError):
        with_cv.cv_heldout_ll["2"] = 0.0  # type: ignore[index]
    assert json.loads(json.dumps(with_cv.to_dict()))["cv_heldout_ll"] == {"1": -3.0, "2": -2.5}
    # 4 iterations do not reach the fixed point: the fit's warning is kept with the results
    assert not direct.converged and not summary.converged
    assert len(summary.warnings) == 1 and "max_iter=4" in summary.warnings[0]
    assert "warning" in text and "max_iter=4" in text


@pytest.mark.filterwarnings("ignore::torch_ising.experiment.data.DataWarning")
def test_run_writes_the_loaders_mask_and_fits_with_it(tmp_path):
    """data.nan=mask: the NaN entries are unobserved; the run's fit equals fit(spikes, mask=...), mask in results."""
    theta = ti.generate_thetas(3, 2, 12, seed=3)
    spikes = ti.generate_spikes(theta, 30, seed=4, N=3, order=2).numpy().astype(np.float64)
    spikes[3:5, 7] = np.nan
    spikes[9, :4, 1] = np.nan
    np.save(tmp_path / "x.npy", spikes)
    cfg = _compose(["data=array", f"data.path={tmp_path / 'x.npy'}", "data.nan=mask", "fit.max_iter=4",
                    "output.figures=[]"])  # fmt: skip
    summary = cli.run_experiment(cfg, tmp_path / "out")  # the run records the FitWarning in its summary
    mask = ~np.isnan(spikes).any(axis=2)
    with pytest.warns(ti.FitWarning, match="max_iter=4"):
        direct = ti.fit(np.nan_to_num(spikes).astype(np.uint8), 2, mask=mask, max_iter=4, state_cov=0.01,
                        sigma_o=0.1, progress=False)  # fmt: skip
    res = load_results(tmp_path / "out" / "results.npz")
    np.testing.assert_array_equal(res["mask"], mask)
    np.testing.assert_allclose(res["theta_s"], direct.theta_s.numpy(), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(res["R_t"], mask.sum(1))
    n = int(mask.sum())
    assert summary.n_obs == n and summary.unobserved_entries == 12 * 30 - n
    assert summary.bic == pytest.approx(-2 * direct.mll + summary.k * math.log(n), rel=1e-12)
    assert ti.StateSpaceResult.load(tmp_path / "out" / "results.npz").R_t.sum() == n


@pytest.mark.parametrize(
    "Q_form, expected",
    [
        ("scalar", lambda D: 0.02),
        ("diagonal", lambda D: np.full(D, 0.02)),
        ("full", lambda D: 0.02 * np.eye(D)),
        ("two_block", lambda D: [0.02, 0.02]),
    ],
)
def test_Q_forms_map_to_the_fit_state_cov(Q_form, expected):
    """The config's Q and Q_form reach fit as the starting Q of that form (hand-written Q0)."""
    from torch_ising.statespace.qforms import parse_state_cov, q_form

    fit = schemas.FitConfig(Q=0.02, Q_form=Q_form, device="cpu")
    kwargs = cli.fit_kwargs(fit, schemas.ModelConfig(order=2), N=4)
    D = _d(4, 2)
    name, Q0, learn = parse_state_cov(
        kwargs["state_cov"], D, 4, 1, 10, torch.float64, torch.device("cpu"), form=kwargs["q_form"]
    )
    assert name == q_form(Q_form).name and learn
    want = np.asarray(expected(D))
    want = np.diag([0.02] * D) if want.shape == (2,) else want * np.eye(D) if want.ndim < 2 else want
    np.testing.assert_array_equal(Q0[0].numpy(), want)
    assert kwargs["dtype"] is torch.float64 and kwargs["device"] == torch.device("cpu")


# --------------------------------------------------------------------------------------------- the real command


def _launch(args: list[str], cwd: Path, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "torch_ising", *args],
        cwd=cwd,
        env=_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_command_run_and_bad_input_as_a_new_user_types_it(tmp_path):
    """Each mistake gives one line on stderr naming the problem and the fix; HYDRA_FULL_ERROR=1 keeps the traceback."""
    np.save(tmp_path / "flat.npy", np.zeros((20, 3), dtype=np.uint8))
    np.save(tmp_path / "counts.npy", np.full((5, 4, 3), 2, dtype=np.int64))
    run_dir = tmp_path / "run"
    cases = {
        "missing file": (["data=array", "data.path=nowhere.npy"], ["data.path", "file not found", "nowhere.npy"]),
        "wrong key": (["fit.max_iterr=5"], ["unknown config key 'fit.max_iterr'", "did you mean fit.max_iter"]),
        "2-D array": (["data=array", "data.path=flat.npy"], ["2-D shape (20, 3)", "data.axes=TN"]),
        "non-binary": (["data=array", "data.path=counts.npy"], ["spike counts", "data.counts=binarise"]),
        "order > N": (["model.order=4", *SMALL], ["model.order=4", "N=3", "model.order <= 3"]),
    }
    if not torch.cuda.is_available():
        cases["cuda without GPU"] = (["fit.device=cuda", *SMALL], ["fit.device=cuda", "no CUDA GPU", "fit.device=cpu"])
    dirs = {name: tmp_path / "".join(c if c.isalnum() else "_" for c in name) for name in cases}
    procs = {name: _launch([*args, f"hydra.run.dir={dirs[name]}"], tmp_path) for name, (args, _) in cases.items()}
    procs["debug"] = _launch(["data=array", "data.path=nowhere.npy"], tmp_path, HYDRA_FULL_ERROR="1")
    procs["run"] = _launch([*SMALL, "fit.max_iter=3", "output.figures=[mll]", f"hydra.run.dir={run_dir}"], tmp_path)
    out = {name: (p.communicate(timeout=300), p.returncode) for name, p in procs.items()}

    for name, (_, needles) in cases.items():
        (stdout, stderr), rc = out[name]
        lines = [line for line in stderr.splitlines() if line.strip()]
        assert rc == 1, (name, stderr)
        assert len(lines) == 1 and lines[0].startswith("torch-ising: error: "), (name, stderr)
        assert "Traceback" not in stderr + stdout and "HYDRA_FULL_ERROR=1" in lines[0]
        for needle in needles:
            assert needle in lines[0], (name, needle, lines[0])
        assert not (dirs[name] / "results.npz").exists()

    (_, stderr), rc = out["debug"]
    assert rc != 0 and "Traceback (most recent call last)" in stderr and "file not found" in stderr

    (stdout, stderr), rc = out["run"]
    assert rc == 0, stderr
    assert f"results        {run_dir / 'results.npz'}" in stdout and str(run_dir / "figures") in stdout
    res = load_results(run_dir / "results.npz")
    assert res["theta_s"].shape == (12, _d(3, 2)) and res["summary"]["iterations"] == res["iterations"]
    assert (run_dir / "figures" / "mll.png").is_file() and (run_dir / "summary.txt").is_file()


# --------------------------------------------------------------------------------------------- interruption

_KILL_AT = 6
_KILLER = f"""
import os, signal, sys
from torch_ising.experiment import cli

original = cli._Checkpointer.__call__

def call_then_sigterm(self, state):
    original(self, state)
    if int(state.iteration) == {_KILL_AT}:
        os.kill(os.getpid(), signal.SIGTERM)  # a real SIGTERM, delivered mid-fit

cli._Checkpointer.__call__ = call_then_sigterm
sys.argv = ["torch-ising", *sys.argv[1:]]
cli.main()
"""


@pytest.mark.parametrize(
    "rule",
    [
        # the default scheme (Anderson-accelerated EM): the checkpoint carries its history
        [],
        # plain EM with tol=0: every run takes exactly max_iter iterations
        ["fit.stop=em", "fit.tol=0"],
        # the published rule: its history opens with the initial E-step's l as well
        ["fit.stop=ssll", "fit.tol=0"],
    ],
    ids=["converged", "em", "ssll"],
)
def test_sigterm_leaves_no_results_and_resume_reproduces_the_fit(tmp_path, rule):
    common = [*SMALL, *rule, "fit.max_iter=12", "fit.checkpoint_every=2"]
    killed_dir = tmp_path / "killed"
    proc = subprocess.run(
        [sys.executable, "-c", _KILLER, *common, f"hydra.run.dir={killed_dir}"],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 128 + signal.SIGTERM, proc.stderr
    assert "stopped by SIGTERM" in proc.stderr and "fit.resume=true" in proc.stderr
    assert not (killed_dir / "results.npz").exists() and not (killed_dir / "summary.json").exists()
    assert not [p for p in os.listdir(killed_dir) if p.endswith(".tmp")]
    params, iteration, mll_list, meta = load_checkpoint(killed_dir / "checkpoint.npz")
    assert iteration == _KILL_AT and len(mll_list) == _KILL_AT + 1 and meta["N"] == 3

    uninterrupted = tmp_path / "uninterrupted"
    cli.run_experiment(_compose(common), uninterrupted)
    summary = cli.run_experiment(_compose([*common, "fit.resume=true"]), killed_dir)
    full = load_results(uninterrupted / "results.npz")
    resumed = load_results(killed_dir / "results.npz")
    assert full["iterations"] > _KILL_AT, "the uninterrupted fit must run past the kill"
    assert summary.resumed_from == _KILL_AT and resumed["summary"]["iterations"] == full["iterations"]
    gap = np.abs(resumed["theta_s"] - full["theta_s"]).max()
    print(f"resume ({'/'.join(rule) or 'default'}): max |d theta_s| = {gap:.1e}")
    np.testing.assert_allclose(resumed["theta_s"], full["theta_s"], rtol=0, atol=1e-10)
    np.testing.assert_allclose(resumed["Q"], full["Q"], rtol=1e-9, atol=0)
    np.testing.assert_allclose(resumed["mll_list"], full["mll_list"], rtol=1e-10)


def test_resume_refuses_a_checkpoint_of_other_data(tmp_path):
    common = [*SMALL, "fit.stop=em", "fit.max_iter=2", "fit.checkpoint_every=1"]
    cli.run_experiment(_compose(common), tmp_path)
    with pytest.raises(ValueError, match="fit.resume: checkpoint .* N=3 but this run has N=4"):
        cli.run_experiment(_compose([*common, "data.N=4", "fit.resume=true"]), tmp_path)


# --------------------------------------------------------------------------------------------- a real sweep


def test_order_sweep_with_submitit_local_writes_every_run_and_the_table(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    sweep_dir = tmp_path / "sweep"
    proc = _launch(
        [
            "-m",
            "hydra/launcher=submitit_local",
            "hydra.launcher.timeout_min=10",
            "model.order=1,2,3",
            *SMALL,
            "fit.max_iter=3",
            f"hydra.sweep.dir={sweep_dir}",
        ],
        tmp_path,
    )
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr[-3000:]
    with open(sweep_dir / "comparison.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["order"]) for r in rows] == [1, 2, 3]
    for job, row in enumerate(rows):
        run = sweep_dir / str(job)
        res = load_results(run / "results.npz")
        order = int(row["order"])
        D = _d(3, order)
        assert res["order"] == order and res["theta_s"].shape == (12, D)
        assert res["config_yaml"].count(f"order: {order}") >= 1
        k = D + 1
        assert float(row["mll"]) == pytest.approx(res["mll"], rel=1e-12)
        assert float(row["aic"]) == pytest.approx(-2 * res["mll"] + 2 * k, rel=1e-12)
        assert float(row["bic"]) == pytest.approx(-2 * res["mll"] + k * math.log(12 * 30), rel=1e-12)
        assert (run / "summary.txt").is_file() and (run / "config_resolved.yaml").is_file()
    assert (sweep_dir / "comparison.txt").is_file() and (sweep_dir / "comparison_aic.png").is_file()
    assert "comparison.csv" in stdout
