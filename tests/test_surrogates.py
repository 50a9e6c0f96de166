"""Trial-shuffle surrogates and the surrogate test, against counts, brute-force frequencies and separate fits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import torch_ising as ti


def _spikes(T=6, R=12, N=3, seed=0):
    th = ti.generate_thetas(N, 2, T, mu1=-0.5, seed=seed)
    return ti.generate_spikes(th, R, seed=seed + 1)


def test_shuffle_keeps_every_psth_and_permutes_each_column(device):
    x = _spikes().to(device)
    s = ti.trial_shuffle(x, 7, seed=0)
    assert s.shape == (7, *x.shape) and s.dtype == x.dtype
    # every (surrogate, bin, neuron) column is a permutation of the data's column: same sorted values
    cols = s.permute(0, 1, 3, 2).sort(-1).values
    ref = x.permute(0, 2, 1).sort(-1).values
    assert torch.equal(cols, ref.expand_as(cols))
    assert torch.equal(ti.trial_shuffle(x, 7, seed=0), s)  # seeded
    assert not torch.equal(ti.trial_shuffle(x, 7, seed=1), s)


def test_shuffle_is_uniform_over_permutations_and_independent_across_neurons():
    # one bin, 3 trials, 2 neurons, each with one spike in trial 0: under independent uniform permutations the
    # spike lands in each trial with probability 1/3, and the two neurons coincide with probability 1/3
    x = torch.zeros(1, 3, 2, dtype=torch.uint8)
    x[0, 0] = 1
    s = ti.trial_shuffle(x, 30_000, seed=3)
    where = s[:, 0].argmax(1)  # (n, 2): the trial holding each neuron's spike
    freq = torch.stack([(where == r).double().mean(0) for r in range(3)])
    np.testing.assert_allclose(freq.numpy(), 1 / 3, atol=0.01)
    assert abs(float((where[:, 0] == where[:, 1]).double().mean()) - 1 / 3) < 0.01


def test_shuffle_with_mask_moves_only_observed_entries(device):
    x = _spikes(T=5, R=10, N=3).to(device)
    g = torch.Generator().manual_seed(0)
    mask = (torch.rand(5, 10, generator=g) > 0.3).to(device)
    s = ti.trial_shuffle(x, 50, seed=0, mask=mask)
    assert torch.equal(s[:, ~mask], x[~mask].expand(50, -1, -1))  # unobserved entries stay
    m = mask[None, :, :, None]
    assert torch.equal((s * m).sum(2), (x * mask[:, :, None]).sum(1).expand(50, -1, -1))  # observed PSTH kept
    # the observed entries are permuted among themselves: each observed column keeps its sorted values
    for t in range(5):
        cols = s[:, t][:, mask[t]].sort(1).values
        assert torch.equal(cols, x[t][mask[t]].sort(0).values.expand_as(cols))


def test_surrogate_test_matches_separate_fits():
    x = _spikes(T=4, R=20, N=2, seed=4)
    n = 4
    stat = lambda r: r.theta_s[:, 2]  # noqa: E731 - the coupling theta_01
    st = ti.surrogate_test(x, 2, statistic=stat, n=n, seed=5, alternative="two-sided", max_iter=200)
    surr = ti.trial_shuffle(x, n, seed=5)
    single = [ti.fit(d, 2, progress=False, max_iter=200) for d in [x, *surr]]
    values = torch.stack([stat(r) for r in single])
    np.testing.assert_allclose(st.observed.numpy(), values[0].numpy(), atol=1e-6)
    np.testing.assert_allclose(st.surrogates.numpy(), values[1:].numpy(), atol=1e-6)
    obs, sv = values[0], values[1:]
    for t in range(4):  # the rank p-value, counted by hand
        g = (1 + sum(float(v[t]) >= float(obs[t]) for v in sv)) / (n + 1)
        le = (1 + sum(float(v[t]) <= float(obs[t]) for v in sv)) / (n + 1)
        assert float(st.p_value[t]) == pytest.approx(min(1.0, 2 * min(g, le)))
    vec = ti.surrogate_test(x, 2, statistic=lambda r: r.theta_s[..., 2], n=n, seed=5, vectorized=True, max_iter=200)
    np.testing.assert_allclose(vec.surrogates.numpy(), st.surrogates.numpy(), atol=1e-12)
    assert st.result.theta_s.shape == (4, 3) and st.batch.theta_s.shape == (n + 1, 4, 3)
    lo, hi = st.band(0.5)
    assert bool((lo <= hi).all())


def test_default_statistic_is_s_ratio():
    x = _spikes(T=3, R=15, N=3, seed=2)
    st = ti.surrogate_test(x, 2, n=3, seed=0, max_iter=100)
    np.testing.assert_allclose(st.observed.numpy(), st.result.thermodynamics().S_ratio.numpy(), atol=1e-12)
    assert st.alternative == "greater" and bool(((st.p_value >= 0.25) & (st.p_value <= 1)).all())


def test_bad_inputs_name_the_argument():
    x = _spikes(T=3, R=5, N=2)
    for call, name in [
        (lambda: ti.trial_shuffle(x, 0), "n must be"),
        (lambda: ti.trial_shuffle(x, 2, mask=torch.ones(3, 4, dtype=torch.bool)), "mask must have shape"),
        (lambda: ti.trial_shuffle(x, 2, mask=torch.full((3, 5), 0.5)), "mask must be boolean"),
        (lambda: ti.trial_shuffle(x, 2, seed=1.5), "seed must be"),
        (lambda: ti.surrogate_test(x, 2, n=0), "n must be"),
        (lambda: ti.surrogate_test(x, 2, n=2, alternative="bigger"), "alternative must be"),
        (lambda: ti.surrogate_test(x, 2, n=2, statistic=3), "statistic must be"),
    ]:
        with pytest.raises(ValueError, match=name) as e:
            call()
        assert "\n" not in str(e.value)
    import inspect

    if "mask" not in inspect.signature(ti.fit).parameters:  # until fit takes a mask, a masked test is refused
        with pytest.raises(ValueError, match="^mask: this version of ti.fit takes no mask"):
            ti.surrogate_test(x, 2, n=2, mask=torch.ones(3, 5, dtype=torch.bool))


def test_plot_surrogates():
    import matplotlib.pyplot as plt

    x = _spikes(T=4, R=15, N=2, seed=1)
    st = ti.surrogate_test(x, 2, n=3, seed=0, max_iter=50)
    fig, ax = ti.plotting.plot_surrogates(st, label="S_ratio")
    assert ax.get_ylabel() == "S_ratio" and "3 trial-shuffle surrogates" in ax.get_title()
    plt.close(fig)
