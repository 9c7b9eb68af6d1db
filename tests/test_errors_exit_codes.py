"""The error tree (`appliance.errors`) and the one place it maps to exit codes. Named
`_exit_codes` because tests/kernels/test_errors.py holds the kernels' own errors."""

from __future__ import annotations

import pytest

from appliance.errors import (
    ApplianceError,
    ArtifactIntegrityError,
    CheckFailed,
    ConflictError,
    ExitCode,
    GateFailed,
    InvalidInput,
    NotFound,
    PermissionDenied,
    RunFailed,
    TuningFailed,
    exit_code_for,
)

CASES = [
    (InvalidInput("bad"), ExitCode.USAGE),
    (NotFound("no model"), ExitCode.USAGE),
    (PermissionDenied("viewer"), ExitCode.USAGE),
    (ConflictError("pending"), ExitCode.USAGE),
    (CheckFailed("verify"), ExitCode.CHECK_FAILED),
    (GateFailed("gate", verdict={"passed": False}), ExitCode.CHECK_FAILED),
    (ArtifactIntegrityError("bundle", "a" * 64, "b" * 64), ExitCode.CHECK_FAILED),
    (TuningFailed("no trial"), ExitCode.CHECK_FAILED),
    (RunFailed("worker died"), ExitCode.CHECK_FAILED),
    (ValueError("a bug"), ExitCode.INTERNAL),
    (KeyboardInterrupt(), ExitCode.INTERRUPTED),
]


@pytest.mark.parametrize(("exc", "code"), CASES, ids=[type(e).__name__ for e, _ in CASES])
def test_each_error_maps_to_its_exit_code(exc, code):
    assert exit_code_for(exc) is code


def test_the_codes_are_the_documented_numbers():
    assert [int(c) for c in ExitCode] == [0, 1, 2, 3, 130]


def test_every_error_is_an_appliance_error_and_not_found_is_bad_input():
    for exc, _ in CASES[:9]:
        assert isinstance(exc, ApplianceError)
    assert issubclass(NotFound, InvalidInput)
    assert issubclass(GateFailed, CheckFailed) and issubclass(TuningFailed, CheckFailed)


def test_an_integrity_error_names_both_digests_and_the_path():
    exc = ArtifactIntegrityError("dataset loans:2", "a" * 64, "b" * 64, path="/srv/x", model="m")
    assert (exc.expected, exc.actual, exc.model) == ("a" * 64, "b" * 64, "m")
    message = str(exc)
    assert "dataset loans:2 at '/srv/x'" in message
    assert f"recorded sha256 {'a' * 64}" in message and f"hash to {'b' * 64}" in message
    assert " at " not in str(ArtifactIntegrityError("bundle", "a", "b"))


def test_a_gate_failure_carries_its_verdict():
    verdict = object()
    assert GateFailed("failed the promotion gate", verdict).verdict is verdict
