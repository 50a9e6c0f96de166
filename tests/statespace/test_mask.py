"""fit(mask=...): per-bin observed trials R_t, missing bins, against independent computations."""

import math

import numpy as np
import pytest
import torch

import torch_ising as ti
from tests.common import NEVER_FIRE, bf_features, brute_force, fit_warns
from tests.statespace.test_core import _random_problem
from torch_ising.statespace import ObservationModel, StateSpaceParams, laplace_filter, log_marginal, smoother
from torch_ising.statespace.joint import filtered_from_joint, joint_e_step

# short fits (max_iter=...) are enough where only the data handling is checked
pytestmark = pytest.mark.filterwarnings("ignore:EM stopped after max_iter:UserWarning")


def _data(N=3, T=30, R=60, seed=0, B=None):
    if B is None:
        theta = ti.generate_thetas(N, 2, T, seed=seed)
        return theta, ti.generate_spikes(theta, R, seed=seed + 1)
    theta = torch.stack([ti.generate_thetas(N, 2, T, seed=seed + b) for b in range(B)])
    return theta, torch.stack([ti.generate_spikes(theta[b], R, seed=seed + 10 + b) for b in range(B)])


def _max_diff(a, b):
    out = 0.0
    for k in ("theta_s", "sigma_s", "theta_f", "sigma_f", "Q", "mu"):
        out = max(out, float((getattr(a, k) - getattr(b, k)).abs().max()))
    mll = torch.as_tensor(a.mll) - torch.as_tensor(b.mll)
    return max(out, float(mll.abs().max()))


@pytest.mark.parametrize("estep", ["filter", "joint"])
def test_all_true_mask_is_no_mask(estep, device):
    _, spikes = _data(B=2)
    spikes = spikes.to(device)
    a = ti.fit(spikes, 2, progress=False, estep=estep)
    b = ti.fit(spikes, 2, progress=False, estep=estep, mask=torch.ones(spikes.shape[:3], dtype=torch.bool))
    assert _max_diff(a, b) < 1e-12
    assert a.iterations == b.iterations
    assert b.mask.shape == spikes.shape[:3] and bool(b.mask.all())
    assert bool((b.R_t == spikes.shape[2]).all())


@pytest.mark.parametrize(
    "estep, kw",
    [
        ("filter", {}),
        ("joint", {}),
        ("filter", {"stop": "mll"}),
        ("filter", {"stop": "ssll"}),
        ("filter", {"window": 3}),
    ],
)
def test_masking_trials_equals_dropping_them(estep, kw, device):
    """fit(spikes, mask=trial_index < 100) == fit(spikes[:, :100])."""
    _, spikes = _data(T=25, R=160)
    spikes = spikes.to(device)
    trial_index = torch.arange(spikes.shape[1])[None, :].expand(spikes.shape[0], -1)
    a = ti.fit(spikes, 2, progress=False, estep=estep, mask=trial_index < 100, **kw)
    b = ti.fit(spikes[:, :100], 2, progress=False, estep=estep, **kw)
    assert _max_diff(a, b) < 1e-10
    torch.testing.assert_close(a.y, b.y, rtol=0, atol=1e-14)


