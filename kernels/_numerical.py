"""Statistics of one numerical feature: current window against its fitted reference.

One sort of the current window feeds everything:

* KS (exact, ties included): one walk over the merge of the sorted reference and the sorted
  window. Running counts of reference and window values at the end of each run of equal
  values are exactly scipy's `searchsorted(..., side="right")` counts, and the statistic is the
  same float64 expression `i/n1 - j/n2`, so it is bit-identical to `scipy.stats.ks_2samp`.
  On the host the walk is compiled C (`kernels/_sorted_merge.c`, no memory beyond the inputs);
  the array-namespace walk here (the GPU's, and the host's fallback when the C one is not
  built) merges block by block (cut points from `searchsorted`, each block a stable argsort of
  two sorted runs), linear work in a few MB, never a full n1 + n2 merge. Both give the same
  extremes bit for bit.
* Wasserstein-1: the integral of |F1 - F2| over the merged sample, scipy's `_cdf_distance`
  formula evaluated on the same merge, over finite values only.
* Binned PSI / Jensen-Shannon / Hellinger: window counts per reference-quantile bin come from
  `searchsorted(sorted_window, edges)`, O(bins * log n).
* Moments over the finite values.

Infinities are values: they order like scipy orders them (KS, bins), but they are left out of
Wasserstein and the moments (which would be inf or NaN), and their share is reported.
"""

from __future__ import annotations

import math
from types import ModuleType
from typing import Any

import numpy as np

from kernels import _divergence, _pvalues
from kernels._errors import DriftInputError

try:
    from kernels import _sorted_merge
except ImportError:  # built without a C compiler: the NumPy walk below gives the same results
    _sorted_merge = None

_CHUNK = 1 << 16  # values of each sample per merge block on the CPU: temporaries of a few MB


def sort_window(
    values: Any, *, name: str, xp: ModuleType, buffer: np.ndarray | None = None
) -> tuple[Any, int]:
    """Return (sorted non-missing values as float64 on the backend, number missing).

    Args:
        values: 1-D float column (NaN = missing).
        name: the feature, for errors.
        xp: array namespace.
        buffer: optional float64 NumPy scratch array of at least len(values) to sort in place
            (one allocation reused for every feature of a window); the result is then a view
            of it, valid until the buffer is reused. Default: a new array.

    Raises:
        DriftInputError: every value is missing.
    """
    x = xp.asarray(values)
    n_missing = int(xp.count_nonzero(xp.isnan(x)))
    if n_missing == x.shape[0]:
        raise DriftInputError(
            f"feature {name!r}: all {n_missing} values are missing (NaN/null); "
            "a numerical feature needs at least one value"
        )
    n = x.shape[0]
    if buffer is not None and xp is np and x.dtype == np.float64 and buffer.shape[0] >= n:
        s = buffer[:n]
        s[...] = x
        s.sort()  # NaNs sort last, as with np.sort
    else:
        # Sorting before widening is faster for float32 and keeps the order (the cast is exact).
        s = xp.sort(x)
    if n_missing:
        s = s[: n - n_missing]
    return s.astype(xp.float64, copy=False), n_missing


def finite_bounds(sorted_values: Any, *, xp: ModuleType) -> tuple[int, int]:
    """Indices (lo, hi) such that sorted_values[lo:hi] are the finite values."""
    # 1-element arrays rather than scalars: CuPy's searchsorted wants an array of keys.
    lo = int(xp.searchsorted(sorted_values, xp.asarray([-math.inf]), side="right")[0])
    hi = int(xp.searchsorted(sorted_values, xp.asarray([math.inf]), side="left")[0])
    return lo, hi


