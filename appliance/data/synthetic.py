"""A seeded synthetic credit-scoring stream with controllable covariate and concept drift.

Each row is one loan applicant; the label ``default`` is 1 when the loan defaulted. Pure NumPy and
PyArrow, so the control plane can draw data without Ray or torch.

Features (numerical first, then categorical), as drawn with no drift:

=========================  ========================================================================
``age``                    years, normal(41, 12) rounded and clipped to [18, 80]
``income``                 yearly income, log-normal, median 52,000, log-sd 0.5
``debt_to_income``         debt service / income, logistic-normal in (0, 1), median 0.27
``credit_history_months``  months since the first credit line: a uniform 15-100% of adult life
``open_accounts``          open credit lines, 1 + Poisson(3)
``late_payments_12m``      payments over 30 days late in the last year, geometric, 84% zero
``credit_utilization``     revolving balance / limit, logistic-normal in (0, 1), median 0.35
``loan_amount``            amount applied for, log-normal, median 14,000, income elasticity 0.6
``employment``             salaried 60% / self_employed 15% / contract 15% / unemployed 10%
``home_ownership``         own 25% / mortgage 40% / rent 35%
=========================  ========================================================================

How the label is drawn. Each applicant has a vector ``z`` of ten risk terms: log income,
debt-to-income, late payments, utilisation, age, credit history, log loan-to-income, open accounts,
an employment risk score (salaried 0, self-employed 0.6, contract 1.2, unemployed 2.4) and a
housing risk score (own 0, mortgage 0.3, rent 1), each centred and scaled by frozen constants of
the undrifted population, so the same applicant always has the same ``z``. Then::

    P(default | x) = sigmoid(SCALE * w(concept) . z + BIAS),   SCALE = 4, BIAS = -1.8

and the label is a Bernoulli draw from it. Undrifted, about 33% of applicants default and the
Bayes-optimal accuracy is about 88.6%.

How drift is injected. Every random draw is made with fixed parameters in a fixed order and only
then transformed, so for one seed the rows at different strengths are the same applicants, moved
(common random numbers).

* ``covariate`` in [0, 1] moves the population (a new, younger, lower-income sales channel),
  linearly in the strength; at 1: applicants are 6 years younger (so shorter histories), log
  income falls by 0.3 (median 52,000 -> 38,500), debt-to-income falls (logit -0.3, median 0.27 ->
  0.21), utilisation rises (logit +0.4, median 0.35 -> 0.45), loans shrink (log -0.35 on top of
  the income effect, median 14,000 -> 8,200), employment moves to 45% salaried / 12%
  self-employed / 28% contract / 15% unemployed and housing to 20% own / 30% mortgage / 50% rent.
  Open accounts and late payments do not move. The rule ``P(default | x)`` is unchanged; the
  default rate rises from ~33% to ~44% because the new applicants are riskier under it. On a
  window of 2,000 rows against 20,000 reference rows, KS is ~0.14-0.40 on the six moved numerical
  features and PSI ~0.1 on both categorical ones.
* ``concept`` in [0, 1] changes ``P(default | x)`` without moving any feature: the coefficient
  vector turns by up to a right angle, ``w(c) = cos(c * pi/2) * W0 + sin(c * pi/2) * W1``, from
  the "classic" rule ``W0`` (low income, debt-to-income and late payments drive default) to the
  "shock" rule ``W1`` (loan-to-income, utilisation, contract work and renting drive it; income and
  age no longer protect). ``W0`` and ``W1`` are orthonormal under the covariance of ``z``, so
  ``w(c) . z`` has unit variance for every ``c``: the noise level, and so the Bayes accuracy
  (~88.6%), is the same in every regime, and a model refitted on drifted data can recover fully.
  At ``concept=1`` the old rule is uncorrelated with the new one, so a model fitted at
  ``concept=0`` scores only ~57%.

The protected attribute. With ``protected=True`` each applicant also carries ``group`` ("a" or
"b"), a stand-in for a protected characteristic that the lender must not use but must monitor
for disparate impact. It is no feature and plays no part in the label: the demo trains without
it and sends it beside the features, and serving logs it without feeding it to the model
(``log_columns``). It is drawn from the spare normal column ``g5`` and the income draw ``g1``::

    group = "b" if 0.8 * g5 - 0.6 * g1 > 0.4 else "a"

so about 34% of applicants are in group "b", and they earn less on average (the correlation
of membership with log income is about -0.45), like a protected group whose incomes lag. A model
that leans on income therefore predicts default more often for group "b" without ever seeing
the attribute, which is what the fairness metrics exist to surface. Covariate drift lowers
incomes for everyone and leaves the membership rule alone.
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa

from appliance.errors import InvalidInput

NUMERICAL: list[str] = [
    "age",
    "income",
    "debt_to_income",
    "credit_history_months",
    "open_accounts",
    "late_payments_12m",
    "credit_utilization",
    "loan_amount",
]
CATEGORICAL: list[str] = ["employment", "home_ownership"]
FEATURES: list[str] = [*NUMERICAL, *CATEGORICAL]
LABEL = "default"
PROTECTED = "group"

EMPLOYMENT = ["salaried", "self_employed", "contract", "unemployed"]
HOME_OWNERSHIP = ["own", "mortgage", "rent"]

SCALE = 4.0
BIAS = -1.8

# Category probabilities at covariate 0 and 1; intermediate strengths interpolate linearly.
_EMPLOYMENT_P = (np.array([0.60, 0.15, 0.15, 0.10]), np.array([0.45, 0.12, 0.28, 0.15]))
_HOME_P = (np.array([0.25, 0.40, 0.35]), np.array([0.20, 0.30, 0.50]))
_EMPLOYMENT_RISK = np.array([0.0, 0.6, 1.2, 2.4])
_HOME_RISK = np.array([0.0, 0.3, 1.0])

# Order of the risk terms in z (and in the coefficient vectors below).
_TERMS = [
    "log_income",
    "debt_to_income",
    "late_payments",
    "utilization",
    "age",
    "history",
    "loan_to_income",
    "open_accounts",
    "employment",
    "home",
]
# Mean and standard deviation of each raw term at covariate 0 (measured on 10^6 rows, frozen).
_CENTRE = np.array([10.859, 0.2834, 0.1936, 0.3714, 41.13, 159.6, -1.312, 4.0, 0.51, 0.47])
_SPREAD = np.array([0.5, 0.1153, 0.4796, 0.1663, 11.7, 111.0, 0.447, 1.733, 0.7653, 0.4064])
# The two rules, made orthonormal under the covariance of z at covariate 0 (so w0.z and w1.z are
# uncorrelated with unit variance) from the raw rules below and frozen to 4 decimals:
#   classic = [-1.0, 1.0, 0.9, 0.4, -0.3, -0.3, 0.3, 0.1, 0.4, 0.2]
#   shock   = [0.3, -0.2, 0.2, 1.0, 0.4, 0.1, 1.0, -0.3, 0.8, 0.7]
_W0 = np.array([-0.5097, 0.5097, 0.4587, 0.2039, -0.1529, -0.1529, 0.1529, 0.051, 0.2039, 0.1019])
_W1 = np.array([0.3103, -0.2536, -0.0127, 0.5111, 0.2689, 0.0988, 0.5251, -0.1842, 0.3977, 0.369])


def _check_strength(name: str, value: float) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"{name} must be a number in [0, 1], got {value!r}") from exc
    if not 0.0 <= v <= 1.0:  # also rejects NaN
        raise InvalidInput(f"{name} must be in [0, 1] (drift strength), got {value!r}")
    return v


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _pick(u: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Category index for each uniform draw in `u` by inverse CDF (keeps draws common)."""
    return np.minimum(np.searchsorted(np.cumsum(probs), u, side="right"), len(probs) - 1)


