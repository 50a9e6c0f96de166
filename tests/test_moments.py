import numpy as np
import pytest
import torch

from tests.common import brute_force, to_np
from torch_ising import basis, moments

CASES = [(N, O) for N in range(1, 9) for O in range(1, N + 1)] + [(12, 3)]


@pytest.mark.parametrize("N,O", CASES)
def test_against_brute_force(N, O, device):
    rng = np.random.default_rng(N * 10 + O)
    D = basis.compute_D(N, O)
    theta = rng.uniform(-5, 5, size=D)
    bf = brute_force(theta, N, O)
    th = torch.as_tensor(theta, device=device)
    m = moments.moments(th, N, O)
    np.testing.assert_allclose(to_np(m.psi), bf["psi"], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(to_np(m.eta), bf["eta"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(to_np(m.fisher), bf["fisher"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(to_np(moments.probs(th, N, O)), bf["probs"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(to_np(moments.log_probs(th, N, O)), np.log(bf["probs"]), rtol=1e-12, atol=1e-10)


@pytest.mark.parametrize("batch", [(), (5,), (2, 4)])
def test_batch_shapes(batch, device):
    N, O = 4, 2
    theta = torch.randn(*batch, 10, device=device)
    m = moments.moments(theta, N, O)
    assert m.psi.shape == batch and m.eta.shape == (*batch, 10) and m.fisher.shape == (*batch, 10, 10)
    assert moments.probs(theta, N, O).shape == (*batch, 16)
    flat = theta.reshape(-1, 10)
    for i in range(flat.shape[0]):
        bf = brute_force(to_np(flat[i]), N, O)
        np.testing.assert_allclose(to_np(m.eta.reshape(-1, 10)[i]), bf["eta"], atol=1e-12)


def test_fisher_equals_autograd_hessian(device):
    for N, O in [(4, 2), (5, 3), (6, 2)]:
        theta = torch.randn(basis.compute_D(N, O), device=device) * 2
        H = torch.func.hessian(lambda t, N=N, O=O: moments.log_partition(t, N, O))(theta)
        torch.testing.assert_close(moments.fisher(theta, N, O), H, rtol=0, atol=1e-10)
        t = theta.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(moments.log_partition(t, N, O), t)
        torch.testing.assert_close(g, moments.expectation(theta, N, O), rtol=0, atol=1e-12)


def test_seed_numbers():
    p = to_np(moments.probs(torch.tensor([-1.0, -1.0, 0.0]), 2, 2))
    np.testing.assert_allclose(p.round(4), [0.5344, 0.1966, 0.1966, 0.0723])
    eta = to_np(moments.expectation(torch.tensor([-3.0, 0.0, 0.0]), 2, 2))
    assert round(eta[0], 4) == 0.0474 and round(eta[1], 4) == 0.5
    p = to_np(moments.probs(torch.tensor([-1.0, -1.0, 2.0]), 2, 2))
    assert round(p[3], 4) == 0.3655
    assert basis.compute_D(4, 2) == 10


def test_log_prob_of_patterns(device):
    N, O = 5, 3
    theta = torch.randn(3, basis.compute_D(N, O), device=device)
    X = basis.enumerate_patterns(N, device)
    lp = moments.log_prob(theta, X[:, None, :], N, O)  # (2^N, 3)
    torch.testing.assert_close(lp.T, moments.log_probs(theta, N, O), rtol=0, atol=1e-12)


@pytest.mark.parametrize("N,O", [(4, 2), (6, 3)])
def test_extreme_parameters(N, O, device):
    D = basis.compute_D(N, O)
    sign = torch.tensor([(-1) ** i for i in range(D)], dtype=torch.float64)
    theta = (50.0 * sign).to(device)
    m = moments.moments(theta, N, O)
    p = moments.probs(theta, N, O)
    assert torch.isfinite(m.psi)
    assert abs(float(p.sum()) - 1.0) < 1e-12
    for x in (m.eta, m.fisher, p):
        assert not torch.isnan(x).any()
    bf = brute_force(to_np(theta), N, O)
    np.testing.assert_allclose(to_np(m.psi), bf["psi"], rtol=1e-12)


def test_exact_sampling_chi_square():
    N, O = 5, 2
    theta = torch.as_tensor(np.random.default_rng(3).uniform(-2, 1, basis.compute_D(N, O)))
    g = torch.Generator().manual_seed(12345)
    x = moments.sample(theta, 100_000, N, O, generator=g)
    assert x.shape == (100_000, N)
    masks = (x.long() << torch.arange(N)).sum(-1)
    counts = torch.bincount(masks, minlength=2**N).numpy()
    p_mask = basis.seed_to_mask(moments.probs(theta, N, O), N).numpy()
    expected = 100_000 * p_mask
    stat = float(((counts - expected) ** 2 / expected).sum())
    # Pearson's statistic is chi-square with 2^N - 1 degrees of freedom; its upper tail is the
    # regularised upper incomplete gamma function Q(k / 2, stat / 2)
    dof = 2**N - 1
    pval = float(torch.special.gammaincc(torch.tensor(dof / 2.0), torch.tensor(stat / 2.0)))
    assert pval > 0.01, (stat, pval)


def test_entropy_and_heat_capacity_closed_forms():
    N, O = 4, 2
    theta = torch.randn(10)
    bf = brute_force(to_np(theta), N, O)
    p = bf["probs"]
    np.testing.assert_allclose(to_np(moments.entropy(theta, N, O)), -(p * np.log(p)).sum(), rtol=1e-12)
    E = bf["F"] @ to_np(theta)
    var = (p * E**2).sum() - (p * E).sum() ** 2
    np.testing.assert_allclose(to_np(moments.heat_capacity(theta, N, O)), var, rtol=1e-12)


def test_memory_refusal_message():
    with pytest.raises(moments.ExactMemoryError, match="GiB.*pseudo"):
        moments.check_memory(45, dtype=torch.float64, device="cpu")


def test_theta_length_validation():
    with pytest.raises(ValueError, match="theta.*D=6"):
        moments.log_partition(torch.zeros(5), 3, 2)


def test_expectation_from_probs_matches_brute_force():
    theta = np.random.default_rng(9).uniform(-2, 2, basis.compute_D(5, 3))
    bf = brute_force(theta, 5, 3)
    eta = moments.expectation_from_probs(torch.as_tensor(bf["probs"]), 5, 3)
    np.testing.assert_allclose(to_np(eta), bf["eta"], atol=1e-12)


def test_numpy_and_list_theta_match_the_closed_form():
    # N = 2, theta = (theta_1, theta_2, theta_12): p(x) = exp(theta . F(x)) / Z over 00, 10, 01, 11
    theta = [-1.0, -0.5, 2.0]
    w = np.exp([0.0, theta[0], theta[1], theta[0] + theta[1] + theta[2]])
    p = w / w.sum()
    for th in (theta, np.asarray(theta)):
        got = moments.probs(th, 2, 2)
        assert got.dtype == torch.float64
        np.testing.assert_allclose(to_np(got), p, atol=1e-15)
        eta = moments.expectation(th, 2, 2)
        np.testing.assert_allclose(to_np(eta), [p[1] + p[3], p[2] + p[3], p[3]], atol=1e-15)
    # integer lists become float64 too
    assert moments.log_partition([0, 0, 0], 2, 2).dtype == torch.float64
    np.testing.assert_allclose(float(moments.log_partition([0, 0, 0], 2, 2)), np.log(4.0), atol=1e-15)


def test_memory_refusal_for_swapped_axes_points_at_the_transpose():
    from torch_ising import fit

    spikes = np.zeros((2, 5, 100), dtype=np.uint8)  # (T, N, R) passed where (T, R, N) is expected
    with pytest.raises(moments.ExactMemoryError, match="transpose"):
        fit(spikes, progress=False)


def test_index_caches_built_in_inference_mode_serve_autograd_later():
    """The moments' cached indices and zeta matrices, first built inside inference mode (as the joint
    E-step runs), still let autograd differentiate psi afterwards; the gradient is eta (brute force)."""
    for f in (moments._indices, moments._zeta_factors, moments._zeta_matrix, moments.transform_operator):
        f.cache_clear()
    theta = torch.randn(3, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        moments.moments(theta, 4, 2)
        moments.fisher_from_joint_trusted(torch.rand(3, 16, dtype=torch.float64), 4, 2)
        moments.transform_operator(4, True, torch.float64, theta.device)
    th = theta.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(moments.log_partition(th, 4, 2).sum(), th)
    for b in range(3):
        np.testing.assert_allclose(grad[b].numpy(), brute_force(theta[b].numpy(), 4, 2)["eta"], rtol=0, atol=1e-12)