def moments(sorted_values: Any, *, xp: ModuleType) -> tuple[float, float, int]:
    """(mean, population std, number of finite values); NaN moments when none is finite."""
    lo, hi = finite_bounds(sorted_values, xp=xp)
    if hi <= lo:
        return math.nan, math.nan, 0
    fin = sorted_values[lo:hi]
    mean = float(xp.mean(fin))
    if xp is not np:
        return mean, float(xp.std(fin)), hi - lo
    # np.std would hold a full-length temporary (x - mean); blocks keep it to a few MB.
    ss = 0.0
    for a in range(0, hi - lo, _CHUNK * 4):
        dev = fin[a : a + _CHUNK * 4] - mean
        np.square(dev, out=dev)
        ss += float(dev.sum())  # pairwise summation, as np.std
    return mean, math.sqrt(ss / (hi - lo)), hi - lo


def bin_counts(sorted_values: Any, edges: Any, *, xp: ModuleType) -> np.ndarray:
    """Counts per bin [e_{i-1}, e_i) over interior `edges` (len(edges) + 1 bins), int64, host."""
    n = sorted_values.shape[0]
    cum = xp.searchsorted(sorted_values, edges, side="left")
    cum = np.concatenate(([0], np.asarray(_host(cum), dtype=np.int64), [n]))
    return np.diff(cum)


def _host(a: Any) -> np.ndarray:
    return a.get() if hasattr(a, "get") and not isinstance(a, np.ndarray) else np.asarray(a)


def _merge_cuts(ref: Any, cur: Any, chunk: int, *, xp: ModuleType) -> list[tuple[int, int]]:
    """Cut points (i, j) of the stable merge of sorted `ref` and `cur` (ref first on ties).

    Each cut splits the merge into the prefix ref[:i] + cur[:j] and the rest. Cuts every `chunk`
    values of each input, so no block between two cuts holds more than `chunk` values of
    either: the blocks can be merged one at a time in bounded memory, whatever the overlap of
    the two samples.
    """
    n1, n2 = ref.shape[0], cur.shape[0]
    if chunk >= n1 and chunk >= n2:  # one block (always on a GPU): nothing to search
        return [(0, 0), (n1, n2)]
    ri = xp.arange(chunk, n1, chunk, dtype=xp.int64)
    # cur values strictly below ref[i] precede it; equal ones follow it (ref first on ties).
    rj = xp.searchsorted(cur, ref[ri], side="left")
    cj = xp.arange(chunk, n2, chunk, dtype=xp.int64)
    ci = xp.searchsorted(ref, cur[cj], side="right")
    cuts = {(0, 0), (n1, n2)}
    cuts.update(zip(_host(ri).tolist(), _host(rj).tolist(), strict=True))
    cuts.update(zip(_host(ci).tolist(), _host(cj).tolist(), strict=True))
    # Valid cuts of one merge are nested prefixes: ordering by length orders i and j too.
    return sorted(cuts, key=lambda c: (c[0] + c[1], c[0]))


def _merge_block(ref: Any, cur: Any, *, xp: ModuleType) -> tuple[Any, Any]:
    both = xp.concatenate((ref, cur))
    # Two sorted runs: a stable sort merges them in linear time, ref before cur on ties.
    order = xp.argsort(both, kind="stable") if xp is np else xp.argsort(both)
    return both[order], order < ref.shape[0]


def _dot(a: Any, b: Any, *, xp: ModuleType) -> float:
    # einsum, not dot/vdot: BLAS would wake its thread pool for every block, and on a small
    # machine its spinning threads fight the per-feature worker threads.
    return float(xp.einsum("i,i->", a, b))


def _extremes_at(values: Any, mask: Any, *, xp: ModuleType) -> tuple[float, float]:
    """(max, min) of values[mask]; (-inf, inf) when the mask is empty."""
    picked = values[mask]
    if picked.shape[0] == 0:
        return -math.inf, math.inf
    return float(picked.max()), float(picked.min())


def native_walk_available() -> bool:
    """True when the compiled merge walk (kernels/_sorted_merge.c) serves the NumPy backend."""
    return _sorted_merge is not None


