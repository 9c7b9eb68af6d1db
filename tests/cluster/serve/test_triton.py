"""The Triton backend against a real Triton Inference Server (pytriton's, on CPU), no Ray.

Needs ``.venv-triton`` (``make triton``; ``make test`` creates it first). One server is shared by
the module; the lifecycle tests start servers of their own.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from serve_helpers import columns, make_bundle

from appliance.errors import CheckFailed, InvalidInput
from cluster.export import export_bundle
from cluster.serve._triton import PYTHON_ENV, TritonBackend, TritonFailed, triton_python

pytestmark = pytest.mark.slow

NAME = "credit"


def _live(pid: int) -> bool:
    """Whether `pid` is a process that has not exited (a zombie has)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def _group(pgid: int) -> list[int]:
    """Live processes in process group `pgid`."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def _wait_gone(pgid: int, timeout_s: float) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while (left := _group(pgid)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


@pytest.fixture(scope="module")
def bundle():
    return make_bundle()


@pytest.fixture(scope="module")
def exported(bundle, tmp_path_factory):
    path = tmp_path_factory.mktemp("triton") / "bundle"
    path.write_bytes(bundle.to_bytes())
    return export_bundle(path)


@pytest.fixture(scope="module")
def backend(bundle, exported):
    with TritonBackend(bundle, exported, name=NAME) as b:
        yield b


def _odd_columns(n: int, seed: int) -> dict[str, np.ndarray]:
    """Rows with what a caller really sends: unseen categories, NaN, extreme numbers."""
    cols = columns(n, seed)
    rng = np.random.default_rng(seed + 1)
    cols["region"][rng.random(n) < 0.2] = "atlantis"
    cols["income"][rng.random(n) < 0.1] = np.nan
    cols["age"][rng.random(n) < 0.05] = 1e6
    return cols


@pytest.mark.parametrize("n,seed", [(1, 1), (7, 2), (1000, 3)])
def test_predict_equals_the_bundle(backend, bundle, n, seed):
    for cols in (columns(n, seed), _odd_columns(n, seed)):
        predictions, scores = backend.predict(cols)
        want_predictions, want_scores = bundle.predict(cols)
        assert scores.dtype == np.float32 and scores.shape == (n,)
        assert predictions.dtype == np.int64
        np.testing.assert_allclose(scores, want_scores, rtol=0, atol=1e-6)
        np.testing.assert_array_equal(predictions, want_predictions)


def test_the_threshold_is_the_bundles(bundle, exported, backend):
    cols = columns(200, seed=4)
    scores = backend.predict_proba(cols)
    threshold = float(np.median(scores))
    bundle.threshold, saved = threshold, bundle.threshold
    try:
        predictions, _ = backend.predict(cols)
    finally:
        bundle.threshold = saved
    np.testing.assert_array_equal(predictions, (scores >= threshold).astype(np.int64))


def test_no_rows(backend):
    predictions, scores = backend.predict({k: v[:0] for k, v in columns(3, 5).items()})
    assert predictions.shape == scores.shape == (0,)
    assert (predictions.dtype, scores.dtype) == (np.int64, np.float32)


def test_bad_columns_are_the_callers_error(backend):
    with pytest.raises(InvalidInput, match="missing feature"):
        backend.predict({"income": np.ones(2)})


def test_predict_from_many_threads(backend, bundle):
    # The replica scores in worker threads; tritonclient.http's connections are per thread.
    batches = [columns(50, seed) for seed in range(16)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(backend.predict, batches))
    for cols, (predictions, scores) in zip(batches, results, strict=True):
        want_predictions, want_scores = bundle.predict(cols)
        np.testing.assert_allclose(scores, want_scores, rtol=0, atol=1e-6)
        np.testing.assert_array_equal(predictions, want_predictions)


def test_tritonclient_http_reaches_triton_directly(backend, bundle):
    client = httpclient.InferenceServerClient(backend.http_url)
    try:
        assert client.is_server_live() and client.is_server_ready()
        meta = client.get_model_metadata(NAME)
        assert [(t["name"], t["datatype"], t["shape"]) for t in meta["inputs"]] == [
            ("features", "FP32", [-1, bundle.preprocessor.width])
        ]
        assert [(t["name"], t["datatype"], t["shape"]) for t in meta["outputs"]] == [
            ("scores", "FP32", [-1])
        ]
        cols = columns(20, seed=6)
        x = bundle.preprocessor.transform(cols)
        inp = httpclient.InferInput("features", list(x.shape), "FP32")
        inp.set_data_from_numpy(x, binary_data=False)
        result = client.infer(NAME, [inp])
        np.testing.assert_allclose(
            result.as_numpy("scores"), bundle.predict_proba(cols), rtol=0, atol=1e-6
        )
    finally:
        client.close()


def test_tritonclient_grpc_reaches_triton_directly(backend, bundle):
    client = grpcclient.InferenceServerClient(backend.grpc_url)
    try:
        assert client.is_model_ready(NAME)
        cols = columns(20, seed=7)
        x = bundle.preprocessor.transform(cols)
        inp = grpcclient.InferInput("features", list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        result = client.infer(NAME, [inp], outputs=[grpcclient.InferRequestedOutput("scores")])
        np.testing.assert_allclose(
            result.as_numpy("scores"), bundle.predict_proba(cols), rtol=0, atol=1e-6
        )
    finally:
        client.close()


def test_only_loopback_is_bound(backend):
    host = backend.http_url.split(":")[0]
    assert host == backend.grpc_url.split(":")[0] == backend.metrics_url.split(":")[0]
    assert host == "127.0.0.1"


def test_close_leaves_no_process(bundle, exported):
    backend = TritonBackend(bundle, exported, name="closing")
    pid = backend.pid
    assert _live(pid) and len(_group(pid)) >= 2  # the server script and tritonserver at least
    backend.check_health()
    backend.close()
    assert not _live(pid)
    assert _group(pid) == []
    assert not backend.folder.exists()
    assert not list(Path("/dev/shm").glob(f"pytrtion{pid}-*"))
    backend.close()  # idempotent
    with pytest.raises(TritonFailed, match="closed"):
        backend.predict(columns(2, seed=8))
    with pytest.raises(TritonFailed, match="closed"):
        backend.check_health()


def test_a_dead_server_makes_the_backend_unhealthy(bundle, exported):
    with TritonBackend(bundle, exported, name="dying") as backend:
        os.killpg(backend.pid, signal.SIGKILL)
        assert _wait_gone(backend.pid, timeout_s=10) == []
        with pytest.raises(TritonFailed, match="exited with code -9"):
            backend.check_health()
        with pytest.raises(TritonFailed, match="failed to score"):
            backend.predict(columns(2, seed=9))
    assert not backend.folder.exists()
    assert not list(Path("/dev/shm").glob(f"pytrtion{backend.pid}-*"))


def test_server_stops_when_its_owner_dies(exported, tmp_path):
    # The owner is killed without a chance to close: the server notices its parent is gone.
    bundle_path = exported.path.parent.parent / "bundle"
    owner = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
                import sys, time
                from pathlib import Path
                from cluster.bundle import ModelBundle
                from cluster.export import read_export
                from cluster.serve._triton import TritonBackend
                path = Path({str(bundle_path)!r})
                b = TritonBackend(ModelBundle.from_bytes(path.read_bytes()), read_export(path),
                                  name="orphan")
                print(b.pid, b.folder, flush=True)
                time.sleep(600)
            """),
        ],
        stdout=subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[3],
        text=True,
    )
    try:
        line = owner.stdout.readline().split()
        assert len(line) == 2, f"the owner did not start a server: {line!r}"
        pid, folder = int(line[0]), Path(line[1])
        assert _live(pid) and folder.is_dir()
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait()
    assert _wait_gone(pid, timeout_s=30) == []
    assert not folder.exists()


