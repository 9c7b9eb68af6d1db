"""The reference profile: fitted once per model version, compared against every window.

Per numerical feature: every non-missing value, sorted (so KS and Wasserstein are exact), the
reference-quantile bin edges and counts, moments over finite values, missing and infinite counts.
Per categorical feature: category counts and missing count. Plus the PCA of numerical features.

Serialised without pickle: an uncompressed `.npz` whose arrays are the profile's arrays and whose
`header.json` member (UTF-8 bytes as uint8) holds every scalar, name and category.
"""

from __future__ import annotations

import io
import json
import math
import os
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np

from kernels import _columns, _numerical
from kernels._backend import resolve_backend, to_numpy
from kernels._errors import DriftInputError
from kernels._multivariate import PcaProfile, fit_pca

FORMAT = "kernels.ReferenceProfile"
FORMAT_VERSION = 1


@dataclass(eq=False)
class NumericalProfile:
    """Reference summary of one numerical feature."""

    name: str
    sorted: np.ndarray  # float64, non-missing values ascending, infinities included
    n_missing: int
    mean: float  # over finite values
    std: float  # population std over finite values
    inf_counts: tuple[int, int]  # (-inf, +inf)
    edges: np.ndarray  # interior bin edges, float64 ascending, unique
    bin_counts: np.ndarray  # int64, len(edges) + 1; bin i is [edges[i-1], edges[i])
    _device: dict = field(default_factory=dict, repr=False)

    kind = "numerical"

    @property
    def n(self) -> int:
        """Number of non-missing reference values."""
        return int(self.sorted.shape[0])

    def device_sorted(self, xp: ModuleType) -> Any:
        """The sorted values on `xp`'s device (copied once, then cached)."""
        return self._on(xp, "sorted")

    def device_edges(self, xp: ModuleType) -> Any:
        """The bin edges on `xp`'s device (copied once, then cached)."""
        return self._on(xp, "edges")

    def _on(self, xp: ModuleType, attr: str) -> Any:
        if xp is np:
            return getattr(self, attr)
        key = (xp.__name__, attr)
        if key not in self._device:
            self._device[key] = xp.asarray(getattr(self, attr))
        return self._device[key]


@dataclass(eq=False)
class CategoricalProfile:
    """Reference summary of one categorical feature."""

    name: str
    categories: list[str]  # sorted keys, see kernels._columns.category_key
    counts: np.ndarray  # int64 per category
    n_missing: int

    kind = "categorical"

    @property
    def n(self) -> int:
        """Number of non-missing reference values."""
        return int(self.counts.sum())


def quantile_edges(sorted_values: np.ndarray, bins: int) -> np.ndarray:
    """Interior edges at reference quantiles k/bins, k = 1..bins-1, as data values, deduplicated.

    Order statistics rather than interpolated quantiles: no arithmetic on infinities, and ties
    (a constant or discrete feature) collapse into fewer, never empty-by-construction, bins.
    """
    n = sorted_values.shape[0]
    idx = (np.arange(1, bins, dtype=np.int64) * n) // bins
    return np.unique(sorted_values[idx]).astype(np.float64)


def _fit_numerical(name: str, values: Any, bins: int, xp: ModuleType) -> NumericalProfile:
    s, n_missing = _numerical.sort_window(values, name=name, xp=xp)
    s = np.ascontiguousarray(to_numpy(s))
    lo, hi = _numerical.finite_bounds(s, xp=np)
    mean, std, _ = _numerical.moments(s, xp=np)
    edges = quantile_edges(s, bins)
    counts = _numerical.bin_counts(s, edges, xp=np)
    return NumericalProfile(name, s, n_missing, mean, std, (lo, s.shape[0] - hi), edges, counts)


