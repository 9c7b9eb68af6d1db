"""Explanations of a model bundle: global importance on a holdout, attributions of one row.

Global: `holdout_importance` runs `appliance.monitor.importance.permutation_importance` with the
bundle as the scorer and the task's main metric, and adds the score association of each feature
(the reference the monitor's importance shift is measured against). It only calls
`ModelBundle.score`, so it works for every model kind.

Per row, `attribute` picks the method that fits the kind; each explains the model's raw output
(`ModelBundle.raw`: a binary model's logit, the predicted class's logit or margin for a
multiclass one, a regressor's standardised value), in which attributions add up:

- xgboost: TreeSHAP, XGBoost's own ``pred_contribs=True``: exact Shapley values of the trees;
  they sum with the bias to the margin.
- mlp: integrated gradients (Sundararajan et al. 2017) from a baseline of the training means
  (0 after standardising) and no category (an all-zero one-hot block) to the row, along a
  straight line in the design matrix, `IG_STEPS` midpoint steps; the attributions sum to
  f(row) - f(baseline) up to the discretisation error, which is reported (`completeness_gap`).
- custom: integrated gradients when the TorchScript network is differentiable; otherwise
  occlusion: each feature in turn set to its baseline, the drop in the output its attribution
  (model-agnostic, no completeness guarantee).

Design-matrix columns are mapped back to features: a categorical feature's attribution is the
sum over its one-hot block.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from appliance.errors import InvalidInput
from appliance.monitor.importance import association, permutation_importance
from appliance.monitor.metrics import MAIN_METRIC, evaluation_metrics
from appliance.tables import table_columns
from cluster.bundle import ModelBundle
from cluster.labels import truth

IG_STEPS = 64


def holdout_importance(bundle: ModelBundle, holdout: pa.Table, label: str, *,
                       seed: int = 0) -> dict[str, Any]:
    """The version's importance document: permutation importance of each feature on the
    labelled `holdout` (`importance.permutation_importance`, seeded by `seed`) and each
    feature's score association there (`importance.association`)."""
    features, categorical = bundle.feature_names, bundle.categorical
    columns = table_columns(holdout, features, categorical)
    metric = MAIN_METRIC[bundle.task]
    y = truth(holdout, label, bundle.task, bundle.classes)

    def metric_of(cols: Mapping[str, np.ndarray], rows: np.ndarray) -> float | None:
        out = bundle.score(cols)
        outputs = (out.probabilities if bundle.task == "multiclass" else out.scores)
        return evaluation_metrics(bundle.task, y[rows], outputs,
                                  threshold=bundle.threshold).get(metric)

    doc = permutation_importance(metric_of, columns, metric=metric, seed=seed)
    _, scores = bundle.predict(columns)
    doc["association"] = association(columns, scores, categorical)
    return doc


def _blocks(bundle: ModelBundle) -> list[tuple[str, slice]]:
    """Each feature's columns in the design matrix."""
    pre = bundle.preprocessor
    out = [(name, slice(i, i + 1)) for i, name in enumerate(pre.numerical)]
    start = len(pre.numerical)
    for name, cats in pre.categorical.items():
        out.append((name, slice(start, start + len(cats))))
        start += len(cats)
    return out


def _to_features(bundle: ModelBundle, per_column: np.ndarray) -> dict[str, float]:
    return {name: float(per_column[block].sum()) for name, block in _blocks(bundle)}


def _output_index(bundle: ModelBundle, raw: np.ndarray) -> int:
    """Which raw output is explained: the predicted class's for multiclass, else the one."""
    return int(np.argmax(raw)) if bundle.task == "multiclass" else 0


def _forward(bundle: ModelBundle, x: torch.Tensor) -> torch.Tensor:
    return bundle.module(x).reshape(len(x), -1)


