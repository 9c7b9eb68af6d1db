"""kernels: the appliance's drift engine. Fit a reference profile once, compare many windows.

    profile = kernels.fit_profile(train_columns, categorical=["region", "prediction"])
    blob = profile.to_bytes()                      # stored with the model version
    report = kernels.compare(kernels.ReferenceProfile.from_bytes(blob), window_columns)
    report.to_dict()  # {"rows": ..., "features": {...}, "drifted_share": s, "dataset_drifted": b}

Statistics (names for `stats=`; all by default) and their default thresholds
(`DEFAULT_THRESHOLDS`, overridable per call):

    numerical    ks (statistic, p-value; p < 0.05), wasserstein (raw and / reference std; 0.1),
                 psi (0.2), jensen_shannon (base 2; 0.1), hellinger (0.1) on reference-quantile
                 bins, mean_shift (in reference stds; 0.2), std_shift (std ratio - 1; 0.2)
    categorical  chi2 (statistic, p-value; p < 0.05), psi (0.2), jensen_shannon (0.1),
                 hellinger (0.1), tvd (0.1), unseen_share (0.01)
    every        missing_share (reference, current, change; |change| >= 0.05), always reported
    multivariate pca: mean reconstruction error vs the reference's (+10% and z >= 3)
    dataset      drifted_share = share of drifted features; dataset_drifted when >= 0.5

Exactness: the KS statistic is bit-identical to `scipy.stats.ks_2samp` (ties included) and its
p-value follows scipy's method="auto"; Wasserstein-1 matches `scipy.stats.wasserstein_distance`;
chi-square matches `scipy.stats.chi2_contingency`; Jensen-Shannon matches
`scipy.spatial.distance.jensenshannon(base=2)` on the same histograms but is 0.0 (never NaN) for
identical ones. Counts are integers, sums float64.

Missing values (NaN, None, null) are counted into `missing_share` and left out of every other
statistic. Infinities are ordinary, ordered values for KS and the bins (as in scipy), but are
left out of Wasserstein, the moments and PCA (where they would give inf/NaN); their share is
reported as `infinite_share`. PSI replaces an empty bin's proportion by `PSI_EPSILON` (1e-4).

Backends: NumPy, or CuPy when importable with a GPU (`backend=None` picks automatically). On the
host, the KS/Wasserstein merge walk is a small C extension built at install time
(`kernels/_sorted_merge.c`); without a compiler the NumPy walk gives the same results, slower.
"""

from kernels._backend import BACKENDS, gpu_available, resolve_backend
from kernels._columns import arrow_numbers
from kernels._compare import compare, compute
from kernels._divergence import PSI_EPSILON
from kernels._errors import BackendUnavailable, DriftError, DriftInputError
from kernels._profile import CategoricalProfile, NumericalProfile, ReferenceProfile, fit_profile
from kernels._report import (
    CATEGORICAL_STATS,
    DEFAULT_THRESHOLDS,
    MULTIVARIATE_STATS,
    NUMERICAL_STATS,
    STATS,
    DriftReport,
    FeatureDrift,
)

__all__ = [
    "BACKENDS",
    "BackendUnavailable",
    "CATEGORICAL_STATS",
    "CategoricalProfile",
    "DEFAULT_THRESHOLDS",
    "DriftError",
    "DriftInputError",
    "DriftReport",
    "FeatureDrift",
    "MULTIVARIATE_STATS",
    "NUMERICAL_STATS",
    "NumericalProfile",
    "PSI_EPSILON",
    "ReferenceProfile",
    "STATS",
    "arrow_numbers",
    "compare",
    "compute",
    "fit_profile",
    "gpu_available",
    "resolve_backend",
]