@dataclass(eq=False)
class ReferenceProfile:
    """Everything `compare` needs about the reference data; build it with `fit_profile`."""

    rows: int
    bins: int
    features: dict[str, NumericalProfile | CategoricalProfile]
    pca: PcaProfile | None = None

    @property
    def numerical(self) -> list[str]:
        """Names of the numerical features, in fitting order."""
        return [n for n, p in self.features.items() if p.kind == "numerical"]

    @property
    def categorical(self) -> list[str]:
        """Names of the categorical features, in fitting order."""
        return [n for n, p in self.features.items() if p.kind == "categorical"]

    @property
    def nbytes(self) -> int:
        """Bytes held by the profile's arrays."""
        total = 0
        for p in self.features.values():
            arrays = (p.sorted, p.edges, p.bin_counts) if p.kind == "numerical" else (p.counts,)
            total += sum(a.nbytes for a in arrays)
        return total

    def to_bytes(self) -> bytes:
        """Serialise to `.npz` bytes (no pickle); `from_bytes` reads them back."""
        arrays: dict[str, np.ndarray] = {}
        feats = []
        for i, p in enumerate(self.features.values()):
            if p.kind == "numerical":
                arrays[f"f{i}.sorted"] = p.sorted
                arrays[f"f{i}.edges"] = p.edges
                arrays[f"f{i}.bin_counts"] = p.bin_counts
                feats.append({
                    "name": p.name, "kind": p.kind, "n_missing": p.n_missing,
                    "mean": _json_float(p.mean), "std": _json_float(p.std),
                    "inf_counts": list(p.inf_counts),
                })
            else:
                arrays[f"f{i}.counts"] = p.counts
                feats.append({
                    "name": p.name, "kind": p.kind, "n_missing": p.n_missing,
                    "categories": p.categories,
                })
        header: dict[str, Any] = {
            "format": FORMAT, "version": FORMAT_VERSION, "rows": self.rows, "bins": self.bins,
            "features": feats, "pca": None,
        }
        if self.pca is not None:
            arrays["pca.mean"] = self.pca.mean
            arrays["pca.scale"] = self.pca.scale
            arrays["pca.components"] = self.pca.components
            header["pca"] = {
                "features": self.pca.features, "error_mean": self.pca.error_mean,
                "error_std": self.pca.error_std,
            }
        arrays["header.json"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> ReferenceProfile:
        """Read a profile written by `to_bytes`.

        Raises:
            DriftInputError: the bytes are not a profile of a format version this code reads.
        """
        return cls._load(io.BytesIO(data), what="reference profile bytes")

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> ReferenceProfile:
        """Read a profile from a file holding `to_bytes()` output, without a second copy in RAM.

        Raises:
            DriftInputError: the file is missing or not a profile.
        """
        return cls._load(os.fspath(path), what=f"reference profile file {os.fspath(path)!r}")

    @classmethod
    def _load(cls, source: Any, *, what: str) -> ReferenceProfile:
        try:
            with np.load(source, allow_pickle=False) as z:
                header = json.loads(bytes(z["header.json"]).decode())
                if header.get("format") != FORMAT or header.get("version") != FORMAT_VERSION:
                    raise DriftInputError(
                        f"not a reference profile of format {FORMAT} v{FORMAT_VERSION} "
                        f"(found {header.get('format')!r} v{header.get('version')!r})"
                    )
                return cls._from_npz(header, z)
        except DriftInputError:
            raise
        except (zipfile.BadZipFile, KeyError, ValueError, OSError, TypeError, EOFError) as exc:
            raise DriftInputError(f"cannot read {what}: {exc}") from exc

    @classmethod
    def _from_npz(cls, header: dict, z: Any) -> ReferenceProfile:
        feats: dict[str, NumericalProfile | CategoricalProfile] = {}
        for i, f in enumerate(header["features"]):
            if f["kind"] == "numerical":
                feats[f["name"]] = NumericalProfile(
                    f["name"], z[f"f{i}.sorted"], int(f["n_missing"]), _py_float(f["mean"]),
                    _py_float(f["std"]), tuple(f["inf_counts"]), z[f"f{i}.edges"],
                    z[f"f{i}.bin_counts"],
                )
            else:
                feats[f["name"]] = CategoricalProfile(
                    f["name"], list(f["categories"]), z[f"f{i}.counts"], int(f["n_missing"])
                )
        pca = None
        if header["pca"] is not None:
            h = header["pca"]
            pca = PcaProfile(
                list(h["features"]), z["pca.mean"], z["pca.scale"], z["pca.components"],
                float(h["error_mean"]), float(h["error_std"]),
            )
        return cls(int(header["rows"]), int(header["bins"]), feats, pca)


def _json_float(x: float) -> float | str:
    return x if math.isfinite(x) else repr(x)


def _py_float(x: float | str) -> float:
    return float(x)


def fit_profile(
    columns: Mapping[str, Any],
    *,
    categorical: Sequence[str] = (),
    bins: int = 10,
    backend: str | None = None,
    multivariate: bool = True,
) -> ReferenceProfile:
    """Fit the reference profile of `columns`.

    Args:
        columns: name -> 1-D values (NumPy/CuPy/list/pyarrow), or a pyarrow Table / DataFrame.
            Every column not named in `categorical` is numerical.
        categorical: names of the categorical columns (ints are fine: predicted classes).
            Default: none.
        bins: number of reference-quantile bins for PSI / Jensen-Shannon / Hellinger on
            numerical features. Default 10.
        backend: "numpy", "cupy", or None (default: CuPy when a GPU is usable) for the sorts.
        multivariate: also fit the PCA of the numerical features. Default True.

    Raises:
        DriftInputError: empty or ragged columns, unknown categorical names, text in a numerical
            column, or a column with no values at all; the message names the feature.
    """
    what = "reference"
    cols = _columns.as_columns(columns, what=what)
    rows = _columns.check_lengths(cols, what=what)
    if not isinstance(bins, int) or isinstance(bins, bool) or bins < 2:
        raise DriftInputError(f"bins must be an integer >= 2, got {bins!r}")
    cat = list(dict.fromkeys(categorical))
    missing = [c for c in cat if c not in cols]
    if missing:
        raise DriftInputError(
            f"{what}: categorical column {missing[0]!r} is not among the columns "
            f"({', '.join(sorted(cols))})"
        )
    _, xp = resolve_backend(backend)
    feats: dict[str, NumericalProfile | CategoricalProfile] = {}
    raw_numerical: dict[str, np.ndarray] = {}
    for name, values in cols.items():
        if name in cat:
            cats, counts, n_missing = _columns.categorical(name, values, what=what)
            if not cats:
                raise DriftInputError(
                    f"{what}: feature {name!r}: all {n_missing} values are missing; "
                    "a categorical feature needs at least one value"
                )
            feats[name] = CategoricalProfile(name, cats, counts, n_missing)
        else:
            arr = _columns.numerical(name, values, what=what)
            if xp is np:
                arr = to_numpy(arr)
            try:
                feats[name] = _fit_numerical(name, arr, bins, xp)
            except DriftInputError as exc:
                raise DriftInputError(f"{what}: {exc}") from None
            raw_numerical[name] = to_numpy(arr)
    pca = None
    if multivariate and len(raw_numerical) >= 2:
        names = list(raw_numerical)
        pca = fit_pca(
            names, [raw_numerical[n] for n in names], [feats[n].mean for n in names],
            [feats[n].std for n in names],
        )
    return ReferenceProfile(rows, bins, feats, pca)