def integrated_gradients(bundle: ModelBundle, x: np.ndarray, output: int, *,
                         steps: int = IG_STEPS) -> tuple[np.ndarray, float, float]:
    """(attribution per design column, f(x), f(baseline)) of raw output `output` for one
    preprocessed row `x`, from the all-zero baseline, by the midpoint rule.

    Raises:
        RuntimeError: the network cannot be differentiated (a custom TorchScript module
            without gradients).
    """
    module = bundle.module
    module.eval()
    row = torch.from_numpy(np.asarray(x, dtype=np.float32).reshape(1, -1))
    baseline = torch.zeros_like(row)
    alphas = ((torch.arange(steps, dtype=torch.float32) + 0.5) / steps).reshape(-1, 1)
    path = (baseline + alphas * (row - baseline)).detach().requires_grad_(True)
    out = _forward(bundle, path)[:, output].sum()
    (grads,) = torch.autograd.grad(out, path)
    attributions = ((row - baseline) * grads.mean(dim=0, keepdim=True)).reshape(-1)
    with torch.no_grad():
        fx = float(_forward(bundle, row)[0, output])
        fb = float(_forward(bundle, baseline)[0, output])
    return attributions.detach().numpy().astype(np.float64), fx, fb


def _occlusion(bundle: ModelBundle, x: np.ndarray, output: int
               ) -> tuple[dict[str, float], float, float]:
    rows = [x]
    blocks = _blocks(bundle)
    for _, block in blocks:
        occluded = x.copy()
        occluded[block] = 0.0
        rows.append(occluded)
    with torch.no_grad():
        raw = _forward(bundle, torch.from_numpy(np.stack(rows).astype(np.float32))).numpy()
        fb = float(_forward(bundle, torch.zeros((1, len(x))))[0, output])
    fx = float(raw[0, output])
    return ({name: fx - float(raw[i + 1, output]) for i, (name, _) in enumerate(blocks)},
            fx, fb)


def _tree_shap(bundle: ModelBundle, x: np.ndarray, output: int
               ) -> tuple[np.ndarray, float, float]:
    # Deferred: only tree bundles need xgboost.
    import xgboost

    contribs = np.asarray(bundle.module.predict(xgboost.DMatrix(x.reshape(1, -1)),
                                                pred_contribs=True))
    # (1, columns + 1), or (1, classes, columns + 1) for a multiclass booster: the last
    # column is the bias (the expected margin).
    row = contribs[0, output] if contribs.ndim == 3 else contribs[0]
    fx = float(row.sum())
    return row[:-1].astype(np.float64), fx, float(row[-1])


def attribute(bundle: ModelBundle, columns: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Attributions of the first row of `columns` (the bundle's features, one value each).

    Returns:
        {"method", "output" (what is explained), "output_index", "value" (the output for the
        row), "baseline_value", "attributions" {feature: float}, "completeness_gap"
        (value - baseline_value - sum of the attributions; ~0 for TreeSHAP and IG)}.

    Raises:
        InvalidInput: a feature is missing or malformed.
    """
    x = bundle.preprocessor.transform(columns)[:1][0].astype(np.float64)
    raw = bundle.raw({k: np.asarray(v)[:1] for k, v in columns.items()})[0]
    output = _output_index(bundle, raw)
    what = {"binary": "logit of class 1", "regression": "standardised predicted value",
            "multiclass": f"logit of class {_class_name(bundle, output)!s}"}[bundle.task]
    if bundle.kind == "xgboost":
        per_column, fx, fb = _tree_shap(bundle, x, output)
        method, attributions = "tree_shap", _to_features(bundle, per_column)
        what = what.replace("logit", "margin")
    else:
        try:
            per_column, fx, fb = integrated_gradients(bundle, x, output)
            method, attributions = "integrated_gradients", _to_features(bundle, per_column)
        except RuntimeError:
            if bundle.kind != "custom":
                raise
            attributions, fx, fb = _occlusion(bundle, x, output)
            method = "occlusion"
    return {"method": method, "output": what, "output_index": output, "value": fx,
            "baseline_value": fb, "attributions": attributions,
            "completeness_gap": fx - fb - float(sum(attributions.values()))}


def _class_name(bundle: ModelBundle, index: int) -> Any:
    classes = bundle.classes or []
    return classes[index] if index < len(classes) else index


def check_row(bundle: ModelBundle, columns: Mapping[str, np.ndarray]) -> None:
    """Refuse rows the bundle cannot explain (a feature missing), naming it."""
    missing = [f for f in bundle.feature_names if f not in columns]
    if missing:
        raise InvalidInput(f"the logged row lacks feature(s) {missing} of the model")
