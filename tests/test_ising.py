import numpy as np
import pytest
import torch

from tests.common import brute_force, to_np
from torch_ising import Ising, generate_spikes


def test_module_methods_match_brute_force(device):
    theta = torch.tensor([[-1.0, 0.5, -0.3, 1.2, -0.7, 0.4], [0.2, -1.0, 0.0, 0.3, 0.3, -2.0]])
    m = Ising.from_theta(theta, N=3, order=2).to(device)
    assert isinstance(m.theta, torch.nn.Parameter) and m.theta.shape == (2, 6)
    for b in range(2):
        bf = brute_force(to_np(theta[b]), 3, 2)
        np.testing.assert_allclose(to_np(m.psi()[b]), bf["psi"], rtol=1e-12)
        np.testing.assert_allclose(to_np(m.probs()[b]), bf["probs"], atol=1e-12)
        np.testing.assert_allclose(to_np(m.expectation()[b]), bf["eta"], atol=1e-12)
        np.testing.assert_allclose(to_np(m.fisher()[b]), bf["fisher"], atol=1e-12)
        p = bf["probs"]
        np.testing.assert_allclose(to_np(m.entropy()[b]), -(p * np.log(p)).sum(), rtol=1e-12)
    lp = m.log_prob(torch.tensor([[1, 0, 1]], device=device))
    assert lp.shape == (2,)
    assert m.sample(7).shape == (7, 2, 3)


def test_psi_is_differentiable():
    m = Ising(3, 2)
    m.psi().backward()
    torch.testing.assert_close(m.theta.grad, m.expectation().detach())


def test_dtype_and_device_follow_module():
    m = Ising(3, 2).float()
    assert m.psi().dtype == torch.float32
    m = m.double()
    assert m.probs().dtype == torch.float64


def test_heat_capacity_matches_finite_difference():
    theta = torch.tensor([-1.0, -0.5, 0.3, 1.0, -0.4, 0.8])
    m = Ising.from_theta(theta, 3, 2)
    h = 1e-4
    psi = lambda b: float(Ising.from_theta(b * theta, 3, 2).psi().detach())  # noqa: E731
    fd = (psi(1 + h) - 2 * psi(1) + psi(1 - h)) / h**2
    assert abs(float(m.heat_capacity().detach()) - fd) / fd < 1e-6


def test_stationary_fit_ml_matches_moments():
    theta = torch.tensor([-1.0, -0.5, -1.5, 1.0, 0.0, -0.5])
    spikes = generate_spikes(theta[None], 5000, seed=0)
    m = Ising(3, 2).fit(spikes[0])
    y = spikes[0].double()
    emp = torch.cat([y.mean(0), torch.stack([(y[:, i] * y[:, j]).mean() for i, j in [(0, 1), (0, 2), (1, 2)]])])
    torch.testing.assert_close(m.expectation().detach(), emp, atol=1e-9, rtol=0)


def test_stationary_fit_map_gradient_zero():
    theta = torch.tensor([-1.0, -0.5, -1.5, 1.0, 0.0, -0.5])
    spikes = generate_spikes(theta[None], 300, seed=1)
    m = Ising(3, 2).fit(spikes, prior_var=0.1)
    R = 300
    y = spikes[0].double()
    emp = torch.cat([y.mean(0), torch.stack([(y[:, i] * y[:, j]).mean() for i, j in [(0, 1), (0, 2), (1, 2)]])])
    grad = R * (emp - m.expectation().detach()) - m.theta.detach() / 0.1
    assert grad.abs().max() / R < 1e-9


def test_ml_fit_warns_without_prior_when_statistic_is_zero():
    spikes = np.zeros((50, 2), dtype=np.uint8)
    spikes[:10, 0] = 1
    with pytest.warns(RuntimeWarning, match="prior_var"):
        Ising(2, 2).fit(spikes, max_iter=30)


@pytest.mark.parametrize("bad", [np.array([[0, 2]]), np.zeros((2, 2, 2, 2)), np.array([[np.nan, 0.0]])])
def test_fit_validation(bad):
    with pytest.raises(ValueError, match="spikes"):
        Ising(2, 2).fit(bad)


def test_from_theta_validation():
    with pytest.raises(ValueError, match="theta"):
        Ising.from_theta(torch.zeros(4), 3, 2)
    with pytest.raises(ValueError, match="N"):
        Ising(0, 1)