def coefficients(concept: float) -> np.ndarray:
    """The coefficient vector w(concept) over the risk terms (see the module docstring)."""
    angle = _check_strength("concept", concept) * math.pi / 2
    return math.cos(angle) * _W0 + math.sin(angle) * _W1


def default_probability(columns: dict[str, np.ndarray], *, concept: float = 0.0) -> np.ndarray:
    """The true P(default | x) of the stream for `columns` at concept strength `concept`.

    Args:
        columns: feature name -> array, as in a generated table.
        concept: concept-drift strength in [0, 1] (default 0).
    """
    return _sigmoid(SCALE * (_risk_terms(columns) @ coefficients(concept)) + BIAS)


def _risk_terms(c: dict[str, np.ndarray]) -> np.ndarray:
    """The (n, 10) matrix z of standardised risk terms, in the order of _TERMS."""
    income = np.asarray(c["income"], dtype=np.float64)
    emp = {name: i for i, name in enumerate(EMPLOYMENT)}
    home = {name: i for i, name in enumerate(HOME_OWNERSHIP)}
    raw = [
        np.log(income),
        np.asarray(c["debt_to_income"], dtype=np.float64),
        np.asarray(c["late_payments_12m"], dtype=np.float64),
        np.asarray(c["credit_utilization"], dtype=np.float64),
        np.asarray(c["age"], dtype=np.float64),
        np.asarray(c["credit_history_months"], dtype=np.float64),
        np.log(np.asarray(c["loan_amount"], dtype=np.float64) / income),
        np.asarray(c["open_accounts"], dtype=np.float64),
        _EMPLOYMENT_RISK[[emp[str(v)] for v in c["employment"]]],
        _HOME_RISK[[home[str(v)] for v in c["home_ownership"]]],
    ]
    # Constants of the undrifted population, not of this batch: the label rule is a fixed
    # function of the applicant.
    return (np.stack(raw, axis=1) - _CENTRE) / _SPREAD