def test_batched_masks_equal_separate_fits_of_the_observed_trials():
    """A (B, T_raw, R) mask: each data set fitted on its own observed trials, in one batch."""
    _, spikes = _data(T=10, R=50, B=3, seed=31)
    keep = (20, 35, 50)
    mask = torch.zeros(3, 10, 50, dtype=torch.bool)
    for b, k in enumerate(keep):
        mask[b, :, :k] = True
    # neurons 0 and 1 never fire together in the 20 observed trials of data set 0
    with fit_warns(NEVER_FIRE):
        rb = ti.fit(spikes, 2, mask=mask, progress=False, max_iter=25)
    assert torch.equal(rb.R_t, torch.tensor(keep, dtype=torch.float64)[:, None].expand(3, 10))
    n = torch.tensor([10 * k for k in keep])
    assert torch.equal(rb.n_observations, n)
    torch.testing.assert_close(rb.bic(), -2 * rb.mll + rb.n_hyperparameters * n.double().log(), rtol=0, atol=1e-9)
    for b, k in enumerate(keep):
        with fit_warns(*((NEVER_FIRE,) if b == 0 else ())):
            rs = ti.fit(spikes[b, :, :k], 2, progress=False, max_iter=25)
        assert (rb.theta_s[b] - rs.theta_s).abs().max() < 1e-8
        assert (rb.sigma_s[b] - rs.sigma_s).abs().max() < 1e-8
        assert abs(float(rb.mll[b]) - rs.mll) < 1e-8
    # a (T_raw, R) mask is shared by the batch
    with fit_warns(NEVER_FIRE):  # in their first 20 trials: data sets 0 and 2
        shared = ti.fit(spikes, 2, mask=mask[0], progress=False, max_iter=25)
    assert bool((shared.R_t == 20).all())


class _WeightedGaussian(ObservationModel):
    """log p(z_t | theta) = R_t log N(z_t; theta, Lambda^{-1}) with R_t in {0, 1}: exact for the filter."""

    def __init__(self, z, Lam, R_t):
        self.z, self.Lam, self.R_t = z, Lam, R_t
        self.B, self.T, self.D = z.shape
        self.R = 1

    def log_lik(self, theta, t):
        d = theta - self.z[:, t]
        const = -0.5 * self.D * math.log(2 * math.pi) + 0.5 * torch.logdet(self.Lam)
        return self.R_t[:, t] * (const - 0.5 * (d @ self.Lam * d).sum(-1))


def _dense_gaussian(mu, Sigma, F, Q, z, Lam, w):
    """Posterior of the stacked path with bin t's likelihood weighted by w_t (0 removes it), and the evidence."""
    T, D = z.shape
    covs = [Sigma]
    for _ in range(1, T):
        covs.append(F @ covs[-1] @ F.T + Q)
    K = torch.zeros(T * D, T * D)
    mean = torch.zeros(T * D)
    m = mu
    for t in range(T):
        mean[t * D : (t + 1) * D] = m
        m = F @ m
        for s in range(t, T):
            blk = torch.linalg.matrix_power(F, s - t) @ covs[t]
            K[s * D : (s + 1) * D, t * D : (t + 1) * D] = blk
            K[t * D : (t + 1) * D, s * D : (s + 1) * D] = blk.T
    L_big = torch.block_diag(*[float(w[t]) * Lam for t in range(T)])
    post_cov = torch.linalg.inv(torch.linalg.inv(K) + L_big)
    post_mean = post_cov @ (torch.linalg.solve(K, mean) + L_big @ z.reshape(-1))
    seen = torch.cat([torch.full((D,), bool(w[t] > 0)) for t in range(T)])
    ev_cov = K[seen][:, seen] + torch.block_diag(*[torch.linalg.inv(Lam)] * int((w > 0).sum()))
    evidence = torch.distributions.MultivariateNormal(mean[seen], ev_cov).log_prob(z.reshape(-1)[seen])
    return post_mean.reshape(T, D), post_cov, evidence


