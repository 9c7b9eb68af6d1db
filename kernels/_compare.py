"""`compare` a window with a fitted profile (and `compute`, fit + compare in one call)."""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from kernels import _columns, _report
from kernels._backend import resolve_backend, to_numpy
from kernels._categorical import compare_categorical
from kernels._errors import DriftInputError
from kernels._multivariate import compare_pca
from kernels._numerical import compare_numerical
from kernels._profile import ReferenceProfile, fit_profile
from kernels._report import DriftReport, FeatureDrift

_WHAT = "current"


def _check_columns(profile: ReferenceProfile, cols: dict[str, Any], ignore_extra: bool) -> None:
    missing = [n for n in profile.features if n not in cols]
    if missing:
        raise DriftInputError(
            f"{_WHAT}: feature {missing[0]!r} of the reference profile is missing from the window "
            f"(window columns: {', '.join(sorted(cols)) or '<none>'})"
        )
    extra = [n for n in cols if n not in profile.features]
    if extra and not ignore_extra:
        raise DriftInputError(
            f"{_WHAT}: column {extra[0]!r} is not a feature of the reference profile "
            f"(profile features: {', '.join(profile.features)})"
        )


def _normalise_correction(correction: str | None) -> str | None:
    if correction is None or str(correction).lower() in ("", "none"):
        return None
    c = str(correction).lower()
    if c not in _report.CORRECTIONS:
        raise DriftInputError(
            f"unknown correction {correction!r}; choose from {', '.join(_report.CORRECTIONS)} "
            "or None"
        )
    return c


def compare(
    profile: ReferenceProfile,
    columns: Mapping[str, Any],
    *,
    stats: Sequence[str] | str | None = None,
    backend: str | None = None,
    correction: str | None = None,
    thresholds: Mapping[str, float] | None = None,
    ignore_extra_columns: bool = False,
    workers: int | None = None,
) -> DriftReport:
    """Compare one window with a reference profile, every feature in one call.

    Args:
        profile: a `ReferenceProfile` from `fit_profile` (or `ReferenceProfile.from_bytes`).
        columns: the window: name -> 1-D values, or a pyarrow Table / DataFrame. Must hold every
            profile feature.
        stats: statistic names (see `STATS`), a sequence or "ks,psi"; None (default) = all.
            Each applies to the feature kinds it is defined for.
        backend: "numpy", "cupy", or None (default: CuPy when a GPU is usable).
        correction: multiple-testing correction of the per-feature test p-values across
            features: "bh" (Benjamini-Hochberg), "bonferroni", or None (default).
        thresholds: overrides of `DEFAULT_THRESHOLDS` by key. Default: none.
        ignore_extra_columns: ignore window columns the profile does not know (default False:
            they are an error, so nothing is dropped silently).
        workers: threads for the per-feature work on the CPU; default: the CPU count. Each
            thread holds one column-sized sort buffer (8 bytes per row) while it works.

    Raises:
        DriftInputError: empty window, missing/extra columns, an all-missing column, text in a
            numerical column, unknown statistic/threshold/correction; the message names it.
        BackendUnavailable: backend="cupy" on a host without a usable GPU.
    """
    if not isinstance(profile, ReferenceProfile):
        raise DriftInputError(f"profile must be a ReferenceProfile, got {type(profile).__name__}")
    wanted = _report.parse_stats(stats)
    thr = _report.merge_thresholds(thresholds)
    corr = _normalise_correction(correction)
    backend_name, xp = resolve_backend(backend)
    cols = _columns.as_columns(columns, what=_WHAT)
    rows = _columns.check_lengths(cols, what=_WHAT)
    _check_columns(profile, cols, ignore_extra_columns)

    # Convert (and so validate) every numerical column before any heavy work.
    numerical = {n: _columns.numerical(n, cols[n], what=_WHAT) for n in profile.numerical}
    if xp is np:  # device-resident input compared on the host
        numerical = {n: to_numpy(v) for n, v in numerical.items()}
    else:
        numerical = {n: xp.asarray(v) for n, v in numerical.items()}

    # One sort buffer per worker thread, reused feature after feature: the working memory is
    # a column per thread, not a column per feature, and the allocator is not asked for (and
    # does not keep) a fresh column-sized block each time.
    local = threading.local()

    def sort_buffer() -> np.ndarray | None:
        if xp is not np:
            return None
        buf = getattr(local, "buf", None)
        if buf is None:
            buf = local.buf = np.empty(rows, dtype=np.float64)
        return buf

    def run_numerical(name: str) -> dict:
        try:
            return compare_numerical(profile.features[name], numerical[name], stats=wanted, xp=xp,
                                     buffer=sort_buffer())
        except DriftInputError as exc:
            raise DriftInputError(f"{_WHAT}: {exc}") from None

    def run_categorical(name: str) -> dict:
        return compare_categorical(profile.features[name], cols[name], stats=wanted, what=_WHAT)

    def run_pca() -> dict:
        pca = profile.pca
        return compare_pca(pca, [numerical[n] for n in pca.features], xp=xp)

    jobs: list[tuple[str, Any]] = []
    for name, prof in profile.features.items():
        fn = run_numerical if prof.kind == "numerical" else run_categorical
        jobs.append((name, lambda fn=fn, name=name: fn(name)))
    if "pca" in wanted and profile.pca is not None:
        jobs.append(("\0pca", run_pca))
    n_workers = 1 if backend_name == "cupy" else min(workers or os.cpu_count() or 1, len(jobs))
    if n_workers > 1:
        with ThreadPoolExecutor(max_workers=n_workers) as pool:
            futures = [(key, pool.submit(fn)) for key, fn in jobs]
            results = {key: fut.result() for key, fut in futures}
    else:
        results = {key: fn() for key, fn in jobs}

    return _assemble(profile, results, rows, wanted, thr, corr, backend_name)


