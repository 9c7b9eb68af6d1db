"""On-prem, GPU-accelerated MLOps appliance: the control plane.

Importing this package starts nothing and imports neither Ray nor Textual.
"""

from appliance.config import Config, load_config
from appliance.errors import (
    ApplianceError,
    CheckFailed,
    ConflictError,
    ExitCode,
    InvalidInput,
    NotFound,
    PermissionDenied,
    RunFailed,
    exit_code_for,
)


def __getattr__(name: str) -> str:
    # __version__ on first use: importlib.metadata costs tens of milliseconds at start-up,
    # which `appliance --help` should not pay.
    if name != "__version__":
        raise AttributeError(f"module 'appliance' has no attribute {name!r}")
    from importlib import metadata

    try:
        version = metadata.version("appliance")
    except metadata.PackageNotFoundError:  # a source tree that was never installed
        version = "0.0.0"
    globals()["__version__"] = version
    return version

__all__ = [
    "ApplianceError",
    "CheckFailed",
    "Config",
    "ConflictError",
    "ExitCode",
    "InvalidInput",
    "NotFound",
    "PermissionDenied",
    "RunFailed",
    "__version__",
    "exit_code_for",
    "load_config",
]