def test_missing_bins_gaussian_filter_smoother_joint_match_dense(device):
    """Bins 20..29 unobserved: filtered and smoothed moments == dense joint Gaussian without their terms."""
    T = 40
    mu, Sigma, F, Q, z, Lam = _random_problem(T=T, D=3, seed=4)
    D = z.shape[1]
    w = torch.ones(T)
    w[20:30] = 0.0
    obs = _WeightedGaussian(z[None].to(device), Lam.to(device), w[None].to(device))
    params = StateSpaceParams(*(v[None].to(device) for v in (mu, Sigma, Q, F)), None)
    filt = laplace_filter(obs, params, tol=1e-12)
    sm = smoother(filt, params)
    _, jsm, jmll = joint_e_step(obs, params, tol=1e-12)
    jf = filtered_from_joint(obs, params, jsm.theta_s)
    mean, cov, evidence = _dense_gaussian(mu, Sigma, F, Q, z, Lam, w)
    for theta_s, sigma_s in ((sm.theta_s, sm.sigma_s), (jsm.theta_s, jsm.sigma_s)):
        torch.testing.assert_close(theta_s[0].cpu(), mean, rtol=0, atol=1e-10)
        for t in range(T):
            torch.testing.assert_close(
                sigma_s[0, t].cpu(), cov[t * D : (t + 1) * D, t * D : (t + 1) * D], rtol=0, atol=1e-10
            )
    # filtered: the dense posterior of the data up to t, at t
    for t in range(T):
        m_t, c_t, _ = _dense_gaussian(mu, Sigma, F, Q, z[: t + 1], Lam, w[: t + 1])
        for f in (filt, jf):
            torch.testing.assert_close(f.theta_f[0, t].cpu(), m_t[t], rtol=0, atol=1e-10)
            torch.testing.assert_close(f.sigma_f[0, t].cpu(), c_t[t * D :, t * D :], rtol=0, atol=1e-10)
    torch.testing.assert_close(log_marginal(obs, filt)[0].cpu(), evidence, rtol=0, atol=1e-9)
    torch.testing.assert_close(jmll[0].cpu(), evidence, rtol=0, atol=1e-9)


def _dense_laplace_masked(spikes, mask, params, N, O, iters=40):
    """Dense Newton on the stacked path; bin t's likelihood R_t [y_t . theta - psi] over its observed trials."""
    x_np, m_np = spikes.numpy(), mask.numpy()
    T = x_np.shape[0]
    R_t = m_np.sum(1).astype(float)
    Fx = bf_features(x_np.reshape(-1, N), N, O).reshape(T, x_np.shape[1], -1)
    S = (Fx * m_np[..., None]).sum(1)  # sum over observed trials of F(x), = R_t y_t
    mu, Sigma, Q, F = (v[0].numpy() for v in params[:4])
    D = mu.shape[0]
    covs, means = [Sigma], [mu]
    for _ in range(1, T):
        covs.append(F @ covs[-1] @ F.T + Q)
        means.append(F @ means[-1])
    K = np.zeros((T * D, T * D))
    for t in range(T):
        for s in range(t, T):
            blk = np.linalg.matrix_power(F, s - t) @ covs[t]
            K[s * D : (s + 1) * D, t * D : (t + 1) * D] = blk
            K[t * D : (t + 1) * D, s * D : (s + 1) * D] = blk.T
    m0, Ki = np.concatenate(means), np.linalg.inv(K)

    def parts(v):
        g, G = np.zeros(T * D), np.zeros((T * D, T * D))
        for t in range(T):
            bf = brute_force(v[t * D : (t + 1) * D], N, O)
            g[t * D : (t + 1) * D] = S[t] - R_t[t] * bf["eta"]
            G[t * D : (t + 1) * D, t * D : (t + 1) * D] = R_t[t] * bf["fisher"]
        return g, G

    v = m0.copy()
    for _ in range(iters):
        g, G = parts(v)
        v = v + np.linalg.solve(Ki + G, g - Ki @ (v - m0))
    _, G = parts(v)
    return v.reshape(T, D), np.linalg.inv(Ki + G)


def _fixed_params(D, seed=0):
    g = torch.Generator().manual_seed(seed)
    mu = -1.0 + 0.3 * torch.randn(D, generator=g)
    return StateSpaceParams(mu[None], 0.4 * torch.eye(D)[None], 0.05 * torch.eye(D)[None], torch.eye(D)[None], None)


