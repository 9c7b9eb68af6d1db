"""The public surface of `kernels`: sorted exports, and import hygiene (a leaf package)."""

from __future__ import annotations

import subprocess
import sys

import kernels


def test_all_is_sorted_and_resolvable():
    assert kernels.__all__ == sorted(kernels.__all__)
    for name in kernels.__all__:
        assert getattr(kernels, name) is not None


def test_public_names_are_exported():
    public = {n for n in vars(kernels) if not n.startswith("_")}
    modules = {n for n, v in vars(kernels).items() if type(v).__name__ == "module"}
    assert public - modules == set(kernels.__all__)


def test_import_is_light_and_a_leaf():
    code = (
        "import sys, kernels; "
        "bad = [m for m in ('appliance', 'cluster', 'ray', 'textual', 'cupy', 'scipy', 'pyarrow') "
        "if m in sys.modules]; print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_error_hierarchy():
    assert issubclass(kernels.DriftInputError, kernels.DriftError)
    assert issubclass(kernels.DriftInputError, ValueError)
    assert issubclass(kernels.BackendUnavailable, kernels.DriftError)
