"""What a replica scores with (`cluster.scoring`): the torch scorer on the CPU gives the bundle's
own answers, and the environment report names each required package's installed version."""

from __future__ import annotations

from importlib import metadata

import numpy as np
from serve_helpers import columns, make_bundle

from cluster.scoring import BundleScorer, TorchScorer, installed


def test_both_scorers_give_the_bundles_own_outputs_on_the_cpu():
    import torch

    bundle = make_bundle()
    cols = columns(64, seed=3)
    expected = bundle.score(cols)
    threads = torch.get_num_threads()
    try:
        for scorer in (TorchScorer(bundle, num_gpus=0), BundleScorer(bundle)):
            assert scorer.device == "cpu" and scorer.inline_rows == 256
            got = scorer.predict(cols)
            np.testing.assert_array_equal(got.predictions, expected.predictions)
            np.testing.assert_allclose(got.scores, expected.scores, rtol=1e-6)
        # A replica's scorer keeps to one thread: a replica has a fraction of a CPU.
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)  # the rest of this process is no replica


def test_installed_reads_each_requirements_name_and_version():
    assert installed(["numpy>=1.20", " pyarrow[pandas] ; python_version>'3'",
                      "no-such-package-here==1.0"]) == {
        "numpy": metadata.version("numpy"),
        "pyarrow": metadata.version("pyarrow"),
        "no-such-package-here": None,
    }
