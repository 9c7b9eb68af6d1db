"""A trained model and its preprocessing, as one artifact.

Serving loads the same bytes that training wrote, so the transform applied to a request is
exactly the one fitted on the training data (no training/serving skew).

Every kind of model shares the bundle: the MLP (a torch network, `FORMAT`), gradient-boosted
trees (an XGBoost booster, `XGBOOST_FORMAT`) and the user's own network (TorchScript,
`TORCHSCRIPT_FORMAT`); `ModelBundle.from_bytes` reads each. A bundle
knows its task, and turns the network's raw outputs into the same three things for
every task (`Outputs`), which is what serving answers and logs and what drift profiles:

- binary: predictions are the class (0/1, at `threshold`), scores the probability of class 1;
- multiclass: predictions are the index of the class in `classes` (the training labels, ints
  or strings, sorted), scores the probability of that class, probabilities the whole row;
- regression: scores are the predicted value in label units (the network learns the label
  standardised by `target`), predictions are 0 (a regressor has no class).
"""

from __future__ import annotations

import dataclasses
import io
import json
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from appliance.errors import InvalidInput

FORMAT = "appliance.bundle/1"
# A gradient-boosted trees bundle: this line, the meta JSON's length (8 bytes, big-endian), the
# meta JSON, then the booster in XGBoost's own UBJSON format. Neither part can run code on load.
XGBOOST_FORMAT = "appliance.bundle.xgboost/1"
_XGBOOST_MAGIC = (XGBOOST_FORMAT + "\n").encode()
# The user's own network (the custom kind), traced to TorchScript, framed as the xgboost one.
# Loading it runs no Python of the user's: TorchScript is a graph torch interprets.
TORCHSCRIPT_FORMAT = "appliance.bundle.torchscript/1"
_TORCHSCRIPT_MAGIC = (TORCHSCRIPT_FORMAT + "\n").encode()
TASKS = ("binary", "multiclass", "regression")
KINDS = ("mlp", "xgboost", "custom")


class Outputs(NamedTuple):
    """What a bundle makes of a batch: see the module docstring for each task.

    Args:
        predictions: int64, shape (n,).
        scores: float32, shape (n,).
        probabilities: float32, shape (n, len(classes)) for multiclass, else None.
    """

    predictions: np.ndarray
    scores: np.ndarray
    probabilities: np.ndarray | None = None


