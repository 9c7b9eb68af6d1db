"""Parquet files of served predictions and of feedback labels (the monitor's input).

Layout under the artifact root (see the team contracts):

    predictions/{deployment}/pending/{time_ns:020d}-{request_id}.parquet   one per served request
    feedback/{deployment}/{time_ns:020d}-{uuid}.parquet                    one per feedback POST

Each file is written under a ``.tmp-`` name in its final folder and renamed into place, so a
reader listing ``*.parquet`` never sees a half-written file (readers skip ``.tmp-*``).

A canary (challenger) logs into its champion's folder under its own ``version``. Rows with
``shadow`` true were scored by a shadow challenger and never reached the client: whoever wants
what clients were served drops them; whoever compares the versions keeps them.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from appliance.errors import InvalidInput
from cluster.serve._oip import file_safe

RESERVED = (
    "request_id",
    "row",
    "ts",
    "model",
    "version",
    "deployment",
    "shadow",
    "prediction",
    "score",
)
_TS = pa.timestamp("us", tz="UTC")


def prediction_schema(features: Sequence[str], categorical: Collection[str] = ()) -> pa.Schema:
    """Schema of a prediction log file for a model with `features`.

    Args:
        features: input feature names, in the model's order.
        categorical: which features are strings (default none; the rest are float64).
    """
    clash = sorted(set(features) & set(RESERVED))
    if clash:
        raise InvalidInput(
            f"feature name(s) {clash} clash with prediction log columns {list(RESERVED)}; "
            "rename them in the training data"
        )
    return pa.schema(
        [
            ("request_id", pa.string()),
            ("row", pa.int32()),
            ("ts", _TS),
            ("model", pa.string()),
            ("version", pa.string()),
            ("deployment", pa.string()),
            # True only for a shadow challenger's rows: scored, logged, never seen by the client.
            ("shadow", pa.bool_()),
            *[(f, pa.string() if f in categorical else pa.float64()) for f in features],
            ("prediction", pa.int64()),
            ("score", pa.float32()),
        ]
    )


def _write_atomic(table: pa.Table, folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / name
    tmp = folder / f".tmp-{uuid.uuid4().hex}.parquet"
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return final


class PredictionLog:
    """Writes one Parquet file per served request for one deployed model version.

    Args:
        artifacts: the artifact root (``cfg.artifacts``).
        deployment: the deployment name (a folder under ``predictions/``).
        model: the model name recorded in each row.
        version: the model version recorded in each row.
        features: feature names in the model's order.
        categorical: which features are strings (default none).
        clock: returns the current time in ns since the epoch (default ``time.time_ns``).
    """

    def __init__(
        self,
        artifacts: Path,
        *,
        deployment: str,
        model: str,
        version: str,
        features: Sequence[str],
        categorical: Collection[str] = (),
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.folder = Path(artifacts) / "predictions" / deployment / "pending"
        self.schema = prediction_schema(features, categorical)
        self._deployment = deployment
        self._model = model
        self._version = version
        self._features = list(features)
        self._clock = clock

    def write(
        self,
        request_id: str,
        columns: Mapping[str, np.ndarray],
        predictions: np.ndarray,
        scores: np.ndarray,
        *,
        shadow: bool = False,
    ) -> Path:
        """Write the rows of one request and return the file's path.

        Args:
            request_id: the id returned to the client.
            columns: the request's feature columns, as the model saw them.
            predictions: int64 predicted classes, one per row.
            scores: float32 scores, one per row.
            shadow: this version scored the request in the shadow of the one that answered
                (default False: this version's answer went to the client).
        """
        now = self._clock()
        n = len(predictions)
        ts = pa.array(np.full(n, now // 1000, dtype=np.int64), type=pa.int64()).cast(_TS)
        arrays = [
            pa.array([request_id] * n, pa.string()),
            pa.array(np.arange(n, dtype=np.int32)),
            ts,
            pa.array([self._model] * n, pa.string()),
            pa.array([self._version] * n, pa.string()),
            pa.array([self._deployment] * n, pa.string()),
            pa.array([bool(shadow)] * n, pa.bool_()),
            *[pa.array(columns[f], type=self.schema.field(f).type) for f in self._features],
            pa.array(np.asarray(predictions, dtype=np.int64)),
            pa.array(np.asarray(scores, dtype=np.float32)),
        ]
        table = pa.Table.from_arrays(arrays, schema=self.schema)
        return _write_atomic(table, self.folder, f"{now:020d}-{file_safe(request_id)}.parquet")