def _assemble(
    profile: ReferenceProfile,
    results: dict[str, dict],
    rows: int,
    wanted: frozenset[str],
    thr: dict[str, float],
    corr: str | None,
    backend_name: str,
) -> DriftReport:
    features: dict[str, FeatureDrift] = {}
    for name, prof in profile.features.items():
        res = dict(results[name])
        n, n_missing = res.pop("n"), res.pop("missing")
        n_inf = res.pop("infinite", None)
        ref_share = prof.n_missing / profile.rows
        cur_share = n_missing / rows
        missing = {"reference": ref_share, "current": cur_share, "change": cur_share - ref_share}
        inf_share = None
        if prof.kind == "numerical":
            inf_share = {"reference": sum(prof.inf_counts) / profile.rows, "current": n_inf / rows}
        del n
        features[name] = FeatureDrift(name, prof.kind, False, missing, res, inf_share)

    tests = [(f, t) for f in features.values() for t in _report.TESTS if t in f.stats]
    if corr is not None and tests:
        adjusted = _report.adjust_pvalues([f.stats[t]["pvalue"] for f, t in tests], corr)
        for (f, t), p in zip(tests, adjusted, strict=True):
            f.stats[t]["pvalue_adjusted"] = p
    for f in features.values():
        f.drifted = _report.decide_feature(f.stats, f.missing_share, thr)

    multivariate = {}
    if "\0pca" in results:
        entry = results["\0pca"]
        _report.decide_pca(entry, thr)
        multivariate["pca"] = entry
    share = sum(f.drifted for f in features.values()) / len(features)
    return DriftReport(
        rows={"reference": profile.rows, "current": rows},
        features=features,
        drifted_share=share,
        dataset_drifted=bool(share >= thr["dataset"]),
        multivariate=multivariate,
        stats=tuple(s for s in _report.STATS if s in wanted),
        correction=corr,
        thresholds=thr,
        backend=backend_name,
    )


def compute(
    reference_columns: Mapping[str, Any],
    current_columns: Mapping[str, Any],
    *,
    categorical: Sequence[str] = (),
    bins: int = 10,
    stats: Sequence[str] | str | None = None,
    backend: str | None = None,
    correction: str | None = None,
    thresholds: Mapping[str, float] | None = None,
) -> DriftReport:
    """`fit_profile(reference_columns, ...)` then `compare(profile, current_columns, ...)`.

    Args:
        reference_columns: the reference data (see `fit_profile`).
        current_columns: the window (see `compare`).
        categorical: names of categorical columns. Default: none.
        bins: reference-quantile bins for numerical PSI/JS/Hellinger. Default 10.
        stats: statistic names; None (default) = all.
        backend: "numpy", "cupy", or None (default: automatic).
        correction: "bh", "bonferroni", or None (default).
        thresholds: overrides of `DEFAULT_THRESHOLDS`. Default: none.
    """
    wanted = _report.parse_stats(stats)
    profile = fit_profile(
        reference_columns, categorical=categorical, bins=bins, backend=backend,
        multivariate="pca" in wanted,
    )
    return compare(
        profile, current_columns, stats=wanted, backend=backend, correction=correction,
        thresholds=thresholds,
    )
