"""Errors the appliance raises, and the exit code each maps to.

    ApplianceError                  base of everything raised on purpose
    ├── InvalidInput                bad usage or input: a file, a spec, a value    -> exit 2
    │   └── NotFound                a named thing (model, version, user) is absent -> exit 2
    ├── PermissionDenied            the actor's role or identity forbids the action -> exit 2
    ├── CheckFailed                 a check ran and said no (gate, audit verify)    -> exit 1
    │   ├── GateFailed              a candidate failed the promotion gate            -> exit 1
    │   ├── ArtifactIntegrityError  an artifact's bytes no longer match its digest   -> exit 1
    │   └── TuningFailed            a sweep failed or no trial reported its metric  -> exit 1
    ├── RunFailed                   a training run started and failed on Ray        -> exit 1
    └── ConflictError               the action clashes with current state           -> exit 2

The CLI maps these in one place (`exit_code_for`); HTTP maps them to 4xx.
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """Process exit codes of the `appliance` CLI."""

    OK = 0
    CHECK_FAILED = 1  # a check ran and failed: gate, audit verify, doctor; or a run failed
    USAGE = 2  # bad usage or input: the message names what was wrong
    INTERNAL = 3  # a bug: anything not raised on purpose
    INTERRUPTED = 130  # Ctrl-C: 128 + SIGINT, as shells report it


class ApplianceError(Exception):
    """Base class for errors the appliance raises on purpose."""

    exit_code = ExitCode.USAGE


class InvalidInput(ApplianceError):
    """Input (a file, a spec, an argument) is malformed or out of range."""


class NotFound(InvalidInput):
    """A named object does not exist."""


class PermissionDenied(ApplianceError):
    """The acting user may not do this."""


class ConflictError(ApplianceError):
    """The request conflicts with the current state."""


class CheckFailed(ApplianceError):
    """A check ran to completion and its answer was no."""

    exit_code = ExitCode.CHECK_FAILED


class GateFailed(CheckFailed):
    """A candidate failed the promotion gate; `verdict` holds every check's result."""

    def __init__(self, message: str, verdict: object) -> None:
        super().__init__(message)
        self.verdict = verdict


class ArtifactIntegrityError(CheckFailed):
    """An artifact's bytes no longer hash to the digest it was recorded under."""

    def __init__(self, what: str, expected: str, actual: str, path: object = None,
                 model: str | None = None) -> None:
        self.what, self.expected, self.actual = what, expected, actual
        self.path, self.model = path, model
        where = f" at {str(path)!r}" if path is not None else ""
        super().__init__(
            f"{what}{where} is corrupt or was altered: recorded sha256 {expected}, its bytes "
            f"hash to {actual}; refusing to load it (restore it from a backup or re-create it)"
        )


class TuningFailed(CheckFailed):
    """A hyperparameter sweep failed, or ended without a trial that reported its metric."""


class RunFailed(ApplianceError):
    """A training run started and failed (its code raised, or it ran out of retries)."""

    exit_code = ExitCode.CHECK_FAILED


def exit_code_for(exc: BaseException) -> ExitCode:
    """Return the CLI exit code for `exc`; unknown exceptions are internal errors."""
    if isinstance(exc, ApplianceError):
        return exc.exit_code
    if isinstance(exc, KeyboardInterrupt):
        return ExitCode.INTERRUPTED
    return ExitCode.INTERNAL
