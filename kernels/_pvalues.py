"""p-values: two-sample KS (as `scipy.stats.ks_2samp(method="auto")`) and chi-square tail.

The KS p-value follows scipy's choice exactly: exact when both samples have at most 10,000 values
(Hodges' lattice-path counts, as scipy computes them), otherwise Smirnov's asymptotic law with
`kstwo.sf(d, round(n1*n2/(n1+n2)))`. Like scipy, the exact path reports the statistic rounded to
the lattice `h / lcm(n1, n2)` and falls back to the asymptotic law when the count overflows.

The distribution tails come from SciPy (imported when first needed, so `import kernels` stays
light): `scipy.special` (`chdtrc`, `gammaln`) always, `scipy.stats.kstwo` only for
n = round(n1*n2/(n1+n2)) <= 100,000; above that scipy's own branches are evaluated here, so a
million-row comparison never loads `scipy.stats`.
"""

from __future__ import annotations

import functools
import math

import numpy as np

_MAX_AUTO_N = 10_000  # scipy's threshold for method="auto" to try the exact distribution
_FAST_SMIRNOV_MIN_N = 2_000  # below this scipy's own smirnov is fast enough
_SMIRNOV_BLOCK = 1 << 16


def _prob_outside_square(n: int, h: int) -> float:
    # P(D_{n,n} >= h/n) by the alternating series of Hodges, evaluated in scipy's Horner form
    # (each term divided by binom(2n, n)) so it never cancels catastrophically.
    p = 0.0
    k = n // h
    while k >= 0:
        p1 = 1.0
        for j in range(h):
            p1 = (n - k * h - j) * p1 / (n + k * h + j + 1)
        p = p1 * (1.0 - p)
        k -= 1
    return 2 * p


def _outer_prob_inside(m: int, n: int, g: int, h: int) -> float:
    """1 - P(paths stay strictly inside |x/m - y/n| < h/lcm): Viehmann's stable recursion."""
    try:
        # SciPy's compiled copy of this recursion; the Python one below is its fallback and
        # agrees to rounding (checked in tests), but is ~100x slower on 10,000-row samples.
        from scipy.stats._stats_pythran import _compute_outer_prob_inside_method as fast
    except ImportError:  # pragma: no cover - depends on SciPy internals
        fast = None
    if fast is not None:
        return float(fast(m, n, g, h))
    return _outer_prob_inside_py(m, n, g, h)


def _outer_prob_inside_py(m: int, n: int, g: int, h: int) -> float:
    if m < n:
        m, n = n, m
    mg, ng = m // g, n // g
    minj, maxj = 0, min(math.ceil(h / mg), n + 1)
    curlen = maxj - minj
    a = np.ones(min(2 * maxj + 2, n + 1), dtype=np.float64)
    a[minj:maxj] = 0.0
    for i in range(1, m + 1):
        lastminj, lastlen = minj, curlen
        minj = min(max(math.floor((ng * i - h) / mg) + 1, 0), n)
        maxj = min(math.ceil((ng * i + h) / mg), n + 1)
        if maxj <= minj:
            return 1.0
        val = 0.0 if minj == 0 else 1.0
        for jj in range(maxj - minj):
            j = jj + minj
            val = (a[jj + minj - lastminj] * i + val * j) / (i + j)
            a[jj] = val
        curlen = maxj - minj
        if lastlen > curlen:
            a[maxj - minj : maxj - minj + (lastlen - curlen)] = 1
    return float(a[maxj - minj - 1])


