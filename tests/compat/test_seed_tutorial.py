"""The seed tutorial (../shared/seed/000_ff67d209fee2cd17.txt), every code cell in order, on torch_ising.compat.

Only the import cell is changed: ``sys.path.insert(0, 'ssll'); import ssll, ...`` becomes
``from torch_ising.compat import ssll, synthesis, transforms, energies`` (and two fits are wrapped in
``fit_warns``: their data have a pair of neurons that never fires together, a FitWarning). After each cell the
test asserts the seed's own checks: the "Setup OK" line, probabilities summing to 1, D = 10, the
printed probabilities of Section 2's fixed thetas (compared with the text the seed prints), a
positive coupling estimate for emd_strong, an independent-model S_ratio of about 0, and
S_ratio < 0.01 for uncoupled data.

The seed draws its data without seeds; the compat module draws its torch seeds from numpy's
global random state, which the fixture below seeds, so the run is reproducible.
"""

# --- cell 1: imports (the only changed cell) ---
import matplotlib.pyplot as plt
import numpy as np
import pytest

from tests.common import NEVER_FIRE, fit_warns
from torch_ising.compat import energies, ssll, synthesis, transforms


@pytest.fixture(autouse=True)
def _numpy_seed():
    state = np.random.get_state()
    np.random.seed(20120301)
    yield
    np.random.set_state(state)
    plt.close("all")


def _lines(capsys) -> list[str]:
    return capsys.readouterr().out.splitlines()


