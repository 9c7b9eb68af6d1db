"""The seeded train/holdout split shared by training and the promotion gate."""

from __future__ import annotations

import numpy as np
import pyarrow as pa


def holdout_split(
    table: pa.Table, seed: int, fraction: float, order: str = "random"
) -> tuple[pa.Table, pa.Table]:
    """(train, holdout), rebuilt identically later by the gate.

    Args:
        table: the rows.
        seed: seeds the permutation of a random split.
        fraction: the holdout's share of the rows.
        order: "random" (a seeded permutation) or "latest" (the last rows in `table`'s order,
            for time-ordered data such as a retraining set: the model is judged on the newest
            rows, the ones most like what it will serve).
    """
    n = table.num_rows
    if order == "latest":
        k = max(1, int(round(n * fraction)))
        return table.slice(0, n - k), table.slice(n - k)
    order = np.random.default_rng([seed, 0x5EED]).permutation(n)
    k = max(1, int(round(n * fraction)))
    return table.take(np.sort(order[k:])), table.take(np.sort(order[:k]))