def _attempt_exact(n1: int, n2: int, d: float) -> tuple[bool, float, float]:
    g = math.gcd(n1, n2)
    lcm = (n1 // g) * n2
    h = int(np.round(d * lcm))
    d = h * 1.0 / lcm
    if h == 0:
        return True, d, 1.0
    try:
        with np.errstate(invalid="raise", over="raise"):
            prob = _prob_outside_square(n1, h) if n1 == n2 else _outer_prob_inside(n1, n2, g, h)
    except (FloatingPointError, OverflowError):
        return False, d, math.nan
    if not 0 <= prob <= 1:
        return False, d, prob
    return True, d, prob


def ks_pvalue(d: float, n1: int, n2: int) -> tuple[float, float]:
    """Two-sided KS p-value as scipy's `ks_2samp(method="auto")`.

    Args:
        d: the KS statistic, max |F1 - F2| over the pooled sample.
        n1: size of the first sample (> 0).
        n2: size of the second sample (> 0).

    Returns:
        (statistic, pvalue): the statistic as scipy reports it (lattice-rounded on the exact
        path) and the p-value clipped to [0, 1].
    """
    prob = math.nan
    exact = max(n1, n2) <= _MAX_AUTO_N
    if exact:
        exact, d, prob = _attempt_exact(n1, n2, d)
    if not exact:
        m, n = sorted([float(n1), float(n2)], reverse=True)
        en = m * n / (m + n)
        prob = kstwo_sf(d, float(np.round(en)))
    return float(d), float(np.clip(prob, 0.0, 1.0))


@functools.lru_cache(maxsize=2)
def _log_factorials(n: int) -> np.ndarray:
    # Windows of one size share n = round(n1*n2/(n1+n2)) across features: compute once.
    from scipy.special import gammaln  # deferred: see the module docstring

    table = gammaln(np.arange(n + 1, dtype=np.float64) + 1.0)
    table.flags.writeable = False
    return table


def _smirnov(n: int, x: float) -> float:
    """One-sided P(D_n^+ >= x) by the Birnbaum-Tingey sum, vectorised in log space.

    scipy.special.smirnov sums the same series term by term in C: exact, but about a second at
    n = 500,000. Here the log binomials come from one lgamma table and the terms from a
    logsumexp over blocks of `_SMIRNOV_BLOCK` terms (so a million-row window needs a few MB,
    not ten full-length temporaries); the result agrees with scipy's to ~1e-9 relative.
    """
    jmax = math.floor(n * (1.0 - x))
    lg = _log_factorials(n)
    top, acc = -math.inf, 0.0  # running logsumexp: sum = exp(top) * acc
    for j0 in range(0, jmax + 1, _SMIRNOV_BLOCK):
        j1 = min(j0 + _SMIRNOV_BLOCK, jmax + 1)
        j = np.arange(j0, j1, dtype=np.float64)
        a = x + j / n
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = (lg[n] - lg[j0:j1] - lg[n - j1 + 1 : n - j0 + 1][::-1]) + (j - 1.0) * np.log(a)
            terms += (n - j) * np.log1p(-a)
        terms = terms[np.isfinite(terms)]
        if terms.size == 0:
            continue
        block_top = float(terms.max())
        if block_top > top:
            acc *= math.exp(top - block_top)
            top = block_top
        acc += float(np.sum(np.exp(terms - top)))
    if acc == 0.0:
        return 0.0
    return float(x * math.exp(top) * acc)


_SCIPY_DMTW_MAX_N = 100_000  # above this scipy's kolmogn never uses the DMTW matrix method
_PI_SQUARED, _PI_FOUR, _PI_SIX = math.pi**2, math.pi**4, math.pi**6
_SQRT2PI, _SQRT3, _LOG_2PI = math.sqrt(2 * math.pi), math.sqrt(3.0), math.log(2 * math.pi)
_MIN_LOG = -708
# Stirling coefficients B_2j / (2j) / (2j - 1), j = 8..1, as scipy's `_ksstats`.
_STIRLING = [-2.955065359477124183e-2, 6.4102564102564102564e-3, -1.9175269175269175269e-3,
             8.4175084175084175084e-4, -5.952380952380952381e-4, 7.9365079365079365079e-4,
             -2.7777777777777777778e-3, 8.3333333333333333333e-2]


def kstwo_sf(d: float, n: float) -> float:
    """`scipy.stats.kstwo.sf(d, n)`, with scipy's slow branch (2 * smirnov at large n) sped up.

    Follows the branch structure of scipy's `_kolmogn` (Simard & L'Ecuyer): only where scipy
    would evaluate 2 * smirnov(n, d) for a large n is the sum evaluated here. For
    n > 100,000 (every million-row window) every branch scipy can take is evaluated here with
    scipy's own formulas, so `scipy.stats` (about 45 MiB of resident libraries) is never
    imported; smaller n defer to `scipy.stats.kstwo` itself.
    """
    n_int = int(n)
    t = n * d
    nx2 = t * d
    slow = n_int > _FAST_SMIRNOV_MIN_N and 1.0 < t < n - 1 and (d >= 0.5 or 2.2 <= nx2 < 370.0)
    if slow:
        return float(np.clip(2.0 * _smirnov(n_int, d), 0.0, 1.0))
    if n_int == n and n_int > _SCIPY_DMTW_MAX_N:
        return _kstwo_sf_large(d, n_int)
    from scipy.stats import kstwo  # deferred: see the module docstring

    return float(kstwo.sf(d, n))


def _kstwo_sf_large(x: float, n: int) -> float:
    # scipy's rv_continuous support is [0.5/n, 1] and `_kolmogn(n, x, cdf=False)` inside it;
    # the 2 * smirnov branches (x >= 0.5, 2.2 <= n x^2 < 370) are taken by the caller.
    if math.isnan(x):
        return math.nan
    if x <= 0.5 / n:
        return 1.0
    if x >= 1.0:
        return 0.0
    t = n * x
    if t <= 1.0:  # Ruben-Gambino: 1/2n <= x <= 1/n
        # np.log: 2t - 1 may round to 0 at x = 0.5/n + ulp, where scipy gets exp(-inf) = 0.
        with np.errstate(divide="ignore"):
            prob = float(np.exp(_log_nfactorial_div_n_pow_n(n) + n * np.log(2 * t - 1)))
        return float(np.clip(1.0 - prob, 0.0, 1.0))
    if t >= n - 1:  # Ruben-Gambino
        return float(np.clip(2 * (1.0 - x) ** n, 0.0, 1.0))
    nx2 = t * x
    if x >= 0.5 or 2.2 <= nx2 < 370.0:  # pragma: no cover - the caller's Smirnov branch
        return float(np.clip(2.0 * _smirnov(n, x), 0.0, 1.0))
    if nx2 >= 370.0:
        return 0.0
    # n x^2 < 2.2 < 18 and n > 100,000: scipy uses Pelz-Good for the CDF.
    return float(np.clip(1.0 - _pelz_good_cdf(n, x), 0.0, 1.0))


def _log_nfactorial_div_n_pow_n(n: int) -> float:
    # log(n! / n^n) by Stirling with n log n removed up front (no cancellation), as scipy.
    rn = 1.0 / n
    return float(
        np.log(n) / 2 - n + _LOG_2PI / 2 + rn * np.polyval(_STIRLING, rn / n)
    )


def _pelz_good_cdf(n: int, x: float) -> float:
    """Pelz-Good (1976) approximation of P(D_n <= x), scipy's `_kolmogn_PelzGood` step by step.

    Same operations in the same order as scipy, so the result agrees to the last bits.
    """
    z = np.sqrt(n) * x
    zsquared, zthree, zfour, zsix = z**2, z**3, z**4, z**6
    qlog = -_PI_SQUARED / 8 / zsquared
    if qlog < _MIN_LOG:  # z ~ 0.0417
        return 0.0
    q = np.exp(qlog)
    k1a = -zsquared
    k1b = _PI_SQUARED / 4
    k2a = 6 * zsix + 2 * zfour
    k2b = (2 * zfour - 5 * zsquared) * _PI_SQUARED / 4
    k2c = _PI_FOUR * (1 - 2 * zsquared) / 16
    k3d = _PI_SIX * (5 - 30 * zsquared) / 64
    k3c = _PI_FOUR * (-60 * zsquared + 212 * zfour) / 16
    k3b = _PI_SQUARED * (135 * zfour - 96 * zsix) / 4
    k3a = -30 * zsix - 90 * z**8
    k0to3 = np.zeros(4)
    # Horner scheme for sum c_i q^(i^2) over odd integers.
    maxk = int(np.ceil(16 * z / np.pi))
    for k in range(maxk, 0, -1):
        m = 2 * k - 1
        msquared, mfour, msix = m**2, m**4, m**6
        qpower = np.power(q, 8 * k)
        coeffs = np.array([1.0, k1a + k1b * msquared, k2a + k2b * msquared + k2c * mfour,
                           k3a + k3b * msquared + k3c * mfour + k3d * msix])
        k0to3 *= qpower
        k0to3 += coeffs
    k0to3 *= q
    k0to3 *= _SQRT2PI
    k0to3 /= np.array([z, 6 * zfour, 72 * z**7, 6480 * z**10])
    # The other sum, over all integers k: K2 gets (pi^2 k^2) q^(k^2), K3
    # (3 pi^2 k^2 z^2 - pi^4 k^4) q^(k^2).
    q = np.exp(-_PI_SQUARED / 2 / zsquared)
    ks = np.arange(maxk, 0, -1)
    ksquared = ks**2
    sqrt3z = _SQRT3 * z
    kspi = np.pi * ks
    qpwers = q**ksquared
    k2extra = np.sum(ksquared * qpwers)
    k2extra *= _PI_SQUARED * _SQRT2PI / (-36 * zthree)
    k0to3[2] += k2extra
    k3extra = np.sum((sqrt3z + kspi) * (sqrt3z - kspi) * ksquared * qpwers)
    k3extra *= _PI_SQUARED * _SQRT2PI / (216 * zsix)
    k0to3[3] += k3extra
    powers_of_n = np.power(n * 1.0, np.arange(len(k0to3)) / 2.0)
    k0to3 /= powers_of_n
    return float(sum(k0to3))


def chi2_sf(statistic: float, dof: int) -> float:
    """Upper tail of the chi-square distribution with `dof` degrees of freedom."""
    from scipy.special import chdtrc  # deferred: see the module docstring

    return float(chdtrc(dof, statistic))