def test_seed_tutorial_runs_unchanged(capsys):
    # --- cell 2: utility functions ---
    class utils:
        @staticmethod
        def plot_pattern_probs(p_t, N):
            """Bar chart of 2^N pattern probabilities."""
            patterns = transforms.enumerate_patterns(N)
            xlabels = ["".join(str(b) for b in pat) for pat in patterns]
            fig, ax = plt.subplots(figsize=(max(5, 2**N * 0.5), 3))
            ax.bar(range(2**N), p_t, color="steelblue")
            ax.set_xticks(range(2**N))
            ax.set_xticklabels(xlabels)
            ax.set_xlabel("Pattern")
            ax.set_ylabel("Probability")
            plt.tight_layout()

        @staticmethod
        def plot_pattern_comparison(p_list, labels, N):
            """Side-by-side bar chart comparing multiple pattern distributions."""
            patterns = transforms.enumerate_patterns(N)
            xlabels = ["".join(str(b) for b in pat) for pat in patterns]
            n = 2**N
            x = np.arange(n)
            w = 0.8 / len(p_list)
            offsets = (np.arange(len(p_list)) - (len(p_list) - 1) / 2) * w
            fig, ax = plt.subplots(figsize=(max(5, n * 0.7), 3))
            for p, label, offset in zip(p_list, labels, offsets):  # noqa: B905 - the seed's code
                ax.bar(x + offset, p, w, label=label)
            ax.set_xticks(x)
            ax.set_xticklabels(xlabels)
            ax.set_xlabel("Pattern")
            ax.set_ylabel("Probability")
            ax.legend()
            plt.tight_layout()

    # --- cell 3: setup check ---
    N_test, O_test, T_test, R_test = 3, 2, 5, 10
    transforms.initialise(N_test, O_test)
    theta_test = synthesis.generate_thetas(N_test, O_test, T_test)
    p_test = np.array([transforms.compute_p(theta_test[t]) for t in range(T_test)])
    spikes_test = synthesis.generate_spikes(p_test, R_test)
    assert spikes_test.shape == (T_test, R_test, N_test), f"Expected (5,10,3), got {spikes_test.shape}"
    print(f"Setup OK: shapes {theta_test.shape} {p_test.shape} {spikes_test.shape}")
    assert _lines(capsys) == ["Setup OK: shapes (5, 6) (5, 8) (5, 10, 3)"]
    np.testing.assert_allclose(p_test.sum(axis=1), 1.0, rtol=0, atol=1e-12)

    # ===== Section 1 =====
    # --- cell 4: example ---
    N, O, T, R = 3, 2, 1, 200
    transforms.initialise(N, O)
    theta = synthesis.generate_thetas(N, O, T)
    p = np.array([transforms.compute_p(theta[t]) for t in range(T)])
    spikes = synthesis.generate_spikes(p, R)
    print("theta shape:", theta.shape)
    print("p shape:    ", p.shape)
    print("spikes shape:", spikes.shape)
    assert _lines(capsys) == ["theta shape: (1, 6)", "p shape:     (1, 8)", "spikes shape: (1, 200, 3)"]

    # --- cell 5: D for N = 4 ---
    N4 = 4
    transforms.initialise(N4, O)
    D4 = transforms.compute_D(N4, O)
    print("D =", D4, " expected:", N4 + N4 * (N4 - 1) // 2)
    assert _lines(capsys) == ["D = 10  expected: 10"]
    assert D4 == 10

    # --- cell 6: model rates vs empirical rates, R = 500 ---
    N, O, T, R = 3, 2, 1, 500
    transforms.initialise(N, O)
    theta = synthesis.generate_thetas(N, O, T)
    p = np.array([transforms.compute_p(theta[t]) for t in range(T)])
    spikes = synthesis.generate_spikes(p, R)
    expected_rates = np.array(transforms.compute_eta(p[0]))[:N]
    print("Expected rates (model): ", expected_rates.round(3))
    print("Empirical firing rates: ", spikes.mean(axis=(0, 1)).round(3))
    out = _lines(capsys)
    assert out[0].startswith("Expected rates (model): ") and out[1].startswith("Empirical firing rates: ")
    # "They should be close": binomial standard error sqrt(p (1 - p) / 500) <= 0.023; 5 standard errors
    se = np.sqrt(expected_rates * (1 - expected_rates) / R)
    assert np.all(np.abs(spikes.mean(axis=(0, 1)) - expected_rates) < 5 * se)

    # --- cell 7: pattern probabilities sum to 1 ---
    print("Pattern probabilities:", p[0].round(4))
    print("Sum:", p[0].sum())
    utils.plot_pattern_probs(p[0], N)
    (sum_line,) = [line for line in _lines(capsys) if line.startswith("Sum: ")]
    assert abs(float(sum_line[len("Sum: ") :]) - 1.0) < 1e-12
    assert abs(p[0].sum() - 1.0) < 1e-12

    # --- cell 8: raster image ---
    fig, ax = plt.subplots(figsize=(8, 3))
    ax.imshow(spikes[0, :30, :].T, aspect="auto", cmap="binary", interpolation="none")
    ax.set_xlabel("Trial")
    ax.set_ylabel("Neuron")
    ax.set_yticks([0, 1, 2])
    ax.set_yticklabels(["Neuron 0", "Neuron 1", "Neuron 2"])  # the seed ends this line with ';'

    # --- cell 9: mu1 = -4 lowers the firing rates ---
    theta_low = synthesis.generate_thetas(N, O, T, mu1=-4.0)
    p_low = np.array([transforms.compute_p(theta_low[t]) for t in range(T)])
    spikes_low = synthesis.generate_spikes(p_low, R)
    print("Empirical rates (mu1=-4.0):", spikes_low.mean(axis=(0, 1)).round(3))
    assert _lines(capsys)[0].startswith("Empirical rates (mu1=-4.0): ")
    assert spikes_low.mean() < spikes.mean()

    # ===== Section 2 =====
    # --- cell 10: N = 2, theta = (-1, -1, 0) ---
    N, O = 2, 2
    transforms.initialise(N, O)
    theta_ex = np.array([-1.0, -1.0, 0.0])
    p_ex = transforms.compute_p(theta_ex)
    patterns = transforms.enumerate_patterns(N)
    for i in range(len(p_ex)):
        print(f"Pattern {patterns[i]}: p = {p_ex[i]:.4f}")
    assert _lines(capsys) == [
        "Pattern [0 0]: p = 0.5344",
        "Pattern [1 0]: p = 0.1966",
        "Pattern [0 1]: p = 0.1966",
        "Pattern [1 1]: p = 0.0723",
    ]

    # --- cell 11: theta = (-3, 0, 0) ---
    theta_ex = np.array([-3.0, 0.0, 0.0])
    p_ex = transforms.compute_p(theta_ex)
    patterns = transforms.enumerate_patterns(N)
    p_n0 = p_ex[patterns[:, 0] == 1].sum()
    p_n1 = p_ex[patterns[:, 1] == 1].sum()
    print("P(neuron 0 fires):", p_n0.round(4))
    print("P(neuron 1 fires):", p_n1.round(4))
    assert _lines(capsys) == ["P(neuron 0 fires): 0.0474", "P(neuron 1 fires): 0.5"]

    # --- cell 12: positive coupling ---
    theta_coupled = np.array([-1.0, -1.0, 2.0])
    theta_uncoupled = np.array([-1.0, -1.0, 0.0])
    p_coupled = transforms.compute_p(theta_coupled)
    p_uncoupled = transforms.compute_p(theta_uncoupled)
    patterns = transforms.enumerate_patterns(N)
    both_idx = (patterns[:, 0] == 1) & (patterns[:, 1] == 1)
    print("P(both fire) with coupling:   ", p_coupled[both_idx][0].round(4))
    print("P(both fire) without coupling:", p_uncoupled[both_idx][0].round(4))
    utils.plot_pattern_comparison([p_uncoupled, p_coupled], ["zero coupling", "positive coupling"], N)
    assert _lines(capsys) == ["P(both fire) with coupling:    0.3655", "P(both fire) without coupling: 0.0723"]

    # --- cell 13: negative coupling ---
    theta_neg = np.array([-1.0, -1.0, -2.0])
    p_neg = transforms.compute_p(theta_neg)
    patterns = transforms.enumerate_patterns(N)
    neither_fire_idx = (patterns[:, 0] == 0) & (patterns[:, 1] == 0)
    both_fire_idx = (patterns[:, 0] == 1) & (patterns[:, 1] == 1)
    p_silent = p_neg[neither_fire_idx][0]
    p_both = p_neg[both_fire_idx][0]
    print("P(both fire):   ", p_both.round(4))
    print("P(both silent): ", p_silent.round(4))
    utils.plot_pattern_comparison([p_neg, p_uncoupled, p_coupled], ["negative", "zero", "positive"], N)
    assert _lines(capsys) == ["P(both fire):    0.0104", "P(both silent):  0.5701"]

    # --- cell 14: every compute_p sums to 1 ---
    for theta_test in [
        np.array([0.0, 0.0, 0.0]),
        np.array([-2.0, 1.0, 3.0]),
        np.array([0.5, -0.5, -1.5]),
    ]:
        p_test = transforms.compute_p(theta_test)
        print(f"sum(p) = {p_test.sum():.8f}")
    assert _lines(capsys) == ["sum(p) = 1.00000000"] * 3

    # ===== Section 3 =====
    # --- cell 15: fit N=3, O=2, T=1, R=300 ---
    N, O, T, R = 3, 2, 1, 300
    transforms.initialise(N, O)
    theta = synthesis.generate_thetas(N, O, T)
    p = np.array([transforms.compute_p(theta[t]) for t in range(T)])
    spikes = synthesis.generate_spikes(p, R)
    emd = ssll.run(spikes, order=O, EM_Info=False)
    print("N =", emd.N, " D =", emd.D, " T =", emd.T)
    print("Inferred \u03b8:", emd.theta_s[0].round(3))
    print("True \u03b8:    ", theta[0].round(3))
    out = _lines(capsys)
    assert out[0] == "N = 3  D = 6  T = 1"
    assert emd.theta_s.shape == (1, 6) and emd.eta_s.shape == (1, 6)

    # --- cell 16: MSE ---
    mse = np.mean((emd.theta_s[0] - theta[0]) ** 2)
    print(f"MSE = {mse:.4f}")
    assert _lines(capsys)[0].startswith("MSE = ")

    # --- cell 17: R = 1000 ---
    spikes_large = synthesis.generate_spikes(p, 1000)
    emd_large = ssll.run(spikes_large, order=O, EM_Info=False)
    mse_large = np.mean((emd_large.theta_s[0] - theta[0]) ** 2)
    print(f"MSE with R=1000: {mse_large:.4f}")
    assert _lines(capsys)[0].startswith("MSE with R=1000: ")

    # --- cell 18: EM convergence: "the values should increase monotonically and plateau" ---
    fig, ax = plt.subplots(figsize=(7, 3))
    ax.plot(emd.mll_list)
    ax.set_xlabel("EM iteration")
    ax.set_ylabel("Log marginal likelihood")
    assert np.all(np.diff(emd.mll_list) > 0)
    # the published stopping rule: the last relative change is below 1e-4
    assert (emd.mll_list[-2] - emd.mll_list[-1]) / emd.mll_list[-2] < 1e-4

    # --- cell 19: R = 30 ---
    spikes_tiny = synthesis.generate_spikes(p, 30)
    with fit_warns(NEVER_FIRE):  # 30 trials: neurons 0 and 1, and 0 and 2, never fire together
        emd_tiny = ssll.run(spikes_tiny, order=O, EM_Info=False)
    print(f"MSE with R=30: {np.mean((emd_tiny.theta_s[0] - theta[0]) ** 2):.4f}")
    print("Inferred:", emd_tiny.theta_s[0].round(3))
    print("True:    ", theta[0].round(3))
    assert _lines(capsys)[0].startswith("MSE with R=30: ")

    # --- cell 20: posterior standard deviation ---
    print("sigma_s shape:", emd.sigma_s.shape)
    std_first = np.sqrt(emd.sigma_s[0, 0, 0])
    err_first = abs(emd.theta_s[0, 0] - theta[0, 0])
    print(f"Posterior std (\u03b8\u2081): {std_first:.4f}")
    print(f"Actual error:        {err_first:.4f}")
    out = _lines(capsys)
    assert out[0] == "sigma_s shape: (1, 6, 6)"
    assert 0 < std_first < 1

    # ===== Section 4 =====
    # --- cell 21: realign ---
    # Realign: run this cell if you are starting Section 4 without having run Section 3
    # Sets up: N, O, T, R, theta, p, spikes, emd
    N, O, T, R = 3, 2, 1, 300
    transforms.initialise(N, O)
    theta = synthesis.generate_thetas(N, O, T)
    p = np.array([transforms.compute_p(theta[t]) for t in range(T)])
    spikes = synthesis.generate_spikes(p, R)
    emd = ssll.run(spikes, order=O, EM_Info=False)
    print(f"Realign OK \u2014 N={N}, T={T}, R={R}, emd fitted")
    assert _lines(capsys) == ["Realign OK \u2014 N=3, T=1, R=300, emd fitted"]

    # --- cell 22: inferred vs empirical rates ---
    emp_rates = spikes.mean(axis=(0, 1))
    print("Empirical rates:  ", emp_rates.round(3))
    print("Inferred \u03b7\u2081:      ", emd.eta_s[0, :N].round(3))
    capsys.readouterr()

    # --- cell 23: pairwise co-firing rates ---
    print("Inferred \u03b7\u2082:", emd.eta_s[0, N:].round(3))
    for i, j in [(0, 1), (0, 2), (1, 2)]:
        emp = (spikes[:, :, i] * spikes[:, :, j]).mean()
        print(f"Empirical P(x{i}=1, x{j}=1): {emp:.3f}")
    assert len(_lines(capsys)) == 4

    # --- cell 24: independent model ---
    emd_ind = ssll.run(spikes, order=1, EM_Info=False)
    print("Independent model \u03b7\u2081:", emd_ind.eta_s[0, :N].round(3))
    print("Pairwise model \u03b7\u2081:   ", emd.eta_s[0, :N].round(3))
    capsys.readouterr()
    assert emd_ind.D == 3 and emd_ind.eta_s.shape == (1, 3)

    # --- cell 25: biases of the two models ---
    print("Pairwise \u03b8\u2081:    ", emd.theta_s[0, :N].round(3))
    print("Independent \u03b8\u2081: ", emd_ind.theta_s[0, :N].round(3))
    capsys.readouterr()

    # --- cell 26: strong positive coupling ---
    N, O, T, R = 3, 2, 1, 300
    transforms.initialise(N, O)
    theta_strong_gt = np.array([-1.5, -1.5, -1.5, 2.0, 0.0, 0.0]).reshape(1, -1)
    p_strong = np.array([transforms.compute_p(theta_strong_gt[t]) for t in range(T)])
    spikes_strong = synthesis.generate_spikes(p_strong, R)
    emd_strong = ssll.run(spikes_strong, order=O, EM_Info=False)
    print("Coupling \u03b8\u2081\u2082:        ", emd_strong.theta_s[0, N].round(3))
    print("Co-firing rate \u03b7\u2081\u2082:  ", emd_strong.eta_s[0, N].round(3))
    print("Baseline \u03b7\u2081\u2082:        ", emd.eta_s[0, N].round(3))
    capsys.readouterr()
    assert emd_strong.theta_s[0, N] > 0
    assert emd_strong.eta_s[0, N] > emd.eta_s[0, N]

    # ===== Section 5 =====
    # --- cell 27: realign ---
    # Realign: run this cell if you are starting Section 5 without having run Sections 3 and 4
    # Sets up: N, O, T, R, theta, p, spikes, emd, emd_ind, emd_strong
    N, O, T, R = 3, 2, 1, 300
    transforms.initialise(N, O)
    theta = synthesis.generate_thetas(N, O, T)
    p = np.array([transforms.compute_p(theta[t]) for t in range(T)])
    spikes = synthesis.generate_spikes(p, R)
    with fit_warns(NEVER_FIRE):  # neurons 0 and 2 never fire together in these 300 trials
        emd = ssll.run(spikes, order=O, EM_Info=False)
    emd_ind = ssll.run(spikes, order=1, EM_Info=False)
    transforms.initialise(N, O)  # ssll.run(order=1) leaves transforms in O=1 state; re-initialise for O=2
    theta_strong_gt = np.array([-1.5, -1.5, -1.5, 2.0, 0.0, 0.0]).reshape(1, -1)
    p_strong = np.array([transforms.compute_p(theta_strong_gt[t]) for t in range(T)])
    spikes_strong = synthesis.generate_spikes(p_strong, R)
    emd_strong = ssll.run(spikes_strong, order=O, EM_Info=False)
    print("Realign OK \u2014 emd, emd_ind, emd_strong ready")
    assert _lines(capsys) == ["Realign OK \u2014 emd, emd_ind, emd_strong ready"]

    # --- cell 28: energies of the fitted model ---
    energies.get_energies(emd)
    print(f"S\u2081 (independent) = {emd.S1[0]:.4f}")
    print(f"S\u2082 (pairwise)    = {emd.S2[0]:.4f}")
    print(f"S_ratio          = {emd.S_ratio[0]:.4f}")
    capsys.readouterr()
    assert emd.S1.shape == emd.S2.shape == emd.S_ratio.shape == (1,)
    assert emd.S1[0] >= emd.S2[0]

    # --- cell 29: KL divergence ---
    print(f"KL divergence: {emd.dkl[0]:.4f}")
    capsys.readouterr()
    assert emd.dkl[0] >= 0

    # --- cell 30: strong coupling ---
    energies.get_energies(emd_strong)
    print(f"Weak coupling S_ratio:   {emd.S_ratio[0]:.4f}")
    print(f"Strong coupling S_ratio: {emd_strong.S_ratio[0]:.4f}")
    capsys.readouterr()
    assert emd_strong.S_ratio[0] > emd.S_ratio[0]

    # --- cell 31: the independent model's S_ratio is about 0 ---
    energies.get_energies(emd_ind)
    print(f"Independent model S_ratio: {emd_ind.S_ratio[0]:.4f}")
    out = _lines(capsys)
    assert out[0] in ("Independent model S_ratio: 0.0000", "Independent model S_ratio: -0.0000")
    assert abs(emd_ind.S_ratio[0]) < 1e-12

    # --- cell 32: log-likelihood gain ---
    print(f"LL gain (pairwise vs independent): {emd.llk2 - emd.llk1}")
    print(f"LL gain (strong coupling): {emd_strong.llk2 - emd_strong.llk1}")
    capsys.readouterr()
    assert (emd.llk2 - emd.llk1).shape == (1,)
    assert (emd_strong.llk2 - emd_strong.llk1)[0] > 0

    # --- cell 33: uncoupled data give S_ratio close to zero ---
    theta_ind_gt = np.array([-1.5, -1.5, -1.5, 0.0, 0.0, 0.0]).reshape(1, -1)
    p_ind = np.array([transforms.compute_p(theta_ind_gt[0])])
    spikes_ind = synthesis.generate_spikes(p_ind, R)
    emd_ind_data = ssll.run(spikes_ind, order=O, EM_Info=False)
    energies.get_energies(emd_ind_data)
    print(f"True independent data S_ratio: {emd_ind_data.S_ratio[0]:.4f}")
    assert _lines(capsys)[0].startswith("True independent data S_ratio: ")
    assert emd_ind_data.S_ratio[0] < 0.01