@dataclasses.dataclass
class Preprocessor:
    """Standardises numerical features and one-hot encodes categorical ones.

    Args:
        numerical: feature name -> (mean, std) fitted on the training data.
        categorical: feature name -> categories seen in training, in a fixed order.
    """

    numerical: dict[str, tuple[float, float]]
    categorical: dict[str, list[str]]

    @classmethod
    def fit(cls, columns: Mapping[str, np.ndarray], categorical: list[str]) -> Preprocessor:
        """Fit on training `columns`; features named in `categorical` are one-hot encoded."""
        num: dict[str, tuple[float, float]] = {}
        cat: dict[str, list[str]] = {}
        for name, values in columns.items():
            if name in categorical:
                cat[name] = sorted({str(v) for v in values})
            else:
                arr = np.asarray(values, dtype=np.float64)
                mean = float(np.nanmean(arr))
                std = float(np.nanstd(arr)) or 1.0
                num[name] = (mean, std)
        return cls(numerical=num, categorical=cat)

    @property
    def feature_names(self) -> list[str]:
        return [*self.numerical, *self.categorical]

    @property
    def width(self) -> int:
        return len(self.numerical) + sum(len(c) for c in self.categorical.values())

    def transform(self, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        """The float32 design matrix for `columns`; an unseen category encodes as all zeros."""
        missing = [f for f in self.feature_names if f not in columns]
        if missing:
            raise InvalidInput(
                f"missing feature(s) {missing}; the model expects {self.feature_names}"
            )
        lengths = {len(columns[f]) for f in self.feature_names}
        if len(lengths) != 1:
            raise InvalidInput(f"features have different lengths {sorted(lengths)}")
        n = lengths.pop()
        out = np.zeros((n, self.width), dtype=np.float32)
        col = 0
        for name, (mean, std) in self.numerical.items():
            try:
                arr = np.asarray(columns[name], dtype=np.float64)
            except (TypeError, ValueError) as exc:
                raise InvalidInput(f"feature {name!r} must be numeric: {exc}") from exc
            # A missing value imputes to the training mean, i.e. 0 after standardising.
            out[:, col] = np.nan_to_num((arr - mean) / std, nan=0.0, posinf=0.0, neginf=0.0)
            col += 1
        for name, cats in self.categorical.items():
            index = {c: i for i, c in enumerate(cats)}
            codes = np.fromiter((index.get(str(v), -1) for v in columns[name]), np.int64, n)
            rows = np.nonzero(codes >= 0)[0]
            out[rows, col + codes[rows]] = 1.0
            col += len(cats)
        return out


def build_mlp(width: int, hidden: int = 32, layers: int = 2, outputs: int = 1) -> nn.Sequential:
    """The tabular network: `layers` ReLU layers of `hidden` units and `outputs` raw outputs
    (one logit for binary, one per class for multiclass, one value for regression)."""
    mods: list[nn.Module] = []
    last = width
    for _ in range(layers):
        mods += [nn.Linear(last, hidden), nn.ReLU()]
        last = hidden
    mods.append(nn.Linear(last, outputs))
    return nn.Sequential(*mods)


def output_width(task: str, classes: list | None) -> int:
    """Raw outputs of the network for `task`: one per class for multiclass, else one."""
    return len(classes or ()) if task == "multiclass" else 1


@dataclasses.dataclass
class ModelBundle:
    """A model with its preprocessing.

    Args:
        preprocessor: the fitted input transform.
        module: the torch model mapping the design matrix to its raw outputs
            (`output_width` per row).
        hidden: hidden units per layer (needed to rebuild `module` on load).
        layers: hidden layers (needed to rebuild `module` on load).
        label: name of the target column.
        threshold: binary only: score at or above which the predicted class is 1 (0.5).
        task: "binary" (default), "multiclass" or "regression".
        classes: multiclass only: the label values, sorted; index i is class i.
        target: regression only: (mean, std) of the training labels.
        kind: "mlp" (default: `module` is the torch network), "xgboost" (`module` is an
            `xgboost.Booster` whose margins are the raw outputs) or "custom" (`module` is the
            user's network as TorchScript); hidden and layers are 0 for the last two.
    """

    preprocessor: Preprocessor
    module: nn.Module
    hidden: int
    layers: int
    label: str
    threshold: float = 0.5
    task: str = "binary"
    classes: list | None = None
    target: tuple[float, float] | None = None
    kind: str = "mlp"

    @property
    def feature_names(self) -> list[str]:
        return self.preprocessor.feature_names

    @property
    def categorical(self) -> list[str]:
        return list(self.preprocessor.categorical)

    def outputs(self, raw: np.ndarray) -> Outputs:
        """`Outputs` from the network's raw outputs `raw`, shape (n, output_width)."""
        raw = np.asarray(raw, dtype=np.float64).reshape(len(raw), -1)
        n = len(raw)
        if self.task == "multiclass":
            shifted = raw - raw.max(axis=1, keepdims=True)
            proba = np.exp(shifted)
            proba /= proba.sum(axis=1, keepdims=True)
            best = proba.argmax(axis=1)
            return Outputs(best.astype(np.int64), proba[np.arange(n), best].astype(np.float32),
                           proba.astype(np.float32))
        if self.task == "regression":
            mean, std = self.target or (0.0, 1.0)
            values = raw[:, 0] * std + mean
            return Outputs(np.zeros(n, np.int64), values.astype(np.float32))
        # sigmoid(x) = exp(-log(1 + exp(-x))): no overflow for any logit.
        scores = np.exp(-np.logaddexp(0.0, -raw[:, 0])).astype(np.float32)
        return Outputs((scores >= self.threshold).astype(np.int64), scores)

    def raw(self, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        """The network's raw outputs for `columns`, shape (n, output_width)."""
        x = self.preprocessor.transform(columns)
        if self.kind == "xgboost":
            # Deferred: only tree bundles need xgboost.
            import xgboost

            margins = self.module.predict(xgboost.DMatrix(x), output_margin=True)
            return np.asarray(margins).reshape(len(x), -1)
        self.module.eval()
        with torch.no_grad():
            return self.module(torch.from_numpy(x)).numpy()

    def score(self, columns: Mapping[str, np.ndarray]) -> Outputs:
        """`Outputs` for `columns`."""
        return self.outputs(self.raw(columns))

    def predict_proba(self, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        """Binary: probability of class 1, float32 of shape (n,); multiclass: the (n, classes)
        probabilities; regression: InvalidInput (a regressor has no probabilities)."""
        if self.task == "regression":
            raise InvalidInput("a regression model has no class probabilities; use predict")
        out = self.score(columns)
        return out.probabilities if self.task == "multiclass" else out.scores

    def predict(self, columns: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Return (predictions as int64, scores as float32): see `Outputs`."""
        out = self.score(columns)
        return out.predictions, out.scores

    def _meta(self) -> dict[str, Any]:
        return {
            "numerical": {k: list(v) for k, v in self.preprocessor.numerical.items()},
            "categorical": self.preprocessor.categorical,
            "label": self.label,
            "threshold": self.threshold,
            "task": self.task,
            "classes": self.classes,
            "target": list(self.target) if self.target else None,
        }

    def to_bytes(self) -> bytes:
        """The bundle as one artifact, in its kind's format (`from_bytes` reads both)."""
        if self.kind == "xgboost":
            return _framed(_XGBOOST_MAGIC, XGBOOST_FORMAT, self._meta(),
                           bytes(self.module.save_raw(raw_format="ubj")))
        if self.kind == "custom":
            buf = io.BytesIO()
            torch.jit.save(self.module, buf)
            return _framed(_TORCHSCRIPT_MAGIC, TORCHSCRIPT_FORMAT, self._meta(), buf.getvalue())
        meta = {
            "format": FORMAT,
            "numerical": {k: list(v) for k, v in self.preprocessor.numerical.items()},
            "categorical": self.preprocessor.categorical,
            "hidden": self.hidden,
            "layers": self.layers,
            "label": self.label,
            "threshold": self.threshold,
            "task": self.task,
            "classes": self.classes,
            "target": list(self.target) if self.target else None,
        }
        buf = io.BytesIO()
        # Never sort_keys: the order of "numerical" and "categorical" is the column order of the
        # design matrix the weights were trained on.
        blob = {"meta": json.dumps(meta), "state": self.module.state_dict()}
        torch.save(blob, buf)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> ModelBundle:
        """Read a bundle of either kind, dispatching on its format.

        Raises:
            InvalidInput: the bytes are not a bundle of a format this code reads.
        """
        if bytes(data[: len(_XGBOOST_MAGIC)]) == _XGBOOST_MAGIC:
            return cls._from_xgboost(data)
        if bytes(data[: len(_TORCHSCRIPT_MAGIC)]) == _TORCHSCRIPT_MAGIC:
            return cls._from_torchscript(data)
        try:
            # weights_only refuses pickled code: a bundle cannot execute anything on load.
            blob = torch.load(io.BytesIO(data), weights_only=True)
            meta = json.loads(blob["meta"])
        except Exception as exc:
            raise InvalidInput(f"not a model bundle: {exc}") from exc
        if meta.get("format") != FORMAT:
            raise InvalidInput(
                f"unsupported bundle format {meta.get('format')!r}; expected {FORMAT!r}"
            )
        pre = _preprocessor(meta)
        # Bundles written before tasks existed are binary classifiers.
        task: str = meta.get("task", "binary")
        classes: list[Any] | None = meta.get("classes")
        target = tuple(meta["target"]) if meta.get("target") else None
        module = build_mlp(pre.width, meta["hidden"], meta["layers"],
                           output_width(task, classes))
        module.load_state_dict(blob["state"])
        return cls(pre, module, meta["hidden"], meta["layers"], meta["label"], meta["threshold"],
                   task, classes, target)

    @classmethod
    def _from_xgboost(cls, data: bytes) -> ModelBundle:
        # Deferred: only tree bundles need xgboost.
        import xgboost

        try:
            meta, payload = _unframed(data, _XGBOOST_MAGIC)
            booster = xgboost.Booster()
            booster.load_model(bytearray(payload))
        except Exception as exc:
            raise InvalidInput(f"not a {XGBOOST_FORMAT} bundle: {exc}") from exc
        return cls._with(meta, booster, "xgboost")

    @classmethod
    def _from_torchscript(cls, data: bytes) -> ModelBundle:
        try:
            meta, payload = _unframed(data, _TORCHSCRIPT_MAGIC)
            module = torch.jit.load(io.BytesIO(payload), map_location="cpu")
        except Exception as exc:
            raise InvalidInput(f"not a {TORCHSCRIPT_FORMAT} bundle: {exc}") from exc
        return cls._with(meta, module, "custom")

    @classmethod
    def _with(cls, meta: dict[str, Any], module: Any, kind: str) -> ModelBundle:
        target = tuple(meta["target"]) if meta.get("target") else None
        return cls(_preprocessor(meta), module, 0, 0, meta["label"], meta["threshold"],
                   meta["task"], meta.get("classes"), target, kind=kind)


def _framed(magic: bytes, fmt: str, meta: dict[str, Any], payload: bytes) -> bytes:
    # Never sort_keys: the meta's order is the design matrix's column order.
    head = json.dumps({"format": fmt, **meta}).encode()
    return b"".join([magic, len(head).to_bytes(8, "big"), head, payload])


def _unframed(data: bytes, magic: bytes) -> tuple[dict[str, Any], bytes]:
    start = len(magic)
    size = int.from_bytes(data[start : start + 8], "big")
    meta = json.loads(bytes(data[start + 8 : start + 8 + size]))
    return meta, bytes(data[start + 8 + size :])


def _preprocessor(meta: dict[str, Any]) -> Preprocessor:
    return Preprocessor(
        numerical={k: (float(v[0]), float(v[1])) for k, v in meta["numerical"].items()},
        categorical={k: list(v) for k, v in meta["categorical"].items()},
    )
