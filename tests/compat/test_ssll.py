"""torch_ising.compat.ssll: the published run() signature, its container, and parity with the published library.

The parity cases (tests/data/parity, README there) hold the published library's own fits;
``default__`` is its default run: the published stopping rule with its conjugate-gradient MAP.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.common import EXPLOSIVE_F, MAX_ITER, PARITY_DIR, brute_force, fit_warns, parity_fit_kwargs
from torch_ising.compat import ssll, transforms

CASES = sorted(p.stem for p in PARITY_DIR.glob("*.npz"))


def _settings(case: str) -> tuple[dict, dict]:
    """The case's data, and run()'s keyword arguments for its settings (README of tests/data/parity)."""
    d = dict(np.load(PARITY_DIR / f"{case}.npz"))
    st = json.loads(str(d["settings"]))
    D = d["theta_true"].shape[1]
    kw: dict = {"order": st["O"], "window": st.get("window", 1), **parity_fit_kwargs(st, D)}
    if st.get("stationary"):
        kw["stationary"] = True
    for key in ("param_est", "param_est_eta"):
        if key in st:
            kw[key] = st[key]
    if "u" in d:
        kw["u"] = d["u"]
    return d, kw


_FITS: dict[str, tuple[dict, ssll.EMData]] = {}


def _fit(case: str) -> tuple[dict, ssll.EMData]:
    """One compat fit per case, shared by the tests below."""
    if case not in _FITS:
        d, kw = _settings(case)
        _FITS[case] = d, ssll.run(d["spikes"], EM_Info=False, **kw)
    return _FITS[case]


def test_cases_present():
    assert len(CASES) == 7


# v6 learns F. The published F update uses the transposed smoothed lag-one covariance (MODEL.md 7);
# torch_ising learns F by MODEL.md 3.3, so this case differs by design. test_v6_differs_only_by_the_published_F_update
# shows that the transposition is the whole difference.
_V6 = (
    "learned F: the published F update uses the transposed lag-one covariance (MODEL.md 7), which torch_ising "
    "does not copy; measured |d mll| = 9.9, max |d theta_s| = 1.6, 92 iterations against the published 71"
)


def _params() -> list:
    return [
        pytest.param(c, marks=pytest.mark.xfail(strict=True, reason=_V6)) if c == "v6_autoregF_N4" else c for c in CASES
    ]


@pytest.mark.parametrize("case", _params())
def test_parity_default_mll(case):
    d, emd = _fit(case)
    assert abs(emd.mll - float(d["default__mll"])) <= 1e-3


@pytest.mark.parametrize("case", _params())
def test_parity_default_theta_s(case):
    d, emd = _fit(case)
    assert np.abs(emd.theta_s - d["default__theta_s"]).max() <= 1e-3


def test_v6_differs_only_by_the_published_F_update(monkeypatch):
    """With the published (transposed) lag-one covariance in the F update, v6's default run is reproduced.

    The transposition is applied here, in the test, to show what the published library computes;
    torch_ising itself keeps the update of MODEL.md 3.3.
    """
    import torch_ising.statespace.em as em

    m_step = em.m_step

    def published_m_step(smooth, params, **kwargs):
        return m_step(smooth._replace(lag_one=smooth.lag_one.transpose(-1, -2)), params, **kwargs)

    monkeypatch.setattr(em, "m_step", published_m_step)
    d, kw = _settings("v6_autoregF_N4")
    with fit_warns(EXPLOSIVE_F):  # the published default run's F has spectral radius 1.05
        emd = ssll.run(d["spikes"], EM_Info=False, **kw)
    assert emd.iterations == int(d["default__iterations"])
    assert abs(emd.mll - float(d["default__mll"])) <= 1e-8
    assert np.abs(emd.theta_s - d["default__theta_s"]).max() <= 1e-8
    assert np.abs(emd.F - d["default__F"]).max() <= 1e-8


@pytest.mark.parametrize("case", [c for c in CASES if c != "v6_autoregF_N4"])
def test_parity_published_stopping_rule(case):
    """Same number of EM iterations as the published default run, and its last relative change below 1e-4."""
    d, emd = _fit(case)
    assert emd.iterations == int(d["default__iterations"])
    assert len(emd.mll_list) == emd.iterations
    m = emd.mll_list
    if len(m) >= 2:
        assert (m[-2] - m[-1]) / m[-2] < 1e-4
        assert all((a - b) / a >= 1e-4 for a, b in zip(m[:-2], m[1:-1], strict=True))


def test_container_fields_and_shapes():
    d, emd = _fit("v2_pairwise_N4")
    T, R, N = d["spikes"].shape
    D = N + N * (N - 1) // 2
    assert (emd.N, emd.D, emd.T, emd.R, emd.order) == (N, D, T, R, 2)
    for name, shape in {
        "theta_s": (T, D),
        "eta_s": (T, D),
        "sigma_s": (T, D, D),
        "theta_f": (T, D),
        "sigma_f": (T, D, D),
        "y": (T, D),
        "Q": (D, D),
        "F": (D, D),
        "theta_o": (D,),
    }.items():
        value = getattr(emd, name)
        assert isinstance(value, np.ndarray) and value.shape == shape, name
    assert emd.U is None
    assert isinstance(emd.mll, float) and emd.mll == emd.mll_list[-1] == emd.mllk
    assert isinstance(emd.iterations, int)
    # y is the empirical statistics of the spikes: firing rates and pairwise co-firing rates per bin
    x = d["spikes"].astype(float)
    np.testing.assert_allclose(emd.y[:, :N], x.mean(1), rtol=0, atol=1e-14)
    np.testing.assert_allclose(emd.y[:, N], (x[:, :, 0] * x[:, :, 1]).mean(1), rtol=0, atol=1e-14)
    # eta_s is eta(theta_s), by brute-force enumeration
    for t in (0, T - 1):
        np.testing.assert_allclose(emd.eta_s[t], brute_force(emd.theta_s[t], N, 2)["eta"], rtol=0, atol=1e-12)
    assert repr(emd).startswith("EMData(N=4")


def test_run_initialises_transforms_to_the_fitted_model():
    d, _ = _settings("v7_firstorder_N3")
    transforms.initialise(3, 2)
    with fit_warns(MAX_ITER):
        ssll.run(d["spikes"][:2], order=1, EM_Info=False, max_iter=2)
    assert transforms.get_state() == (3, 1)


def test_em_info_prints_final_likelihood(capsys):
    d, _ = _settings("v1_stationary_N3")
    emd = ssll.run(d["spikes"], 2, EM_Info=True)
    captured = capsys.readouterr()
    assert captured.out.strip() == f"Log marginal likelihood = {emd.mll:.6f}"
    assert "EM" in captured.err  # the progress bar
    emd = ssll.run(d["spikes"], 2, EM_Info=False)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_stationary_pools_bins_as_trials():
    """stationary=True fits one bin to all T x R patterns, as the published run reshapes (T, R, N) -> (1, T R, N)."""
    d, _ = _settings("v2_pairwise_N4")
    x = d["spikes"]
    T, R, N = x.shape
    a = ssll.run(x, 2, EM_Info=False, stationary=True)
    b = ssll.run(x.reshape(1, T * R, N), 2, EM_Info=False)
    assert (a.T, a.R) == (1, T * R)
    np.testing.assert_allclose(a.theta_s, b.theta_s, rtol=0, atol=1e-10)
    assert a.mll == pytest.approx(b.mll, abs=1e-9)


def test_window_rebins():
    d, _ = _settings("v2_pairwise_N4")
    x = d["spikes"]
    with fit_warns(MAX_ITER):
        emd = ssll.run(x, 2, window=2, EM_Info=False, max_iter=3)
    rebinned = np.maximum(x[0::2], x[1::2])
    assert emd.T == x.shape[0] // 2
    np.testing.assert_allclose(emd.y[:, :4], rebinned.mean(1), rtol=0, atol=1e-14)


def test_state_cov_forms_and_mstep_off():
    d, _ = _settings("v2_pairwise_N4")
    x = d["spikes"]
    D = 10
    # [q] is the scalar q; mstep=False keeps Q at its initial value
    a = ssll.run(x, 2, state_cov=[0.02], mstep=False, EM_Info=False)
    np.testing.assert_allclose(a.Q, 0.02 * np.eye(D), rtol=0, atol=0)
    assert a.iterations == 0
    # [q1, q2]: first-order and higher-order blocks, each learned as one value
    with fit_warns(MAX_ITER):
        b = ssll.run(x, 2, state_cov=[0.02, 0.005], EM_Info=False, max_iter=3)
    q = np.diag(b.Q)
    assert np.allclose(q[:4], q[0]) and np.allclose(q[4:], q[4])
    np.testing.assert_allclose(b.Q, np.diag(q), rtol=0, atol=0)


def test_exogenous_input_learns_U():
    d, _ = _settings("v2_pairwise_N4")
    x = d["spikes"]
    u = np.sin(np.arange(x.shape[0]) / 3.0)[:, None]
    with fit_warns(MAX_ITER):
        emd = ssll.run(x, 2, u=u, EM_Info=False, max_iter=3)
    assert emd.U.shape == (10, 1) and np.abs(emd.U).max() > 0


def test_map_functions():
    """ "nr" and "bf" give the exact-mode fit (native Newton); "cg" the published inexact one, near it."""
    from torch_ising import fit

    d, _ = _settings("v2_pairwise_N4")
    fits = {m: ssll.run(d["spikes"], 2, map_function=m, EM_Info=False) for m in ssll.MAP_FUNCTIONS}
    newton = fit(d["spikes"], 2, stop="ssll", map_method="newton", progress=False)
    for m in ("nr", "bf"):
        np.testing.assert_array_equal(fits[m].theta_s, newton.theta_s.numpy())
    # the published CG stops at max |grad| / R <= 1e-4: its modes are near, not at, the exact ones
    gap = np.abs(fits["cg"].theta_s - newton.theta_s.numpy()).max()
    assert 0 < gap < 0.02


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"map_function": "lbfgs"}, "map_function"),
        ({"param_est": "exactly"}, "param_est"),
        ({"param_est_eta": "tap"}, "param_est_eta"),
        ({"order": 4}, "order"),
        ({"window": 0}, "window"),
        ({"state_cov": []}, "state_cov"),
        ({"state_cov": -1.0}, "state_cov"),
        ({"theta_o": np.zeros(4)}, "theta_o"),
    ],
)
def test_bad_arguments_raise_value_error(kwargs, name):
    d, _ = _settings("v1_stationary_N3")
    kwargs = {"order": 2, **kwargs}
    with pytest.raises(ValueError, match=name):
        ssll.run(d["spikes"], EM_Info=False, **kwargs)


def test_bad_spikes_raise_value_error():
    with pytest.raises(ValueError, match="spikes"):
        ssll.run(np.full((2, 5, 3), 2), 2, EM_Info=False)
    with pytest.raises(ValueError, match="spikes"):
        ssll.run(np.zeros((5, 3)), 2, EM_Info=False)
    with pytest.raises(ValueError, match="spikes must have shape \\(T, R, N\\)"):
        ssll.run(np.zeros((2, 5, 4, 3)), 2, EM_Info=False)


def test_returns_numpy_from_a_cpu_float64_fit():
    d, emd = _fit("v1_stationary_N3")
    assert emd.theta_s.dtype == np.float64
    assert isinstance(emd.result.theta_s, torch.Tensor)
