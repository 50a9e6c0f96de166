import itertools

import numpy as np
import pytest
import torch

from tests.common import bf_patterns, bf_subsets, to_np
from torch_ising import basis


@pytest.mark.parametrize("N,O", [(1, 1), (3, 2), (4, 2), (5, 3), (6, 6)])
def test_subsets_and_D(N, O):
    assert basis.subsets(N, O) == tuple(bf_subsets(N, O))
    assert basis.compute_D(N, O) == len(bf_subsets(N, O))
    masks = to_np(basis.subset_masks(N, O))
    assert [sum(1 << i for i in s) for s in bf_subsets(N, O)] == masks.tolist()


def test_D_4_2_is_10():
    assert basis.compute_D(4, 2) == 10


@pytest.mark.parametrize("N", [1, 2, 3, 5, 8])
def test_seed_pattern_order(N):
    assert np.array_equal(to_np(basis.enumerate_patterns(N)), bf_patterns(N))


def test_seed_order_N3_literal():
    rows = ["".join(map(str, r)) for r in to_np(basis.enumerate_patterns(3))]
    assert rows == ["000", "100", "010", "001", "110", "101", "011", "111"]


def test_mask_seed_roundtrip():
    v = torch.randn(3, 2**5)
    assert torch.equal(basis.seed_to_mask(basis.mask_to_seed(v, 5), 5), v)


@pytest.mark.parametrize("O", [1, 2, 3])
def test_sufficient_stats(O):
    rng = np.random.default_rng(0)
    spikes = (rng.random((7, 11, 4)) < 0.4).astype(np.uint8)
    y = to_np(basis.sufficient_stats(spikes, O))
    subs = bf_subsets(4, O)
    want = np.array([[np.mean([np.prod(spikes[t, r, list(s)]) for r in range(11)]) for s in subs] for t in range(7)])
    np.testing.assert_allclose(y, want, atol=1e-15)


def test_window_rebinning():
    rng = np.random.default_rng(1)
    spikes = (rng.random((10, 3, 2)) < 0.2).astype(np.uint8)
    y = to_np(basis.sufficient_stats(spikes, 1, window=3))
    assert y.shape == (3, 2)
    want = np.array([spikes[3 * t : 3 * t + 3].max(axis=0).mean(axis=0) for t in range(3)])
    np.testing.assert_allclose(y, want)


def test_features_of_patterns():
    X = bf_patterns(4)
    F = to_np(basis.features(torch.as_tensor(X), 4, 3))
    want = np.array([[np.prod(x[list(s)]) for s in itertools.chain(bf_subsets(4, 3))] for x in X])
    np.testing.assert_array_equal(F, want)


@pytest.mark.parametrize(
    "call",
    [
        lambda: basis.compute_D(0, 1),
        lambda: basis.compute_D(3, 0),
        lambda: basis.compute_D(3, 4),
        lambda: basis.sufficient_stats(np.full((2, 3, 2), 2), 2),
        lambda: basis.sufficient_stats(np.full((2, 3, 2), np.nan), 2),
        lambda: basis.sufficient_stats(np.zeros((3, 2)), 2),
        lambda: basis.sufficient_stats(np.zeros((3, 2, 2)), 2, window=0),
    ],
)
def test_validation_errors(call):
    with pytest.raises(ValueError):
        call()


def test_error_names_argument():
    with pytest.raises(ValueError, match="order"):
        basis.compute_D(3, 4)
    with pytest.raises(ValueError, match="spikes.*binary"):
        basis.sufficient_stats(np.full((2, 3, 2), 2), 2)
    with pytest.raises(ValueError, match="window"):
        basis.sufficient_stats(np.zeros((3, 2, 2)), 2, window=0)


def test_index_tensors_are_fresh_copies():
    """Editing a returned index tensor in place leaves the next call (and every cache) as it was."""
    want = np.array([sum(1 << i for i in s) for s in bf_subsets(4, 2)])
    for _ in range(2):
        m = basis.subset_masks(4, 2)
        np.testing.assert_array_equal(m.numpy(), want)
        m.fill_(-1)
        o = basis.or_index(4, 2)
        np.testing.assert_array_equal(o.numpy(), want[:, None] | want[None, :])
        o.fill_(-1)
        s = basis.seed_order_masks(4)
        np.testing.assert_array_equal(np.sort(s.numpy()), np.arange(16))
        s.fill_(-1)