def test_missing_bins_ising_joint_matches_dense_laplace(device):
    """Bins 20..29 unobserved, plus some single trials: the joint E-step == a dense Laplace brute force."""
    N, O, T, R = 3, 2, 36, 25
    _, spikes = _data(N=N, T=T, R=R, seed=3)
    mask = torch.rand(T, R, generator=torch.Generator().manual_seed(1)) > 0.2
    mask[20:30] = False
    D = ti.basis.compute_D(N, O)
    params = _fixed_params(D)
    r = ti.fit(spikes.to(device), O, mask=mask, init=params, mstep=False, estep="joint", newton_tol=1e-12,
               progress=False)  # fmt: skip
    mode, cov = _dense_laplace_masked(spikes, mask, params, N, O)
    assert np.abs(r.theta_s.cpu().numpy() - mode).max() < 1e-10
    for t in range(T):
        assert np.abs(r.sigma_s[t].cpu().numpy() - cov[t * D : (t + 1) * D, t * D : (t + 1) * D]).max() < 1e-10
    assert r.R_t[20:30].eq(0).all() and torch.equal(r.R_t.cpu(), mask.sum(1).double())


def test_missing_bins_ising_filter_predicts_through_them(device):
    """The filter is causal: bins < 20 as a fit of the first 20 bins; bins 20..29 are pure predictions."""
    N, O, T, R = 3, 2, 36, 30
    _, spikes = _data(N=N, T=T, R=R, seed=5)
    mask = torch.ones(T, R, dtype=torch.bool)
    mask[20:30] = False
    params = _fixed_params(ti.basis.compute_D(N, O), seed=2)
    kw = dict(init=params, mstep=False, newton_tol=1e-12, progress=False, estep="filter")
    r = ti.fit(spikes.to(device), O, mask=mask, **kw)
    head = ti.fit(spikes[:20].to(device), O, **kw)
    torch.testing.assert_close(r.theta_f[:20], head.theta_f, rtol=0, atol=1e-10)
    torch.testing.assert_close(r.sigma_f[:20], head.sigma_f, rtol=0, atol=1e-10)
    Q = params.Q[0].to(device)
    W = r.sigma_f[19]
    for t in range(20, 30):  # F = I: theta_{t|t} = theta_{19|19}, W_{t|t} = W_{19|19} + (t - 19) Q
        W = W + Q
        torch.testing.assert_close(r.theta_f[t], r.theta_f[19], rtol=0, atol=1e-10)
        torch.testing.assert_close(r.sigma_f[t], W, rtol=0, atol=1e-10)
    # l: the missing bins add no likelihood term, and the fit's l equals l of the filter's own recursion
    assert torch.isfinite(torch.as_tensor(r.mll))


def test_window_combines_masks():
    """A re-binned bin of a trial is observed only when all its raw bins are."""
    N, O, T_raw, R = 3, 2, 40, 30
    _, spikes = _data(N=N, T=T_raw, R=R, seed=7)
    mask = torch.rand(T_raw, R, generator=torch.Generator().manual_seed(3)) > 0.1
    r = ti.fit(spikes, O, window=4, mask=mask, max_iter=3, progress=False)
    xr = spikes[:40].reshape(10, 4, R, N).amax(1).numpy()
    mr = mask.reshape(10, 4, R).all(1).numpy()
    Fx = bf_features(xr.reshape(-1, N), N, O).reshape(10, R, -1)
    y = (Fx * mr[..., None]).sum(1) / mr.sum(1)[:, None]
    assert np.abs(r.y.numpy() - y).max() < 1e-14
    assert np.array_equal(r.R_t.numpy(), mr.sum(1).astype(float))
    assert r.mask.shape == (T_raw, R)


def test_stationary_mask_pools_observed_trials():
    _, spikes = _data(T=12, R=40, seed=9)
    mask = torch.zeros(12, 40, dtype=torch.bool)
    mask[:, :25] = True
    a = ti.fit(spikes, 2, stationary=True, mask=mask, progress=False)
    b = ti.fit(spikes[:, :25], 2, stationary=True, progress=False)
    torch.testing.assert_close(a.theta_s, b.theta_s, rtol=0, atol=1e-10)
    assert abs(a.mll - b.mll) < 1e-9
    assert float(a.R_t) == 12 * 25


