"""What a model replica scores with: the bundle's network in torch (on a GPU when it has
one), and what its Python environment holds.

Outside `cluster.serve` on purpose: importing it imports neither Ray nor the store, so the GPU
check (`bench/gpu_check.py`, on a machine without Ray) scores with the very class a replica uses.
"""

from __future__ import annotations

import re
from importlib import metadata

import numpy as np

from cluster.bundle import ModelBundle, Outputs


class TorchScorer:
    """Scores a design matrix with the bundle's network, on a GPU when the replica has one.

    `inline_rows`: batches up to this many rows are cheaper to score on the replica's event
    loop than to hand to a worker thread (a small network on the CPU scores a row in tens of
    microseconds; a thread hop costs more on a loaded host). 0 on a GPU, whose calls may wait
    on the device.
    """

    # A few hundred rows of a small MLP stay well under a millisecond of loop time.
    INLINE_ROWS = 256

    def __init__(self, bundle: ModelBundle, num_gpus: float) -> None:
        import torch

        # A replica gets a fraction of a CPU; more threads than that only contend.
        torch.set_num_threads(1)
        self._torch = torch
        self.bundle = bundle
        self.device = "cuda" if num_gpus and torch.cuda.is_available() else "cpu"
        self.inline_rows = self.INLINE_ROWS if self.device == "cpu" else 0
        bundle.module.to(self.device).eval()

    def predict(self, columns: dict[str, np.ndarray]) -> Outputs:
        """The bundle's `Outputs` for `columns`: the network runs here (on the replica's
        device), the task's decision is the bundle's, as at training time."""
        torch = self._torch
        x = torch.from_numpy(self.bundle.preprocessor.transform(columns)).to(self.device)
        with torch.no_grad():
            raw = self.bundle.module(x).float().cpu().numpy()
        return self.bundle.outputs(raw)


class BundleScorer:
    """Scores with the bundle itself, on the CPU: gradient-boosted trees (XGBoost predicts
    with its own threads, not torch's)."""

    INLINE_ROWS = 256

    def __init__(self, bundle: ModelBundle) -> None:
        self.bundle = bundle
        self.device = "cpu"
        self.inline_rows = self.INLINE_ROWS

    def predict(self, columns: dict[str, np.ndarray]) -> Outputs:
        """The bundle's `Outputs` for `columns`."""
        return self.bundle.score(columns)


def installed(requirements: list[str]) -> dict[str, str | None]:
    """Each required package's installed version here (None when it is not installed)."""
    out: dict[str, str | None] = {}
    for requirement in requirements:
        name = re.split(r"[\s<>=!~;\[@]", requirement.strip(), maxsplit=1)[0]
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out