def test_missing_venv_says_make_triton(bundle, exported, tmp_path, monkeypatch):
    absent = tmp_path / "no-venv" / "bin" / "python"
    with pytest.raises(CheckFailed, match="make triton") as info:
        TritonBackend(bundle, exported, name=NAME, python=absent)
    assert isinstance(info.value, TritonFailed) and str(absent) in str(info.value)
    monkeypatch.setenv(PYTHON_ENV, str(absent))
    with pytest.raises(TritonFailed, match=f"\\${PYTHON_ENV}"):
        triton_python()


def test_a_server_that_cannot_start_reports_its_log(bundle, exported, tmp_path):
    # A Python without pytriton: the server script fails at import, the log says why.
    with pytest.raises(TritonFailed, match="ModuleNotFoundError"):
        TritonBackend(bundle, exported, name=NAME, python=sys.executable, start_timeout_s=30)


def test_export_must_fit_the_bundle(exported):
    from cluster.bundle import ModelBundle, Preprocessor, build_mlp

    pre = Preprocessor(numerical={"a": (0.0, 1.0)}, categorical={})
    other = ModelBundle(pre, build_mlp(1, 4, 1), 4, 1, "y")
    with pytest.raises(InvalidInput, match="takes 5 columns"):
        TritonBackend(other, exported, name=NAME)
    with pytest.raises(InvalidInput, match="not a Triton model name"):
        TritonBackend(make_bundle(), exported, name="no spaces")


def test_default_python_is_the_repos_venv(monkeypatch):
    monkeypatch.delenv(PYTHON_ENV, raising=False)
    python = triton_python()
    assert python == Path(__file__).resolve().parents[3] / ".venv-triton" / "bin" / "python"
    assert os.access(python, os.X_OK)
