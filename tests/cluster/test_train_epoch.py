"""The torch pieces every torch kind shares (`cluster.train_epoch`)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cluster.train_epoch import TaskLoss, run_epoch, shard_rows


@pytest.mark.parametrize(("n", "world"), [(10, 1), (10, 3), (7, 4), (3, 3), (2, 4)])
def test_shards_cover_every_row_with_equal_sizes(n, world):
    shards = [shard_rows(n, rank, world) for rank in range(world)]
    assert {len(s) for s in shards} == {-(-n // world)}
    assert set(np.concatenate(shards).tolist()) == set(range(n))


def test_the_multiclass_loss_ignores_a_class_the_training_rows_never_held():
    raw = torch.tensor([[2.0, 0.0], [0.0, 2.0], [5.0, -5.0]])
    loss = TaskLoss("multiclass")
    assert loss(raw, torch.tensor([0, 1, -1])) == pytest.approx(
        float(loss(raw[:2], torch.tensor([0, 1]))))


def test_one_epoch_returns_the_mean_loss_and_learns():
    torch.manual_seed(0)
    x = torch.randn(64, 3)
    y = (x[:, 0] > 0).float()
    model = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    loss_fn, order = TaskLoss("binary"), torch.arange(64)
    first = run_epoch(model, opt, loss_fn, x, y, order, batch=16)
    for _ in range(5):
        last = run_epoch(model, opt, loss_fn, x, y, order, batch=16)
    assert 0 < last < first
