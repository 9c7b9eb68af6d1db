"""Errors the drift engine raises on purpose.

    DriftError                  base of everything `kernels` raises on purpose
    ├── DriftInputError         bad columns, statistics, thresholds or profile bytes (a ValueError)
    └── BackendUnavailable      an explicitly requested backend cannot run here

`kernels` is a leaf package: callers (the CLI, the monitor) translate these into their own errors
at their boundary, keeping the chain.
"""

from __future__ import annotations


class DriftError(Exception):
    """Base class for errors the drift engine raises on purpose."""


class DriftInputError(DriftError, ValueError):
    """Input columns, options or profile bytes are malformed; the message names the feature."""


class BackendUnavailable(DriftError, RuntimeError):
    """The requested array backend (e.g. CuPy) is not importable or has no device."""
