"""Prediction log rows, and Parquet files of one request each (tools and tests).

Layout under the artifact root (see the team contracts and `appliance.monitor.log_files`):

    predictions/{deployment}/pending/{first_ts_ns:020d}-{writer_id}-{seq:08d}.arrows
                                          many requests per file: a replica's journal segment
                                          (`cluster.serve._log_buffer.PredictionLogBuffer`)
    predictions/{deployment}/pending/{time_ns:020d}-{request_id}.parquet   one request per file
                                          (`PredictionLog.write`: tools and tests)
    feedback/{deployment}/{time_ns:020d}-{uuid}.parquet                    one per feedback POST

`PredictionLog.write` writes under a ``.tmp-`` name in the final folder, fsyncs, renames into
place and fsyncs the folder, so a reader listing the folder never sees a half-written file
(readers skip dot files) and a published file survives a power cut. Names sort in time order
(the first row's time first). A segment's name holds no request id, which the client may
choose, so no request can overwrite another's rows; the random per-buffer writer id keeps
apart the files of different replicas, and of one replica before and after a restart.

A canary (challenger) logs into its champion's folder under its own ``version``. Rows with
``shadow`` true were scored by a shadow challenger and never reached the client: whoever wants
what clients were served drops them; whoever compares the versions keeps them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from appliance.errors import InvalidInput
from appliance.monitor.log_files import fsync_dir, write_synced
from appliance.names import check_name
from cluster.serve._oip import file_safe

RESERVED = (
    "request_id",
    "client_id",
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
# Batches up to this many rows keep their constant columns (a few KiB per size).
_CACHED_ROWS = 64


@dataclasses.dataclass(frozen=True, eq=False)
class LoggedRequest:
    """One answered request's rows (fields as the arguments of `PredictionLog.batch`)."""

    request_id: str
    columns: Mapping[str, np.ndarray]
    predictions: np.ndarray
    scores: np.ndarray
    shadow: bool = False
    client_id: str | None = None


def prediction_schema(features: Sequence[str], categorical: Collection[str] = (),
                      extra: Sequence[str] = ()) -> pa.Schema:
    """Schema of a prediction log file for a model with `features`.

    Args:
        features: input feature names, in the model's order.
        categorical: which features are strings (default none; the rest are float64).
        extra: columns logged as text that are no feature of the model (the deployment's
            ``log_columns``; default none), after the features.
    """
    clash = sorted(set(features) & set(RESERVED))
    if clash:
        raise InvalidInput(
            f"feature name(s) {clash} clash with prediction log columns {list(RESERVED)}; "
            "rename them in the training data"
        )
    clash = sorted(set(extra) & set(RESERVED))
    if clash:
        raise InvalidInput(
            f"log column(s) {clash} clash with prediction log columns {list(RESERVED)}; "
            "choose other names in the serving option log_columns"
        )
    extra = [e for e in dict.fromkeys(extra) if e not in set(features)]
    return pa.schema(
        [
            ("request_id", pa.string()),
            # The id the client sent, if any: echoed to it, never relied on to be unique.
            ("client_id", pa.string()),
            ("row", pa.int32()),
            ("ts", _TS),
            ("model", pa.string()),
            ("version", pa.string()),
            ("deployment", pa.string()),
            # True only for a shadow challenger's rows: scored, logged, never seen by the client.
            ("shadow", pa.bool_()),
            *[(f, pa.string() if f in categorical else pa.float64()) for f in features],
            *[(e, pa.string()) for e in extra],
            ("prediction", pa.int64()),
            ("score", pa.float32()),
        ]
    )


def _parquet_bytes(table: pa.Table) -> pa.Buffer:
    sink = pa.BufferOutputStream()
    # A pending file is read whole once, by the window that compacts it (zstd, with
    # statistics): dictionaries and statistics here would only cost each request's write
    # (about 0.3 ms of the 0.6 ms that Parquet's defaults take for a one-row file).
    pq.write_table(table, sink, use_dictionary=False, write_statistics=False)
    return sink.getvalue()