def test_thermodynamics_intervals_bic_use_R_t():
    N, O, T, R = 3, 2, 20, 40
    _, spikes = _data(N=N, T=T, R=R, seed=11)
    mask = torch.rand(T, R, generator=torch.Generator().manual_seed(5)) > 0.3
    mask[5:8] = False
    r = ti.fit(spikes, O, mask=mask, max_iter=20, progress=False)
    th = r.thermodynamics()
    R_t = mask.sum(1).double()
    for t in range(T):
        bf = brute_force(r.theta_s[t].numpy(), N, O)
        want = float(R_t[t]) * (r.y[t].numpy() @ r.theta_s[t].numpy() - bf["psi"])
        assert abs(float(th.llk2[t]) - want) < 1e-9
    assert bool((th.llk2[5:8] == 0).all()) and bool((th.llk1[5:8] == 0).all())
    ci = r.credible_intervals(quantities=["llk2"], n_samples=50)
    # the missing bins' log-likelihood is 0 in every posterior sample
    assert bool((ci["llk2"].lower[5:8] == 0).all()) and bool((ci["llk2"].upper[5:8] == 0).all())
    assert bool((ci["llk2"].upper[:5] < 0).all())
    n = int(mask.sum())
    assert abs(r.bic() - (-2 * r.mll + r.n_hyperparameters * math.log(n))) < 1e-9
    assert r.n_observations == n


def test_save_load_keeps_mask(tmp_path):
    _, spikes = _data(T=10, R=20, seed=13)
    mask = torch.ones(10, 20, dtype=torch.bool)
    mask[3, :5] = False
    r = ti.fit(spikes, 2, mask=mask, max_iter=5, progress=False)
    back = ti.StateSpaceResult.load(r.save(tmp_path / "r.npz"))
    assert torch.equal(back.mask, mask) and torch.equal(back.R_t, r.R_t)
    assert abs(back.bic() - r.bic()) < 1e-12


def test_recovery_with_random_missing_entries():
    """30% of (bin, trial) entries masked at random: the fit still recovers theta (one seed of the benchmark)."""
    N, T, R = 5, 100, 200
    theta = ti.generate_thetas(N, 2, T, seed=100)
    spikes = ti.generate_spikes(theta, R, seed=200)
    mask = torch.rand(T, R, generator=torch.Generator().manual_seed(0), dtype=torch.float64) >= 0.3
    r = ti.fit(spikes, 2, mask=mask, progress=False)
    lp = ti.moments.log_probs(theta, N, 2)
    lq = ti.moments.log_probs(r.theta_s, N, 2)
    kl = (lp.exp() * (lp - lq)).sum(-1).mean()
    sd = torch.diagonal(r.sigma_s, dim1=-2, dim2=-1).sqrt()
    cover = ((r.theta_s - theta).abs() <= 1.96 * sd).double().mean()
    assert float(kl) < 0.01
    assert float(cover) >= 0.9


@pytest.mark.parametrize(
    "mask, match",
    [
        (np.ones((10, 20), dtype=int), "mask must be boolean"),
        (torch.ones(10, 20), "mask must be boolean"),
        (np.ones((10, 19), dtype=bool), r"mask must have shape \(T_raw, R\) = \(10, 20\)"),
        (np.ones((2, 10, 20), dtype=bool), "mask must have shape"),
        (np.zeros((10, 20), dtype=bool), "mask marks no entry as observed"),
    ],
)
def test_bad_mask_is_refused_in_one_line(mask, match):
    _, spikes = _data(T=10, R=20)
    with pytest.raises(ValueError, match=match) as err:
        ti.fit(spikes, 2, mask=mask, progress=False)
    assert "\n" not in str(err.value)


def test_window_leaving_nothing_observed_is_refused():
    _, spikes = _data(T=10, R=20)
    mask = torch.ones(10, 20, dtype=torch.bool)
    mask[::2] = False  # every pair of raw bins has an unobserved one
    with pytest.raises(ValueError, match="^mask: no re-binned bin") as err:
        ti.fit(spikes, 2, window=2, mask=mask, progress=False)
    assert "\n" not in str(err.value)


