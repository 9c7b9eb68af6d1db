"""A model replica's scorer backed by a real Triton Inference Server.

The replica keeps everything in front of the model (auth, parsing, the prediction log, canary
routing, monitoring) and the preprocessing; `TritonBackend` computes the scores. It starts
``tritonserver`` through pytriton in a subprocess (``_triton_server.py``, run by the Python of
``.venv-triton``, which pytriton's numpy<2 pin keeps apart from the appliance's), serving the
bundle's ONNX export (`cluster.export`) on loopback, and calls it with ``tritonclient.http``
(binary tensors)::

    export = cluster.export.export_bundle(bundle_path)
    backend = TritonBackend(bundle, export, name="credit")
    predictions, scores = backend.predict(columns)    # == bundle.predict(columns)
    backend.close()

The server lives in a process group of its own. `close` (idempotent; also on garbage
collection and at interpreter exit) asks it to stop, then kills the group and removes its
folder. If the owning process dies without closing, the server notices its parent is gone
and stops itself.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import weakref
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from appliance.errors import CheckFailed, InvalidInput
from appliance.ports import free_ports
from cluster.bundle import ModelBundle
from cluster.export import OnnxExport

PYTHON_ENV = "APPLIANCE_TRITON_PYTHON"
# The repository's venv, created by `make triton`: <repo>/.venv-triton next to <repo>/cluster.
DEFAULT_VENV = Path(__file__).resolve().parents[2] / ".venv-triton"
_SERVER_SCRIPT = Path(__file__).with_name("_triton_server.py")
# Triton's (and pytriton's) rule for model names.
_NAME = re.compile(r"[A-Za-z0-9._-]+")
# What a failure message quotes of the server's logs.
_LOG_TAIL_CHARS = 3000


class TritonFailed(CheckFailed):
    """The Triton server could not be started, or did not answer."""


def triton_python(python: Path | str | None = None) -> Path:
    """The interpreter that runs the Triton server.

    Args:
        python: an explicit interpreter (default None: ``$APPLIANCE_TRITON_PYTHON`` if set,
            else ``.venv-triton/bin/python`` in the repository).

    Raises:
        TritonFailed: that interpreter does not exist.
    """
    if python is not None:
        path, source = Path(python), "the python argument"
    elif os.environ.get(PYTHON_ENV):
        path, source = Path(os.environ[PYTHON_ENV]), f"${PYTHON_ENV}"
    else:
        path, source = DEFAULT_VENV / "bin" / "python", "the default"
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise TritonFailed(
            f"no Triton Python at {str(path)!r} (from {source}); run `make triton` to create "
            f"{DEFAULT_VENV.name} with nvidia-pytriton and onnxruntime, or point "
            f"${PYTHON_ENV} at a Python that has them"
        )
    return path


class TritonBackend:
    """Scores a bundle's design matrices on a Triton server it starts and owns.

    Args:
        bundle: the model; its preprocessor and threshold run here, its network in Triton.
        export: the bundle's ONNX export (`cluster.export.export_bundle`).
        name: the model name in Triton (letters, digits, ``.``, ``_``, ``-``).
        python: the interpreter of the Triton venv (default None: see `triton_python`).
        start_timeout_s: how long to wait for the model to be ready (default 60).
        request_timeout_s: network timeout of one inference call (default 30).
        threads: onnxruntime threads in the server (default 1: a replica has a CPU fraction).

    Attributes:
        pid: the server script's pid, also its process group (tritonserver and the Python
            backend's stub belong to the group).
        http_url, grpc_url, metrics_url: ``127.0.0.1:port`` of Triton's endpoints.
        folder: the server's scratch folder: ``server.log`` (the script and pytriton),
            ``tritonserver.log`` and pytriton's workspace; removed by `close`.

    Raises:
        InvalidInput: the export does not fit the bundle, or `name` is not a valid Triton name.
        TritonFailed: no Triton venv, or the server did not become ready in time (its log tail
            is in the message).
    """

    def __init__(
        self,
        bundle: ModelBundle,
        export: OnnxExport,
        *,
        name: str,
        python: Path | str | None = None,
        start_timeout_s: float = 60.0,
        request_timeout_s: float = 30.0,
        threads: int = 1,
    ) -> None:
        if export.width != bundle.preprocessor.width:
            raise InvalidInput(
                f"the export at {str(export.path)!r} takes {export.width} columns but the "
                f"bundle's preprocessor makes {bundle.preprocessor.width}; export this bundle"
            )
        if not _NAME.fullmatch(name):
            raise InvalidInput(
                f"{name!r} is not a Triton model name; use letters, digits, '.', '_' and '-'"
            )
        interpreter = triton_python(python)
        self.bundle = bundle
        self.export = export
        self.name = name
        self._timeout = request_timeout_s
        self._local = threading.local()
        self._clients: list[httpclient.InferenceServerClient] = []
        self._lock = threading.Lock()
        self._closed = False
        http, grpc, metrics = free_ports(3)
        self.http_url = f"127.0.0.1:{http}"
        self.grpc_url = f"127.0.0.1:{grpc}"
        self.metrics_url = f"127.0.0.1:{metrics}"
        self.folder = Path(tempfile.mkdtemp(prefix="appliance-triton-"))
        self._log = self.folder / "server.log"
        self._server_log = self.folder / "tritonserver.log"
        cmd = [
            str(interpreter), str(_SERVER_SCRIPT),
            "--model-file", str(export.path),
            "--name", name,
            "--width", str(export.width),
            "--http-port", str(http),
            "--grpc-port", str(grpc),
            "--metrics-port", str(metrics),
            "--workspace", str(self.folder / "workspace"),
            "--log-file", str(self._server_log),
            "--parent-pid", str(os.getpid()),
            "--threads", str(threads),
            "--scratch", str(self.folder),
        ]  # fmt: skip
        try:
            with open(self._log, "wb") as log:
                # A session of its own: close() can kill the server, tritonserver and the Python
                # backend's stub as one group, and a Ctrl-C meant for the owner does not reach
                # them.
                self._proc = subprocess.Popen(
                    cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    env=_server_env(),
                )
        except OSError as exc:
            shutil.rmtree(self.folder, ignore_errors=True)
            raise TritonFailed(f"could not run {str(interpreter)!r}: {exc}") from exc
        self.pid = self._proc.pid
        # Runs once: on close(), when the backend is garbage collected, or at interpreter exit.
        self._finalizer = weakref.finalize(self, _stop, self._proc, self.folder)
        try:
            self._wait_ready(start_timeout_s)
        except BaseException:
            self.close()
            raise

    def _client(self) -> httpclient.InferenceServerClient:
        # tritonclient.http runs on gevent, whose connections belong to the thread that made
        # them; the replica scores in worker threads, so each thread gets its own client.
        client = getattr(self._local, "client", None)
        if client is None:
            client = httpclient.InferenceServerClient(
                self.http_url, connection_timeout=self._timeout, network_timeout=self._timeout
            )
            self._local.client = client
            with self._lock:
                self._clients.append(client)
        return client

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            code = self._proc.poll()
            if code is not None:
                raise TritonFailed(
                    f"the Triton server for model {self.name!r} exited with code {code} before "
                    f"it was ready; is {DEFAULT_VENV.name} complete (`make triton`)? "
                    f"Its log ends:\n{self._log_tail()}"
                )
            try:
                if self._client().is_model_ready(self.name):
                    return
            except (InferenceServerException, OSError):
                pass  # not listening yet
            if time.monotonic() > deadline:
                raise TritonFailed(
                    f"the Triton server for model {self.name!r} was not ready after "
                    f"{timeout_s:g} s; its log ends:\n{self._log_tail()}"
                )
            time.sleep(0.1)

    def _log_tail(self) -> str:
        parts = []
        for path in (self._log, self._server_log):
            try:
                text = path.read_text(errors="replace")
            except OSError:
                continue
            if text.strip():
                parts.append(f"--- {path.name}\n{text[-_LOG_TAIL_CHARS:]}")
        return "\n".join(parts) or "(empty)"

    def check_health(self) -> None:
        """Raise TritonFailed unless the server runs and reports the model ready.

        For the replica's own ``check_health``: a server that died (killed, out of memory)
        makes the replica unhealthy, and Serve replaces it.
        """
        if self._closed:
            raise TritonFailed(f"the Triton backend for model {self.name!r} is closed")
        code = self._proc.poll()
        if code is not None:
            raise self._exited(code)
        try:
            ready = self._client().is_model_ready(self.name)
        except (InferenceServerException, OSError) as exc:
            try:
                # A killed server's sockets close a moment before it can be reaped: name the
                # exit when that is what happened.
                code = self._proc.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                raise TritonFailed(f"Triton at {self.http_url} does not answer: {exc}") from exc
            raise self._exited(code) from exc
        if not ready:
            raise TritonFailed(f"Triton at {self.http_url} reports model {self.name!r} not ready")

    def _exited(self, code: int) -> TritonFailed:
        return TritonFailed(
            f"the Triton server for model {self.name!r} exited with code {code}; its log "
            f"ends:\n{self._log_tail()}"
        )

    def predict_proba(self, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        """Probability of class 1 per row, float32 of shape (n,), as `ModelBundle.predict_proba`.

        Raises:
            InvalidInput: `columns` do not fit the bundle's features.
            TritonFailed: the backend is closed, or Triton failed the request.
        """
        if self._closed:
            raise TritonFailed(f"the Triton backend for model {self.name!r} is closed")
        x = self.bundle.preprocessor.transform(columns)
        if len(x) == 0:
            return np.zeros(0, dtype=np.float32)
        features = httpclient.InferInput("features", list(x.shape), "FP32")
        features.set_data_from_numpy(x, binary_data=True)
        wanted = httpclient.InferRequestedOutput("scores", binary_data=True)
        try:
            result = self._client().infer(self.name, [features], outputs=[wanted])
        except (InferenceServerException, OSError) as exc:
            raise TritonFailed(
                f"Triton at {self.http_url} failed to score {len(x)} row(s) for model "
                f"{self.name!r}: {exc}"
            ) from exc
        scores = result.as_numpy("scores")
        if scores is None or scores.shape != (len(x),):
            raise TritonFailed(
                f"Triton returned scores of shape {getattr(scores, 'shape', None)} for "
                f"{len(x)} row(s) of model {self.name!r}"
            )
        return scores.astype(np.float32, copy=False)

    def predict(self, columns: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Return (predicted classes as int64, scores as float32), as `ModelBundle.predict`."""
        scores = self.predict_proba(columns)
        return (scores >= self.bundle.threshold).astype(np.int64), scores

    def close(self) -> None:
        """Stop the server and remove its files; idempotent."""
        self._closed = True
        with self._lock:
            clients, self._clients = self._clients, []
        for client in clients:
            # A half-open connection must not keep the server from being stopped.
            with contextlib.suppress(Exception):
                client.close()
        self._finalizer()

    def __enter__(self) -> TritonBackend:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _server_env() -> dict[str, str]:
    env = dict(os.environ)
    # The server's Python is the Triton venv's; the appliance's own path must not leak into it.
    env.pop("PYTHONPATH", None)
    env.pop("PYTHONHOME", None)
    return env


def _stop(proc: subprocess.Popen, folder: Path, grace_s: float = 15.0) -> None:
    # The server script stops tritonserver on SIGTERM; whatever remains of the group after the
    # grace period (a hung stub, a server that ignored the signal) is killed.
    if proc.poll() is None:
        with contextlib.suppress(subprocess.TimeoutExpired, ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=grace_s)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    if proc.poll() is None:
        proc.wait(timeout=grace_s)
    # A stopped server frees its Python backend's shared memory; a killed one leaves it. pytriton
    # names the regions after the pid of the process that runs Triton(), the script.
    for region in Path("/dev/shm").glob(f"pytrtion{proc.pid}-*"):
        region.unlink(missing_ok=True)
    shutil.rmtree(folder, ignore_errors=True)
