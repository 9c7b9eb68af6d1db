"""The train/holdout split (`appliance.pipelines.split`): the gate rebuilds the same holdout
from the seed, the parts are disjoint and complete, and "latest" holds out the newest rows."""

from __future__ import annotations

import pyarrow as pa
import pytest

from appliance.pipelines.split import holdout_split

TABLE = pa.table({"i": list(range(100))})


def test_the_same_seed_gives_the_same_split_and_another_seed_another():
    train, holdout = holdout_split(TABLE, seed=7, fraction=0.2)
    again = holdout_split(TABLE, seed=7, fraction=0.2)
    assert train.equals(again[0]) and holdout.equals(again[1])
    other = holdout_split(TABLE, seed=8, fraction=0.2)[1]
    assert other["i"].to_pylist() != holdout["i"].to_pylist()


def test_the_parts_are_disjoint_complete_and_keep_the_tables_order():
    train, holdout = holdout_split(TABLE, seed=1, fraction=0.25)
    a, b = train["i"].to_pylist(), holdout["i"].to_pylist()
    assert (len(a), len(b)) == (75, 25)
    assert sorted(a + b) == list(range(100)) and not set(a) & set(b)
    assert a == sorted(a) and b == sorted(b)


def test_latest_holds_out_the_last_rows():
    train, holdout = holdout_split(TABLE, seed=1, fraction=0.1, order="latest")
    assert holdout["i"].to_pylist() == list(range(90, 100))
    assert train["i"].to_pylist() == list(range(90))


@pytest.mark.parametrize("order", ["random", "latest"])
def test_a_tiny_fraction_still_holds_out_one_row(order):
    assert holdout_split(pa.table({"i": [1, 2, 3]}), 0, 0.01, order=order)[1].num_rows == 1