def _write_atomic(table: pa.Table, folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / name
    tmp = folder / f".tmp-{uuid.uuid4().hex}.parquet"
    data = _parquet_bytes(table)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            # Durable before visible: a file the monitor can list holds all of its rows.
            write_synced(fd, data)
        finally:
            os.close(fd)
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise
    fsync_dir(folder)
    return final


def _text(name: str, requests: Sequence[LoggedRequest], sizes: list[int]) -> pa.Array:
    """A logged-only column of the requests as text; null for a request that sent none."""
    values: list = []
    for r, k in zip(requests, sizes, strict=True):
        got = r.columns.get(name)
        values += [None] * k if got is None else [None if v is None else str(v) for v in got]
    return pa.array(values, pa.string())


class PredictionLog:
    """Turns served requests into rows of one deployed model version and writes them.

    Args:
        artifacts: the artifact root (``cfg.artifacts``).
        deployment: the deployment name (a folder under ``predictions/``).
        model: the model name recorded in each row.
        version: the model version recorded in each row.
        features: feature names in the model's order.
        categorical: which features are strings (default none).
        extra: columns requests may carry that the model does not take, logged as text
            (default none); a request without one logs null.
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
        extra: Sequence[str] = (),
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        # The deployment becomes a folder name: nothing may escape predictions/.
        self.folder = (Path(artifacts) / "predictions" / check_name("deployment name", deployment)
                       / "pending")
        self.schema = prediction_schema(features, categorical, extra)
        self.clock = clock
        self._deployment = deployment
        self._model = model
        self._version = version
        self._features = list(features)
        self._feature_types = [(f, self.schema.field(f).type) for f in self._features]
        self._extra = [e for e in dict.fromkeys(extra) if e not in set(self._features)]
        self._constants: dict[tuple[int, bool | None], dict[str, pa.Array]] = {}

    def batch(
        self,
        request_id: str,
        columns: Mapping[str, np.ndarray],
        predictions: np.ndarray,
        scores: np.ndarray,
        *,
        shadow: bool = False,
        client_id: str | None = None,
        now: int | None = None,
    ) -> pa.RecordBatch:
        """The rows of one request as a record batch of `schema` (no I/O).

        Args:
            request_id: the id returned to the client.
            columns: the request's feature columns, as the model saw them.
            predictions: int64 predicted classes, one per row.
            scores: float32 scores, one per row.
            shadow: this version scored the request in the shadow of the one that answered
                (default False: this version's answer went to the client).
            client_id: the client's own id for the request (default None: it sent none).
            now: the rows' time in ns since the epoch (default the clock's time now).
        """
        return self.rows([LoggedRequest(request_id, columns, predictions, scores,
                                        shadow=shadow, client_id=client_id)], now=now)

    def rows(self, requests: Sequence[LoggedRequest], *, now: int | None = None
             ) -> pa.RecordBatch:
        """The rows of several requests as one record batch of `schema` (no I/O).

        One batch for a whole scored batch of requests: building Arrow arrays has a fixed
        cost per array that, per request, was most of what logging added to a request.

        Args:
            requests: the requests, in order (one with no rows adds none).
            now: the rows' time in ns since the epoch (default the clock's time now).
        """
        now = self.clock() if now is None else now
        sizes = [len(r.predictions) for r in requests]
        n = sum(sizes)

        def per_row(values: list) -> list:
            if len(values) == 1:
                return values * n
            return [v for v, k in zip(values, sizes, strict=True) for _ in range(k)]

        def joined(parts: list[np.ndarray], dtype) -> np.ndarray:
            if len(parts) == 1:
                return np.asarray(parts[0], dtype=dtype)
            return np.concatenate([np.asarray(p, dtype=dtype) for p in parts])

        client_ids = [r.client_id for r in requests]
        shadows = {bool(r.shadow) for r in requests}
        constant = self._constant(n, shadows.pop() if len(shadows) == 1 else None)
        # The timestamp's buffer is the int64 microseconds: no cast kernel per request.
        ts = pa.Array.from_buffers(_TS, n, [None, pa.py_buffer(
            np.full(n, now // 1000, dtype=np.int64))])
        arrays = [
            pa.array(per_row([r.request_id for r in requests]), pa.string()),
            (constant["no_client"] if not any(client_ids)
             else pa.array(per_row(client_ids), pa.string())),
            (constant["row"] if len(requests) == 1
             else pa.array(np.concatenate([np.arange(k, dtype=np.int32) for k in sizes]))),
            ts,
            constant["model"],
            constant["version"],
            constant["deployment"],
            (constant["shadow"] if "shadow" in constant
             else pa.array(per_row([bool(r.shadow) for r in requests]), pa.bool_())),
            *[pa.array(joined([r.columns[f] for r in requests], None), type=kind)
              for f, kind in self._feature_types],
            *[_text(e, requests, sizes) for e in self._extra],
            pa.array(joined([r.predictions for r in requests], np.int64)),
            pa.array(joined([r.scores for r in requests], np.float32)),
        ]
        return pa.RecordBatch.from_arrays(arrays, schema=self.schema)

    def _constant(self, n: int, shadow: bool | None) -> dict[str, pa.Array]:
        """The columns that hold one value for every row of an `n`-row batch, built once per
        size (and kept for small sizes, the common case of one request a batch)."""
        key = (n, shadow)
        got = self._constants.get(key)
        if got is None:
            got = {
                "model": pa.array([self._model] * n, pa.string()),
                "version": pa.array([self._version] * n, pa.string()),
                "deployment": pa.array([self._deployment] * n, pa.string()),
                "no_client": pa.nulls(n, pa.string()),
                "row": pa.array(np.arange(n, dtype=np.int32)),
            }
            if shadow is not None:
                got["shadow"] = pa.array([shadow] * n, pa.bool_())
            if n <= _CACHED_ROWS:
                self._constants[key] = got
        return got

    def write(
        self,
        request_id: str,
        columns: Mapping[str, np.ndarray],
        predictions: np.ndarray,
        scores: np.ndarray,
        *,
        shadow: bool = False,
        client_id: str | None = None,
    ) -> Path:
        """Write the rows of one request as a file of its own, durably; return its path.

        A replica logs through `PredictionLogBuffer` instead (one file for many requests).
        Arguments as for `batch`.
        """
        now = self.clock()
        rows = self.batch(request_id, columns, predictions, scores, shadow=shadow,
                          client_id=client_id, now=now)
        return _write_atomic(pa.Table.from_batches([rows]), self.folder,
                             f"{now:020d}-{file_safe(request_id)}.parquet")