def test_fit_still_refuses_nan_under_a_mask():
    _, spikes = _data(T=10, R=20)
    x = spikes.double().clone()
    x[3, 2] = float("nan")
    mask = torch.ones(10, 20, dtype=torch.bool)
    mask[3, 2] = False
    with pytest.raises(ValueError, match="spikes contains NaN"):
        ti.fit(x, 2, mask=mask, progress=False)


@pytest.mark.parametrize("order", [1, 2, 3])
def test_weighted_pseudo_likelihood_is_the_sum_over_observed_trials(order, device):
    """PL, gradient and Hessian with 0/1 trial weights == the unweighted forms on the observed trials alone."""
    from torch_ising.approx.pseudo import pseudo_log_likelihood, pseudo_value_grad_hess

    N, R = 4, 30
    D = ti.basis.compute_D(N, order)
    g = torch.Generator().manual_seed(order)
    theta = (0.5 * torch.randn(2, D, generator=g)).to(device)
    x = (torch.rand(2, R, N, generator=g) < 0.4).double().to(device)
    keep = torch.rand(2, R, generator=g) < 0.6
    c = keep.double().to(device)
    for diagonal in (True, False):
        v, gr, H = pseudo_value_grad_hess(theta, x, N, order, diagonal=diagonal, weights=c)
        for b in range(2):
            vb, gb, Hb = pseudo_value_grad_hess(theta[b], x[b, keep[b]], N, order, diagonal=diagonal)
            torch.testing.assert_close(v[b], vb, rtol=0, atol=1e-12)
            torch.testing.assert_close(gr[b], gb, rtol=0, atol=1e-12)
            torch.testing.assert_close(H[b], Hb, rtol=0, atol=1e-12)
    pl = pseudo_log_likelihood(theta, x, N, order, weights=c)
    torch.testing.assert_close(pl, v, rtol=0, atol=1e-12)


def test_pseudo_mask_all_true():
    _, spikes = _data(T=12, R=60, seed=17)
    full = torch.ones(12, 60, dtype=torch.bool)
    a = ti.fit(spikes, 2, method="pseudo", progress=False)
    b = ti.fit(spikes, 2, method="pseudo", mask=full, progress=False)
    assert _max_diff(a, b) < 1e-12


def test_pseudo_mask_dropped_trials():
    _, spikes = _data(T=12, R=60, seed=17)
    trial_index = torch.arange(60)[None, :].expand(12, -1)
    c = ti.fit(spikes, 2, method="pseudo", mask=trial_index < 40, progress=False)
    d = ti.fit(spikes[:, :40], 2, method="pseudo", progress=False)
    # the sums over 60 trials (20 weighted 0) and over 40 differ in round-off, and the Newton-CG mode searches
    # stop anywhere below newton_tol = 1e-8, so the two fits agree to the mode searches' tolerance
    assert _max_diff(c, d) < 1e-8


def test_pseudo_predicts_through_missing_bins():
    N, O, T, R = 3, 2, 20, 40
    _, spikes = _data(N=N, T=T, R=R, seed=19)
    mask = torch.rand(T, R, generator=torch.Generator().manual_seed(2), dtype=torch.float64) > 0.25
    mask[8:12] = False
    D = ti.basis.compute_D(N, O)
    g = torch.Generator().manual_seed(0)
    p = StateSpaceParams(-1.0 + 0.3 * torch.randn(1, D, generator=g), torch.full((1, D), 0.4),
                         torch.full((1, D), 0.05), torch.ones(1, D), None)  # fmt: skip
    r = ti.fit(spikes, O, method="pseudo", mask=mask, init=p, mstep=False, progress=False)
    for t in range(8, 12):
        torch.testing.assert_close(r.theta_f[t], r.theta_f[7], rtol=0, atol=1e-12)
        torch.testing.assert_close(r.sigma_f[t], r.sigma_f[7] + (t - 7) * 0.05, rtol=0, atol=1e-12)
    assert torch.equal(r.R_t, mask.sum(1).double())
