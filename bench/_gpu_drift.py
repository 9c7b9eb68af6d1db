"""The GPU check's drift section: the engine on a window resident on the GPU, against the copy
bandwidth measured in the same run and against the engine's own CPU backend on the same data.

run(cfg, deadline) -> dict      every figure of the section (see `bench/_gpu_report.py`)

What is timed is `kernels.compare` itself, the function the monitor calls, on device-resident
columns (one contiguous float32 column per feature; some with 1% NaN, some integer-valued with
heavy ties, a quarter of them drifted):

* binned statistics: ``stats="psi,jensen_shannon,hellinger"``, per window;
* exact KS: ``stats="ks"`` (statistic and p-value, ties included), per window and per feature;
* the full default numerical set, once, and the same call on the CPU backend for the speed-up.

The CPU side gets the same columns copied to the host. Where that would take too long (the
GPU machine's 10M x 100), it runs on the first `cpu_features` features and its time is scaled
to the whole window by the feature count; the section says so. Both backends' answers on those
features are compared: the KS statistic must be identical, the rest within rounding.

In CPU mode the same code runs with NumPy in place of CuPy, on small sizes: the "device" copy is
a host memcpy and the speed-up is 1x by construction; the figures only prove the code runs.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Any

from _gpu_env import Timer, cupy_or_none, median, timed

ROOT = Path(__file__).resolve().parent.parent
BINNED, KS = "psi,jensen_shannon,hellinger", "ks"
KERNEL = Path(__file__).resolve().parent / "_binned_counts.cu"
MAXE = 15  # edges per feature the candidate kernel holds (as #define MAXE in its source)


def _window(xp: Any, rows: int, features: int, seed: int, drift: bool) -> Any:
    """(features, rows) float32 on `xp`'s device: each feature one contiguous column."""
    rng = xp.random.default_rng(seed)
    data = rng.standard_normal((features, rows), dtype=xp.float32)
    for i in range(features):
        if drift and i % 4 == 1:
            data[i] += xp.float32(0.02 * (1 + i // 4))
        if i % 4 == 2:  # 1% missing
            data[i][rng.random(rows, dtype=xp.float32) < 0.01] = xp.nan
        if i % 4 == 3:  # integer-valued: heavy ties, fewer distinct bin edges
            xp.floor(data[i] * 2, out=data[i])
    return data


def _columns(data: Any, names: list[str]) -> dict[str, Any]:
    return {name: data[i] for i, name in enumerate(names)}


def _agreement(gpu: dict, cpu: dict) -> dict[str, Any]:
    """How the two backends' reports differ on the features both computed."""
    worst: dict[str, float] = {}
    ks_identical, checked = True, 0
    for name, want in cpu["features"].items():
        got = gpu["features"][name]
        for stat, entry in want.items():
            if not isinstance(entry, dict) or stat == "missing_share":
                continue
            for key, w in entry.items():
                g = got.get(stat, {}).get(key)
                if not isinstance(w, float) or not isinstance(g, float):
                    continue
                checked += 1
                if stat == "ks" and key == "statistic" and g != w:
                    ks_identical = False
                rel = 0.0 if g == w else abs(g - w) / max(abs(w), 1e-300)
                worst[f"{stat}.{key}"] = max(worst.get(f"{stat}.{key}", 0.0), rel)
    return {"values": checked, "ks_statistic_identical": ks_identical,
            "max_rel_diff": worst, "max_rel_diff_all": max(worst.values(), default=0.0)}


def bins_from_ge(row: Any, n_edges: int) -> Any:
    """Bin counts (n_edges + 1, int64) from one row of the candidate kernel's output:
    [non-missing, values >= edge 0, ..., values >= edge MAXE-1]."""
    import numpy as np

    ge = np.asarray(row[1 : 1 + n_edges], dtype=np.int64)
    nn = int(row[0])
    return np.diff(np.concatenate(([0], nn - ge, [nn])))


def _fused(cp: Any, cur: Any, profile: Any, names: list[str], report: Any, repeats: int,
           deadline: float, copy_gbps: float) -> dict[str, Any]:
    """Time the candidate kernel (`_binned_counts.cu`) on the resident window; check that its
    counts are the engine's and its PSI / JS / Hellinger the engine's report's, bit for bit."""
    import numpy as np

    from kernels import _divergence, _numerical

    feats = [profile.features[n] for n in names]
    if max(len(p.edges) for p in feats) > MAXE:
        return {"skipped": f"a feature has more than {MAXE} bin edges"}
    n_feat, rows = cur.shape
    edges = np.full((n_feat, MAXE), np.nan)
    for f, p in enumerate(feats):
        edges[f, : len(p.edges)] = p.edges
    n_edges = np.array([len(p.edges) for p in feats], dtype=np.int32)
    d_edges, d_n = cp.asarray(edges), cp.asarray(n_edges)
    kernel = cp.RawKernel(KERNEL.read_text(), "binned_counts")
    out = cp.zeros((n_feat, MAXE + 1), dtype=cp.uint64)
    vec = int(rows % 4 == 0 and cur.data.ptr % 16 == 0)
    threads = 256
    blocks = max(1, min(64, -(-(rows // 4 if vec else rows) // (threads * 32))))

    def counts() -> Any:
        out.fill(0)
        kernel((blocks, n_feat), (threads,),
               (cur, np.int64(rows), d_edges, d_n, np.int32(vec), out))
        return out

    wanted = frozenset(BINNED.split(","))

    def statistics() -> list[dict]:
        host = cp.asnumpy(counts())
        return [_divergence.histogram_stats(p.bin_counts, bins_from_ge(host[f], len(p.edges)),
                                            wanted) for f, p in enumerate(feats)]

    kernel_s = median(timed(counts, xp=cp, repeats=max(repeats, 5), deadline=deadline))
    stats_s = median(timed(statistics, xp=cp, repeats=max(repeats, 5), deadline=deadline))
    host = cp.asnumpy(counts())
    same_counts = True
    for f, p in enumerate(feats):
        window, _ = _numerical.sort_window(cur[f], name=p.name, xp=cp)
        engine = _numerical.bin_counts(window, p.device_edges(cp), xp=cp)
        same_counts &= bool(np.array_equal(engine, bins_from_ge(host[f], len(p.edges))))
    got = statistics()
    want = report.to_dict()["features"]
    same_stats = all(got[f][s]["value"] == want[n][s]["value"]
                     for f, n in enumerate(names) for s in wanted)
    return {
        "kernel_s": kernel_s, "with_statistics_s": stats_s, "blocks": [blocks, n_feat],
        "threads": threads, "vec": bool(vec), "gbps": cur.nbytes / kernel_s / 1e9,
        "pct_of_copy": 100 * cur.nbytes / kernel_s / 1e9 / copy_gbps,
        "counts_equal_engine": same_counts, "statistics_equal_engine": same_stats,
    }


def run(cfg: dict[str, Any], deadline: float) -> dict[str, Any]:
    """The drift section; `cfg` holds mode, rows, ref_rows, features, cpu_features, repeats.

    Stops repeating (never skips a figure) once time.monotonic() passes `deadline`.
    """
    sys.path.insert(0, str(ROOT))
    import numpy as np

    import kernels
    from kernels import _numerical

    cp = cupy_or_none() if cfg["mode"] == "gpu" else None
    if cfg["mode"] == "gpu" and cp is None:
        raise RuntimeError("CuPy is not importable or sees no CUDA device")
    xp, backend = (cp, "cupy") if cp is not None else (np, "numpy")
    rows, features, repeats = cfg["rows"], cfg["features"], cfg["repeats"]
    names = [f"f{i:03d}" for i in range(features)]
    out: dict[str, Any] = {"backend": backend, "rows": rows, "ref_rows": cfg["ref_rows"],
                           "features": features, "native_walk": _numerical.native_walk_available()}

    with Timer(xp) as t:
        ref = _window(xp, cfg["ref_rows"], features, seed=1, drift=False)
        cur = _window(xp, rows, features, seed=2, drift=True)
    out["generate_s"] = t.seconds
    out["bytes"] = int(cur.nbytes)
    with Timer(xp) as t:
        profile = kernels.fit_profile(_columns(ref, names), backend=backend, multivariate=False)
    out["fit_s"] = t.seconds
    del ref

    # The ceiling: a device-to-device copy of the whole window, bytes read plus bytes written.
    scratch = xp.empty_like(cur)
    copy = timed(lambda: xp.copyto(scratch, cur), xp=xp, repeats=max(repeats, 5),
                 deadline=deadline)
    scratch = None  # freed before the statistics run
    out["copy_s"] = median(copy)
    out["copy_gbps"] = 2 * cur.nbytes / out["copy_s"] / 1e9

    cols = _columns(cur, names)
    # The first call also moves the profile's sorted values to the device (cached there).
    for stats, key, n in ((BINNED, "binned", repeats), (KS, "ks", max(repeats // 2, 1))):
        times = timed(lambda stats=stats: kernels.compare(profile, cols, stats=stats,
                                                          backend=backend),
                      xp=xp, repeats=n, deadline=deadline)
        out[f"{key}_s"], out[f"{key}_runs"] = median(times), len(times)
    out["binned_gbps"] = cur.nbytes / out["binned_s"] / 1e9
    out["binned_pct_of_copy"] = 100 * out["binned_gbps"] / out["copy_gbps"]
    out["ks_ms_per_feature"] = 1e3 * out["ks_s"] / features
    with Timer(xp) as t:
        gpu_report = kernels.compare(profile, cols, backend=backend)
    out["full_s"] = t.seconds
    out["drifted"] = len(gpu_report.drifted_features)
    if cp is not None:
        try:
            out["fused"] = _fused(cp, cur, profile, names, gpu_report, repeats, deadline,
                                  out["copy_gbps"])
        except Exception as exc:  # a candidate: its failure is a finding, not the section's
            out["fused"] = {"error": f"{type(exc).__name__}: {exc}"}

    # The CPU engine on the same data: the first k columns, copied to the host.
    k = min(cfg["cpu_features"] or features, features)
    sub = names[:k]
    host = {n: (cp.asnumpy(cur[i]) if cp is not None else cur[i]) for i, n in enumerate(sub)}
    cols = cur = None  # the device window is no longer needed
    sub_profile = kernels.ReferenceProfile(profile.rows, profile.bins,
                                           {n: profile.features[n] for n in sub}, None)
    cpu: dict[str, Any] = {"features": k, "scale": features / k, "threads": cfg["cores"]}
    for stats, key in ((BINNED, "binned"), (KS, "ks"), (None, "full")):
        if time.monotonic() > deadline and key != "full":
            cpu[f"{key}_s"] = None
            continue
        with Timer() as t:
            cpu_report = kernels.compare(sub_profile, host, stats=stats, backend="numpy")
        cpu[f"{key}_s"] = t.seconds
        cpu[f"{key}_scaled_s"] = t.seconds * features / k
    out["cpu"] = cpu
    out["speedup"] = {key: cpu[f"{key}_scaled_s"] / out[f"{key}_s"]
                      for key in ("binned", "ks", "full") if cpu.get(f"{key}_s")}
    want = cpu_report.to_dict()
    got = gpu_report.to_dict()
    got["features"] = {n: got["features"][n] for n in sub}
    out["agreement"] = _agreement(got, want)
    out["targets"] = {
        "binned_ms_le_5": out["binned_s"] * 1e3 <= 5.0,
        "binned_pct_ge_50": out["binned_pct_of_copy"] >= 50.0,
        "ks_ms_per_feature_le_50": out["ks_ms_per_feature"] <= 50.0,
    }
    if not math.isfinite(out["binned_s"]):
        raise RuntimeError("no binned timing was taken")
    return out