def _merged_pass(
    ref: Any, cur: Any, *, want_ks: bool, want_w1: bool, xp: ModuleType, native: bool = True
) -> tuple[float, float, float]:
    """(max, min) of F_ref - F_cur over the pooled sample, and the integral of |F_ref - F_cur|.

    On the host the compiled walk does it in one linear pass (`native=False` forces the NumPy
    walk, which the tests hold it to). Otherwise the merge of the two sorted samples is walked
    block by block (see `_merge_cuts`), never materialised whole: working memory is a few MB
    per call on the CPU however long the window; on a GPU it is one block. The integral needs
    finite values (the caller passes the finite slices).
    """
    if native and xp is np and _sorted_merge is not None:
        return _sorted_merge.merge_walk(
            np.ascontiguousarray(ref, dtype=np.float64),
            np.ascontiguousarray(cur, dtype=np.float64),
            want_w1,
        )
    n1, n2 = ref.shape[0], cur.shape[0]
    total = n1 + n2
    chunk = _CHUNK if xp is np else max(n1, n2, 1)
    cuts = _merge_cuts(ref, cur, chunk, xp=xp)
    dmax, dmin, w1 = -math.inf, math.inf, 0.0
    for (i0, j0), (i1, j1) in zip(cuts[:-1], cuts[1:], strict=True):
        a, b = i0 + j0, i1 + j1
        if a == b:
            continue
        merged, is_ref = _merge_block(ref[i0:i1], cur[j0:j1], xp=xp)
        c_ref = xp.cumsum(is_ref, dtype=xp.int64)
        c_ref += i0
        c_cur = xp.arange(a + 1, b + 1, dtype=xp.int64) - c_ref
        # Same float64 expression as scipy: i/n1 - j/n2 with integer counts.
        diff = c_ref / n1 - c_cur / n2
        last = b == total
        # The merged value after this block: the smaller head of what is left (ref on ties).
        nxt = None
        if not last:
            nxt = ref[i1] if j1 == n2 or (i1 < n1 and ref[i1] <= cur[j1]) else cur[j1]
        if want_ks:
            # A position counts only where its run of equal values ends: there the running
            # counts equal scipy's searchsorted(side="right") counts.
            ends = xp.empty(b - a, dtype=bool)
            xp.not_equal(merged[1:], merged[:-1], out=ends[:-1])
            ends[-1] = True if last else bool(nxt != merged[-1])
            hi_d, lo_d = _extremes_at(diff, ends, xp=xp)
            dmax, dmin = max(dmax, hi_d), min(dmin, lo_d)
        if want_w1:
            # Terms p: |F1(x_p) - F2(x_p)| * (x_{p+1} - x_p); the block's last term reaches
            # into the next block.
            xp.abs(diff, out=diff)
            w1 += _dot(diff[:-1], merged[1:] - merged[:-1], xp=xp)
            if not last:
                w1 += float(diff[-1]) * float(nxt - merged[-1])
    return dmax, dmin, w1


