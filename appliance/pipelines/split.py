"""The seeded train/holdout split shared by training and the promotion gate."""

from __future__ import annotations

import numpy as np
import pyarrow as pa


def holdout_split(table: pa.Table, seed: int, fraction: float) -> tuple[pa.Table, pa.Table]:
    """(train, holdout): a seeded permutation, so the gate can rebuild the same holdout later."""
    n = table.num_rows
    order = np.random.default_rng([seed, 0x5EED]).permutation(n)
    k = max(1, int(round(n * fraction)))
    return table.take(np.sort(order[k:])), table.take(np.sort(order[:k]))
