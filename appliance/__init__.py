"""On-prem, GPU-accelerated MLOps appliance: the control plane.

Importing this package starts nothing and imports neither Ray nor Textual.
"""

from importlib import metadata as _metadata

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

try:
    __version__ = _metadata.version("appliance")
except _metadata.PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

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