def _assert_moments_match_brute_force(m, theta):
    for b in range(theta.shape[0]):
        bf = brute_force(to_np(theta[b]), m.N, m.order)
        np.testing.assert_allclose(to_np(m.psi()[b]), bf["psi"], rtol=1e-12)
        np.testing.assert_allclose(to_np(m.expectation()[b]), bf["eta"], atol=1e-12)
        np.testing.assert_allclose(to_np(m.fisher()[b]), bf["fisher"], atol=1e-12)


def test_cached_moments_follow_in_place_changes_of_theta(device):
    g = torch.Generator().manual_seed(5)
    theta1 = torch.randn(2, 10, generator=g, dtype=torch.float64)
    theta2 = torch.randn(2, 10, generator=g, dtype=torch.float64)
    m = Ising.from_theta(theta1, N=4, order=2).to(device)
    _assert_moments_match_brute_force(m, theta1)
    with torch.no_grad():
        m.theta.copy_(theta2.to(device))  # in place: the cached moments of theta1 must not be served
    _assert_moments_match_brute_force(m, theta2)
    with torch.no_grad():
        m.theta[1, 3] += 0.7  # in place through a view
    theta3 = theta2.clone()
    theta3[1, 3] += 0.7
    _assert_moments_match_brute_force(m, theta3)
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    opt.zero_grad()
    m.psi().sum().backward()
    opt.step()  # theta <- theta - 0.1 eta
    eta3 = torch.tensor(np.stack([brute_force(to_np(t), 4, 2)["eta"] for t in theta3]))
    _assert_moments_match_brute_force(m, theta3 - 0.1 * eta3)


def test_cached_moments_follow_a_replaced_or_converted_theta():
    theta1 = torch.tensor([[-1.0, 0.5, -0.3, 1.2, -0.7, 0.4]], dtype=torch.float64)
    theta2 = torch.tensor([[0.2, -1.0, 0.0, 0.3, 0.3, -2.0]], dtype=torch.float64)
    m = Ising.from_theta(theta1, N=3, order=2)
    m.fisher()
    m.theta = torch.nn.Parameter(theta2.clone())
    _assert_moments_match_brute_force(m, theta2)
    m.float()
    assert m.psi().dtype == torch.float32 and m.fisher().dtype == torch.float32
    np.testing.assert_allclose(to_np(m.expectation()[0]), brute_force(to_np(theta2[0]), 3, 2)["eta"], atol=1e-6)
    m.load_state_dict({"theta": theta1.float()})
    np.testing.assert_allclose(to_np(m.psi()[0]), brute_force(to_np(theta1[0]), 3, 2)["psi"], rtol=1e-6)


def test_derivatives_of_cached_moments_are_the_next_moments():
    # d psi = eta, d eta = G (Hessian of psi), d G = third cumulants: against autograd through the transforms
    from torch_ising import moments

    N, O = 4, 2
    theta = torch.randn(10, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    m = Ising.from_theta(theta, N, O)
    H = torch.autograd.functional.hessian(lambda t: moments.log_partition(t, N, O), theta)
    (g,) = torch.autograd.grad(m.psi(), m.theta, create_graph=True)
    np.testing.assert_allclose(to_np(g.detach()), brute_force(to_np(theta), N, O)["eta"], atol=1e-12)
    rows = torch.stack([torch.autograd.grad(g[i], m.theta, retain_graph=True)[0] for i in range(10)])
    torch.testing.assert_close(rows, H, rtol=0, atol=1e-10)
    v = torch.randn(10, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    (d_eta,) = torch.autograd.grad(m.expectation() @ v, m.theta)
    torch.testing.assert_close(d_eta, H @ v, rtol=0, atol=1e-10)
    t = theta.clone().requires_grad_(True)
    (want,) = torch.autograd.grad(v @ moments.fisher(t, N, O) @ v, t)
    (got,) = torch.autograd.grad(v @ m.fisher() @ v, m.theta)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-10)
    (got_h,) = torch.autograd.grad(v @ (torch.autograd.grad(g @ v, m.theta, create_graph=True)[0]), m.theta)
    torch.testing.assert_close(got_h, want, rtol=0, atol=1e-10)
