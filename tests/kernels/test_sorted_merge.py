"""The compiled merge walk against the pure-NumPy walk it replaces on the host."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kernels import _numerical


def test_the_extension_is_built():
    assert _numerical.native_walk_available(), "kernels._sorted_merge did not compile"


def _both(ref: np.ndarray, cur: np.ndarray, want_w1: bool = True):
    native = _numerical._merged_pass(ref, cur, want_ks=True, want_w1=want_w1, xp=np)
    pure = _numerical._merged_pass(ref, cur, want_ks=True, want_w1=want_w1, xp=np, native=False)
    return native, pure


@pytest.mark.parametrize("seed", range(12))
def test_native_walk_equals_numpy_walk(seed):
    rng = np.random.default_rng(seed)
    # Sizes that cross the NumPy walk's block size, ties within and across the samples, and
    # samples that do not overlap at all.
    n1, n2 = rng.integers(1, 200_000, size=2)
    kind = seed % 4
    if kind == 0:
        ref, cur = rng.normal(size=n1), rng.normal(0.1, size=n2)
    elif kind == 1:
        ref, cur = rng.poisson(3, n1).astype(float), rng.poisson(3.2, n2).astype(float)
    elif kind == 2:
        ref, cur = rng.uniform(size=n1), rng.uniform(2, 3, size=n2)
    else:
        ref, cur = np.round(rng.normal(size=n1), 2), np.round(rng.normal(size=n2), 1)
    ref.sort()
    cur.sort()
    (hi, lo, w1), (hi_p, lo_p, w1_p) = _both(ref, cur)
    assert (hi, lo) == (hi_p, lo_p)  # bit for bit: the same expression at the same points
    assert w1 == pytest.approx(w1_p, rel=1e-12)


def test_infinities_order_like_values_in_the_ks_walk():
    ref = np.array([-math.inf, -1.0, 0.0, 0.0, math.inf])
    cur = np.array([-math.inf, -math.inf, 0.0, 2.0])
    native, pure = _both(ref, cur, want_w1=False)
    assert native[:2] == pure[:2]


def test_single_values_and_disjoint_samples():
    for ref, cur in [([1.0], [1.0]), ([1.0], [2.0]), ([3.0], [1.0, 2.0]), ([1.0, 1.0], [1.0])]:
        native, pure = _both(np.array(ref), np.array(cur))
        assert native[:2] == pure[:2]
        assert native[2] == pytest.approx(pure[2], rel=1e-15)


def test_bad_inputs_are_refused_not_walked():
    from kernels import _sorted_merge

    with pytest.raises(ValueError, match="NaN"):
        _sorted_merge.merge_walk(np.array([1.0, math.nan]), np.array([0.5]), True)
    with pytest.raises(TypeError, match="float64"):
        _sorted_merge.merge_walk(np.array([1, 2]), np.array([0.5]), True)
    with pytest.raises(TypeError, match="float64"):
        _sorted_merge.merge_walk(np.zeros((2, 2)), np.array([0.5]), True)
    with pytest.raises((ValueError, BufferError)):
        _sorted_merge.merge_walk(np.arange(6.0)[::2], np.array([0.5]), True)