def ks_and_wasserstein(
    ref: Any,
    cur: Any,
    *,
    ref_inf: tuple[int, int],
    cur_inf: tuple[int, int],
    want_ks: bool,
    want_w1: bool,
    xp: ModuleType,
) -> tuple[float, float]:
    """KS statistic (before scipy's lattice rounding) and Wasserstein-1 from the sorted merge.

    Args:
        ref: sorted reference values, float64, non-missing (infinities allowed).
        cur: sorted window values, float64, non-missing (infinities allowed).
        ref_inf: (count of -inf, count of +inf) in `ref`.
        cur_inf: (count of -inf, count of +inf) in `cur`.
        want_ks: compute the KS statistic (else NaN).
        want_w1: compute Wasserstein-1 over the finite values (else NaN).
        xp: array namespace.
    """
    n1, n2 = ref.shape[0], cur.shape[0]
    n1f, n2f = n1 - sum(ref_inf), n2 - sum(cur_inf)
    want_w1 = want_w1 and n1f > 0 and n2f > 0
    # Wasserstein uses the finite values with CDFs of the finite values only: the finite
    # slices' own merge. Without infinities one pass serves both statistics.
    shared = n1f == n1 and n2f == n2
    dmax = dmin = w1 = math.nan
    if want_ks or (want_w1 and shared):
        dmax, dmin, w1 = _merged_pass(ref, cur, want_ks=want_ks, want_w1=want_w1 and shared,
                                      xp=xp)
    if want_w1 and not shared:
        ref_f = ref[ref_inf[0] : n1 - ref_inf[1]]
        cur_f = cur[cur_inf[0] : n2 - cur_inf[1]]
        _, _, w1 = _merged_pass(ref_f, cur_f, want_ks=False, want_w1=True, xp=xp)
    ks = math.nan
    if want_ks:
        min_s = min(max(-dmin, 0.0), 1.0)
        ks = min_s if min_s > dmax else dmax
    return ks, (w1 if want_w1 else math.nan)


def compare_numerical(
    prof: Any,
    values: Any,
    *,
    stats: frozenset[str],
    xp: ModuleType,
    buffer: np.ndarray | None = None,
) -> dict:
    """All requested statistics of one numerical feature, as plain floats.

    Args:
        prof: the feature's `NumericalProfile`.
        values: the window's column (1-D float array on the backend, NaN = missing).
        stats: names of the statistics to compute.
        xp: array namespace.
        buffer: optional float64 scratch array to sort the window in (see `sort_window`);
            free again when this returns. Default: a new array.

    Returns:
        A dict with "rows", "missing", "infinite", and one entry per statistic.
    """
    cur, n_missing = sort_window(values, name=prof.name, xp=xp, buffer=buffer)
    ref = prof.device_sorted(xp)
    n1, n2 = ref.shape[0], cur.shape[0]
    lo, hi = finite_bounds(cur, xp=xp)
    cur_inf = (lo, n2 - hi)
    out: dict[str, Any] = {"n": n2, "missing": n_missing, "infinite": lo + n2 - hi}
    want_ks, want_w1 = "ks" in stats, "wasserstein" in stats
    if want_ks or want_w1:
        ks, w1 = ks_and_wasserstein(
            ref, cur, ref_inf=prof.inf_counts, cur_inf=cur_inf, want_ks=want_ks,
            want_w1=want_w1, xp=xp,
        )
        if want_ks:
            d, p = _pvalues.ks_pvalue(ks, n1, n2)
            out["ks"] = {"statistic": d, "pvalue": p}
        if want_w1:
            out["wasserstein"] = {"value": w1, "normed": _ratio(w1, prof.std)}
    if stats & {"psi", "jensen_shannon", "hellinger"}:
        counts = bin_counts(cur, prof.device_edges(xp), xp=xp)
        # TVD is a categorical statistic (see _report.NUMERICAL_STATS): not on numerical bins.
        out.update(_divergence.histogram_stats(prof.bin_counts, counts, stats - {"tvd"}))
    if stats & {"mean_shift", "std_shift"}:
        mean, std, _ = moments(cur, xp=xp)
        if "mean_shift" in stats:
            out["mean_shift"] = {
                "value": _ratio(mean - prof.mean, prof.std),
                "reference": prof.mean,
                "current": mean,
            }
        if "std_shift" in stats:
            out["std_shift"] = {
                "value": _ratio(std - prof.std, prof.std),
                "reference": prof.std,
                "current": std,
            }
    return out


def _ratio(num: float, den: float) -> float:
    # A constant reference (std 0): no change is 0, any change is infinitely many stds.
    if math.isnan(num) or math.isnan(den):
        return math.nan
    if den == 0.0:
        return 0.0 if num == 0.0 else math.copysign(math.inf, num)
    return num / den
