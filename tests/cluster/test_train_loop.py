"""The MLP's worker loop and its checkpoint (`cluster.train_loop`).

`load_module` is tested on checkpoints written here with the parts of the loop's format it
reads; one real early-stopped fit on the shared Ray then checks what the loop itself writes: the
best epoch's weights kept beside the last, and the stop recorded. Elsewhere: every epoch's report
and a diverging loss (test_progress.py), a finished run resumed (test_train.py), a restart
mid-run resuming its checkpoint (tests/pipelines/test_training.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from ray.train import Checkpoint

from appliance.data.synthetic import CATEGORICAL, LABEL, generate
from cluster.bundle import build_mlp
from cluster.train import fit
from cluster.train_loop import CHECKPOINT_FILE, load_module
from cluster.train_params import resolve_params

PARAMS = resolve_params({"hidden": 4, "layers": 1})


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _write(folder: Path, *, last: torch.nn.Module, epoch: int, best: dict) -> Checkpoint:
    # What load_module reads of the loop's format: the last epoch's weights, its number and
    # the best epoch (the optimiser's state is for a resumed worker only).
    folder.mkdir()
    torch.save({"model": _state(last), "epoch": epoch, "best": best, "stopped": False},
               folder / CHECKPOINT_FILE)
    return Checkpoint.from_directory(str(folder))


def _nets(seed_last: int, seed_best: int) -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(seed_last)
    last = build_mlp(3, 4, 1, 2)
    torch.manual_seed(seed_best)
    return last, build_mlp(3, 4, 1, 2)


def test_without_early_stopping_the_last_epochs_network_is_loaded(tmp_path):
    last, _ = _nets(1, 2)
    # What the loop keeps when nothing is watched: no best state.
    ckpt = _write(tmp_path / "c", last=last, epoch=6,
                  best={"loss": float("inf"), "state": None, "stale": 0})
    module, epochs = load_module(ckpt, 3, PARAMS, 2)
    assert epochs == 7
    assert not module.training
    x = torch.randn(5, 3)
    with torch.no_grad():
        np.testing.assert_array_equal(module(x).numpy(), last.eval()(x).numpy())
    assert all(p.device.type == "cpu" for p in module.parameters())


def test_under_early_stopping_the_best_epochs_network_is_loaded(tmp_path):
    last, best = _nets(1, 2)
    ckpt = _write(tmp_path / "c", last=last, epoch=9,
                  best={"loss": 0.3, "state": _state(best), "stale": 2, "epoch": 7})
    module, epochs = load_module(ckpt, 3, PARAMS, 2)
    assert epochs == 10  # epochs trained, not the best one's number
    for name, tensor in module.state_dict().items():
        assert torch.equal(tensor, best.state_dict()[name])
        assert not torch.equal(tensor, last.state_dict()[name])


def test_the_network_is_rebuilt_from_width_params_and_outputs(tmp_path):
    torch.manual_seed(0)
    params = resolve_params({"hidden": 5, "layers": 2})
    net = build_mlp(4, 5, 2, 3)
    ckpt = _write(tmp_path / "c", last=net, epoch=0, best={"state": None})
    module, _ = load_module(ckpt, 4, params, 3)
    linear = [m for m in module if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linear] == [(4, 5), (5, 5), (5, 3)]
    # A checkpoint of another shape is not loaded into a network it does not fit.
    with pytest.raises(RuntimeError, match="size mismatch"):
        load_module(ckpt, 4, params, 2)


# --- what the loop writes: one real early-stopped fit -----------------------------------------

ES_PARAMS = {"epochs": 30, "hidden": 8, "early_stopping": 2, "valid_fraction": 0.25, "lr": 0.5}


def _checkpoints(run_path: str) -> list[dict]:
    """What the loop saved in each checkpoint Ray Train kept (the run folder holds a JSON
    snapshot named checkpoint_* too)."""
    return [torch.load(p / CHECKPOINT_FILE, weights_only=True)
            for p in Path(run_path).glob("checkpoint_*") if p.is_dir()]


def test_an_early_stopped_run_keeps_the_best_epoch_and_records_the_stop(ray_session, tmp_path):
    # One Ray Train run (its start-up is most of this test's time); the stopped branch of a
    # resumed run would take a second one.
    out = fit(generate(400, seed=5), label=LABEL, categorical=CATEGORICAL, params=ES_PARAMS,
              seed=7, storage_path=str(tmp_path), name="es")
    assert out.epochs < ES_PARAMS["epochs"]
    # The loop trained on the rows the validation slice left (and fit had no holdout to score).
    assert (out.train_rows, out.valid_rows) == (300, 100)
    assert out.metrics == {} and out.params["early_stopping"] == 2
    final = max(_checkpoints(out.run_path), key=lambda s: s["epoch"])
    assert set(final) == {"model", "optimizer", "epoch", "best", "stopped"}
    assert final["stopped"] is True
    assert final["epoch"] + 1 == out.epochs
    best = final["best"]
    # Stopped after `early_stopping` epochs without a better validation loss.
    assert best["stale"] == 2 and best["epoch"] == final["epoch"] - 2
    assert 0 < best["loss"] < 1
    # The bundle holds the best epoch's weights, not the last epoch's.
    weights = out.bundle.module.state_dict()
    for name, tensor in best["state"].items():
        assert torch.equal(weights[name], tensor)
    assert any(not torch.equal(weights[n], t) for n, t in final["model"].items())

