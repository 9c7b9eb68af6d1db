"""The low-memory paths give the same answers as the plain ones.

The NumPy walk's blockwise merge (KS / Wasserstein without a full n1 + n2 merge; the GPU path's
algorithm, and the host's when the C walk is not built), reused sort buffers,
dictionary-encoded and pandas categoricals (codes, no per-row objects), zero-copy Arrow
numerical columns, and the large-n KS p-value branches evaluated without `scipy.stats`.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from drift_helpers import finite, nonmissing, one_feature
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import stats as sps

import kernels
from kernels import _numerical, _pvalues

NUM = ["ks", "wasserstein", "psi", "jensen_shannon", "hellinger", "mean_shift", "std_shift"]
CAT = ["chi2", "psi", "jensen_shannon", "hellinger", "tvd", "unseen_share"]
ROOT = Path(__file__).resolve().parents[2]


def _check_ks_w1(ref: np.ndarray, cur: np.ndarray) -> None:
    feat = one_feature(ref, cur, stats=["ks", "wasserstein"])
    expected = sps.ks_2samp(nonmissing(ref), nonmissing(cur))
    assert feat["ks"]["statistic"] == float(expected.statistic)
    assert feat["ks"]["pvalue"] == pytest.approx(float(expected.pvalue), rel=1e-6, abs=1e-300)
    r, c = finite(ref), finite(cur)
    if r.size and c.size:
        w1 = sps.wasserstein_distance(r, c)
        assert feat["wasserstein"]["value"] == pytest.approx(w1, rel=1e-9, abs=1e-12)


_pool = st.sampled_from([-2.5, -1.0, 0.0, 0.5, 1.0, 3.0, 1e6, math.nan, math.inf, -math.inf])


@pytest.mark.parametrize("chunk", [1, 2, 3, 7])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_blockwise_merge_matches_scipy_with_tiny_blocks(monkeypatch, chunk, data):
    # Tiny blocks put block boundaries inside runs of ties, at infinities, and where one
    # sample lies wholly between two values of the other.
    monkeypatch.setattr(_numerical, "_CHUNK", chunk)
    monkeypatch.setattr(_numerical, "_sorted_merge", None)  # the NumPy walk, not the C one
    ref = data.draw(arrays(np.float64, st.integers(1, 40), elements=_pool), label="ref")
    cur = data.draw(arrays(np.float64, st.integers(1, 40), elements=_pool), label="cur")
    if np.isnan(ref).all() or np.isnan(cur).all():
        return
    _check_ks_w1(ref, cur)


@pytest.mark.parametrize("chunk", [1, 5, 64])
def test_blockwise_merge_disjoint_and_nested_samples(monkeypatch, chunk):
    monkeypatch.setattr(_numerical, "_CHUNK", chunk)
    monkeypatch.setattr(_numerical, "_sorted_merge", None)  # the NumPy walk, not the C one
    rng = np.random.default_rng(7)
    a = rng.normal(size=300)
    # Window entirely above, entirely below, squeezed between two reference values, and
    # sharing heavy ties with the reference.
    for ref, cur in [
        (a, a + 100.0),
        (a, a - 100.0),
        (np.array([0.0, 1.0] * 50), rng.uniform(0.2, 0.8, size=250)),
        (np.floor(a), np.floor(a * 0.5)),
    ]:
        _check_ks_w1(ref, cur)
        _check_ks_w1(cur, ref)


def test_sort_buffer_and_workers_give_identical_reports():
    rng = np.random.default_rng(11)
    ref = {f"x{i}": rng.normal(size=5_000) for i in range(4)}
    cur = {f"x{i}": rng.normal(0.02 * i, size=4_000) for i in range(4)}
    cur["x1"][::7] = np.nan
    cur["x2"] = cur["x2"].astype(np.float32)  # not float64: sorted without the buffer
    prof = kernels.fit_profile(ref)
    one = kernels.compare(prof, cur, workers=1).to_dict()
    two = kernels.compare(prof, cur, workers=2).to_dict()
    assert one == two
    for name in cur:  # the caller's arrays are never sorted in place
        assert not np.all(np.diff(nonmissing(cur[name])) >= 0)


def _cat_values(rng: np.random.Generator, n: int, with_none: bool) -> list:
    pool = ["a", "b", "c", "d", "zz"] + ([None] if with_none else [])
    return [pool[i] for i in rng.integers(0, len(pool), size=n)]


@pytest.mark.parametrize("with_none", [False, True])
def test_dictionary_encoded_categorical_equals_strings(with_none):
    rng = np.random.default_rng(3)
    ref = _cat_values(rng, 500, with_none)
    cur = _cat_values(rng, 300, with_none) + ["new"] * 5
    strings = one_feature(pa.array(ref), pa.array(cur), stats=CAT, categorical=True)
    dictionary = one_feature(
        pa.array(ref).dictionary_encode(), pa.array(cur).dictionary_encode(), stats=CAT,
        categorical=True,
    )
    assert dictionary.to_dict() == strings.to_dict()
    # Chunks with different dictionaries, and a dictionary listing a value no row holds.
    chunked = pa.chunked_array([
        pa.array(cur[:100]).dictionary_encode(),
        pa.DictionaryArray.from_arrays(
            pa.array([0, 1, None, 1] * 10, type=pa.int32()), pa.array(["b", "a", "unused"])
        ),
    ])
    plain = pa.chunked_array([pa.array(cur[:100]), pa.array(["b", "a", None, "a"] * 10)])
    got = one_feature(pa.array(ref), chunked, stats=CAT, categorical=True)
    want = one_feature(pa.array(ref), plain, stats=CAT, categorical=True)
    assert got.to_dict() == want.to_dict()


def test_dictionary_with_null_and_numeric_values():
    # A null in the dictionary itself is missing; integral floats and ints share a key.
    idx = pa.array([0, 1, 2, 2, 1, 0, 0], type=pa.int8())
    dict_arr = pa.DictionaryArray.from_arrays(idx, pa.array([1.0, None, 2.0]))
    plain = pa.array([1.0, None, 2.0, 2.0, None, 1.0, 1.0])
    ref = np.array([1, 2, 2, 3])
    assert (one_feature(ref, dict_arr, stats=CAT, categorical=True).to_dict()
            == one_feature(ref, plain, stats=CAT, categorical=True).to_dict())


def test_pandas_categorical_equals_strings():
    import pandas as pd
    rng = np.random.default_rng(5)
    ref = _cat_values(rng, 400, True)
    cur = _cat_values(rng, 250, True) + ["new"]
    as_cat = kernels.compute(
        pd.DataFrame({"x": pd.Categorical(ref)}), pd.DataFrame({"x": pd.Categorical(cur)}),
        categorical=["x"], stats=CAT,
    )
    as_obj = kernels.compute(
        pd.DataFrame({"x": pd.Series(ref, dtype=object)}),
        pd.DataFrame({"x": pd.Series(cur, dtype=object)}), categorical=["x"], stats=CAT,
    )
    assert as_cat.to_dict() == as_obj.to_dict()


def test_arrow_numerical_zero_copy_equals_numpy():
    rng = np.random.default_rng(9)
    ref = rng.normal(size=1_000)
    cur = rng.normal(0.1, size=900)
    want = one_feature(ref, cur[100:], stats=NUM).to_dict()
    sliced = pa.chunked_array([pa.array(cur)]).slice(100)  # non-zero offset into the buffer
    assert one_feature(ref, sliced, stats=NUM).to_dict() == want
    with_nulls = pa.array([None, *cur[101:].tolist()], type=pa.float64())
    got = one_feature(ref, with_nulls, stats=NUM)
    assert got["ks"] == one_feature(ref, cur[101:], stats=["ks"])["ks"]
    assert got.missing_share["current"] == pytest.approx(1 / 800)
    f32 = one_feature(ref, pa.array(cur.astype(np.float32)), stats=NUM).to_dict()
    assert f32 == one_feature(ref, cur.astype(np.float32), stats=NUM).to_dict()


def test_kstwo_sf_large_n_is_scipys_own_value():
    from scipy.stats import kstwo

    for n in (100_001, 495_000, 2_000_000):
        xs = np.concatenate((np.geomspace(0.2 / n, 0.99, 300),
                             [0.5 / n, np.nextafter(0.5 / n, 1), 0.75 / n, 1 / n, (n - 1) / n]))
        for x in xs.tolist():
            if 2.2 <= n * x * x < 370 or x >= 0.5:
                continue  # the Smirnov-sum branch: its own tolerance test elsewhere
            assert _pvalues.kstwo_sf(x, float(n)) == float(kstwo.sf(x, n)), (n, x)


def test_million_row_pvalues_do_not_import_scipy_stats():
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); from kernels import _pvalues\n"
        "for d in (0.0, 1e-6, 0.001, 0.003, 0.02, 0.3, 0.6, 1.0):\n"
        "    _pvalues.ks_pvalue(d, 990_000, 990_500)\n"
        "_pvalues.chi2_sf(3.0, 2)\n"
        "assert 'scipy.stats' not in sys.modules, 'scipy.stats imported'\n"
    )
    res = subprocess.run([sys.executable, "-c", code, str(ROOT)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