def generate(n: int, *, seed: int, covariate: float = 0.0, concept: float = 0.0,
             protected: bool = False) -> pa.Table:
    """Draw `n` labelled applicants.

    Args:
        n: number of rows (> 0).
        seed: seed of the random generator; the same arguments always give the same table.
        covariate: covariate-drift strength in [0, 1] (default 0: none).
        concept: concept-drift strength in [0, 1] (default 0: none).
        protected: add the protected attribute PROTECTED ("a"/"b", see the module docstring)
            after the label (default False: the same rows without it).

    Returns:
        A table with the columns FEATURES (float64 numerical, string categorical) and LABEL
        (int64, 1 = defaulted), then PROTECTED when asked for.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n <= 0:
        raise InvalidInput(f"n must be a positive integer (rows to draw), got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InvalidInput(f"seed must be a non-negative integer, got {seed!r}")
    cov = _check_strength("covariate", covariate)
    concept = _check_strength("concept", concept)
    n = int(n)
    rng = np.random.default_rng(int(seed))
    # All draws first, with fixed parameters and in a fixed order (common random numbers). One
    # normal column is spare, so a new feature can use it without reshuffling the others.
    g = rng.standard_normal((n, 6))
    u = rng.random((n, 4))
    e = rng.standard_exponential(n)
    accounts = rng.poisson(3.0, n)

    age = np.clip(np.round(41.0 + 12.0 * g[:, 0] - 6.0 * cov), 18.0, 80.0)
    log_income = math.log(52_000.0) + 0.5 * g[:, 1] - 0.3 * cov
    income = np.round(np.exp(log_income))
    dti = _sigmoid(-1.0 + 0.6 * g[:, 2] - 0.3 * cov)
    util = _sigmoid(-0.6 + 0.8 * g[:, 3] + 0.4 * cov)
    history = np.round((age - 18.0) * 12.0 * (0.15 + 0.85 * u[:, 0]))
    late = np.floor(e * 0.55)
    # Loans scale with income (elasticity 0.6), so loan-to-income carries its own signal.
    log_loan = math.log(14_000.0) + 0.6 * (log_income - math.log(52_000.0)) + 0.4 * g[:, 4]
    loan = np.round(np.exp(log_loan - 0.35 * cov), -1)
    emp_p = (1 - cov) * _EMPLOYMENT_P[0] + cov * _EMPLOYMENT_P[1]
    home_p = (1 - cov) * _HOME_P[0] + cov * _HOME_P[1]
    employment = np.array(EMPLOYMENT, dtype=object)[_pick(u[:, 1], emp_p)]
    home = np.array(HOME_OWNERSHIP, dtype=object)[_pick(u[:, 2], home_p)]

    columns: dict[str, np.ndarray] = {
        "age": age,
        "income": income,
        "debt_to_income": np.round(dti, 4),
        "credit_history_months": history,
        "open_accounts": (1 + accounts).astype(np.float64),
        "late_payments_12m": late,
        "credit_utilization": np.round(util, 4),
        "loan_amount": loan,
        "employment": employment,
        "home_ownership": home,
    }
    label = (u[:, 3] < default_probability(columns, concept=concept)).astype(np.int64)
    arrays = [pa.array(columns[f], type=pa.float64()) for f in NUMERICAL]
    arrays += [pa.array(columns[f].tolist(), type=pa.string()) for f in CATEGORICAL]
    arrays.append(pa.array(label, type=pa.int64()))
    names = [*FEATURES, LABEL]
    if protected:
        group = np.where(0.8 * g[:, 5] - 0.6 * g[:, 1] > 0.4, "b", "a")
        arrays.append(pa.array(group.tolist(), type=pa.string()))
        names.append(PROTECTED)
    return pa.table(arrays, names=names)
