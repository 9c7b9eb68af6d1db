"""A trained model and its preprocessing, as one artifact.

Serving loads the same bytes that training wrote, so the transform applied to a request is
exactly the one fitted on the training data (no training/serving skew).
"""

from __future__ import annotations

import dataclasses
import functools
import io
import json
from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from appliance.errors import InvalidInput

FORMAT = "appliance.bundle/1"


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

    @functools.cached_property
    def _scales(self) -> tuple[np.ndarray, np.ndarray]:
        """The numerical features' means and stds as arrays, in `numerical`'s order."""
        pairs = np.array(list(self.numerical.values()), dtype=np.float64).reshape(-1, 2)
        return pairs[:, 0].copy(), pairs[:, 1].copy()

    @functools.cached_property
    def _codes(self) -> dict[str, dict[str, int]]:
        """Each categorical feature's category -> column offset."""
        return {name: {c: i for i, c in enumerate(cats)} for name, cats in self.categorical.items()}

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
        names = list(self.numerical)
        if names:
            try:
                block = np.column_stack(
                    [np.asarray(columns[name], dtype=np.float64) for name in names])
            except (TypeError, ValueError):
                for name in names:  # which one: the message names it
                    try:
                        np.asarray(columns[name], dtype=np.float64)
                    except (TypeError, ValueError) as exc:
                        raise InvalidInput(f"feature {name!r} must be numeric: {exc}") from exc
                raise
            means, stds = self._scales
            # One array operation for all numerical features (the same values, element by
            # element, as one per feature; a request of one row pays per call, not per value).
            # A missing value imputes to the training mean, i.e. 0 after standardising.
            out[:, :len(names)] = np.nan_to_num((block - means) / stds, nan=0.0, posinf=0.0,
                                                neginf=0.0)
        col = len(names)
        for name, cats in self.categorical.items():
            index = self._codes[name]
            codes = np.fromiter((index.get(str(v), -1) for v in columns[name]), np.int64, n)
            rows = np.nonzero(codes >= 0)[0]
            out[rows, col + codes[rows]] = 1.0
            col += len(cats)
        return out


def build_mlp(width: int, hidden: int = 32, layers: int = 2) -> nn.Sequential:
    """The tabular classifier: `layers` ReLU layers of `hidden` units and one logit out."""
    mods: list[nn.Module] = []
    last = width
    for _ in range(layers):
        mods += [nn.Linear(last, hidden), nn.ReLU()]
        last = hidden
    mods.append(nn.Linear(last, 1))
    return nn.Sequential(*mods)


@dataclasses.dataclass
class ModelBundle:
    """A binary classifier with its preprocessing.

    Args:
        preprocessor: the fitted input transform.
        module: the torch model mapping the design matrix to one logit per row.
        hidden: hidden units per layer (needed to rebuild `module` on load).
        layers: hidden layers (needed to rebuild `module` on load).
        label: name of the target column.
        threshold: score at or above which the predicted class is 1 (default 0.5).
    """

    preprocessor: Preprocessor
    module: nn.Module
    hidden: int
    layers: int
    label: str
    threshold: float = 0.5

    @property
    def feature_names(self) -> list[str]:
        return self.preprocessor.feature_names

    @property
    def categorical(self) -> list[str]:
        return list(self.preprocessor.categorical)

    def predict_proba(self, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        """Probability of class 1 for each row, as float32 of shape (n,)."""
        x = torch.from_numpy(self.preprocessor.transform(columns))
        self.module.eval()
        with torch.no_grad():
            return torch.sigmoid(self.module(x)).squeeze(-1).numpy().astype(np.float32)

    def predict(self, columns: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Return (predicted classes as int64, scores as float32)."""
        scores = self.predict_proba(columns)
        return (scores >= self.threshold).astype(np.int64), scores

    def to_bytes(self) -> bytes:
        meta = {
            "format": FORMAT,
            "numerical": {k: list(v) for k, v in self.preprocessor.numerical.items()},
            "categorical": self.preprocessor.categorical,
            "hidden": self.hidden,
            "layers": self.layers,
            "label": self.label,
            "threshold": self.threshold,
        }
        buf = io.BytesIO()
        # Never sort_keys: the order of "numerical" and "categorical" is the column order of the
        # design matrix the weights were trained on.
        blob = {"meta": json.dumps(meta), "state": self.module.state_dict()}
        torch.save(blob, buf)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> ModelBundle:
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
        pre = Preprocessor(
            numerical={k: (float(v[0]), float(v[1])) for k, v in meta["numerical"].items()},
            categorical={k: list(v) for k, v in meta["categorical"].items()},
        )
        module = build_mlp(pre.width, meta["hidden"], meta["layers"])
        module.load_state_dict(blob["state"])
        return cls(pre, module, meta["hidden"], meta["layers"], meta["label"], meta["threshold"])
