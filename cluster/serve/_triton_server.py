"""Triton Inference Server for one exported model: the process `TritonBackend` starts.

Runs under the Python of ``.venv-triton`` (``make triton``), never under the appliance's own:
it imports only the standard library, numpy, onnxruntime and pytriton, and nothing of
``appliance`` or ``cluster``, so it is run as a file, not imported.

    python _triton_server.py --model-file model.onnx --name credit --width 5 \
        --http-port P1 --grpc-port P2 --metrics-port P3 --workspace DIR/workspace \
        --log-file DIR/tritonserver.log --parent-pid PID --scratch DIR

pytriton starts ``tritonserver`` (HTTP, gRPC and metrics on 127.0.0.1) and binds the model under
``--name``: input ``features`` FP32 [-1, width], output ``scores`` FP32 [-1]. Triton hands each
request through its Python backend to `_infer` in this process, which runs the ONNX graph.

The process stops Triton and exits on SIGTERM or SIGINT, when ``tritonserver`` dies, and when its
parent (``--parent-pid``) is gone, so a replica that is killed leaves no server behind; in that
last case it also removes ``--scratch``, which the parent would have removed.
``tritonserver`` itself gets SIGTERM from the kernel if this process dies first (pytriton sets
PR_SET_PDEATHSIG on it).
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import sys
import sysconfig
import threading
from pathlib import Path

import numpy as np

logger = logging.getLogger("appliance.triton_server")

# How often the main loop checks the parent and the server.
_WATCH_S = 0.5


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model-file", type=Path, required=True, help="the exported ONNX model")
    p.add_argument("--name", required=True, help="the model name Triton serves it under")
    p.add_argument("--width", type=int, required=True, help="columns of `features`")
    p.add_argument("--http-port", type=int, required=True)
    p.add_argument("--grpc-port", type=int, required=True)
    p.add_argument("--metrics-port", type=int, required=True)
    p.add_argument("--workspace", type=Path, required=True, help="pytriton folder (new)")
    p.add_argument("--log-file", type=Path, default=None, help="tritonserver's own log")
    p.add_argument("--parent-pid", type=int, required=True, help="exit when this pid is gone")
    p.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    p.add_argument("--scratch", type=Path, default=None, help="removed if the parent dies")
    return p.parse_args(argv)


def _with_libpython() -> None:
    # The Python backend's stub links libpython3.X.so; an interpreter built outside the system
    # (pyenv, a container's /usr/local) keeps it in its LIBDIR, which the loader does not search.
    # tritonserver and the stub inherit this process's environment, so setting it here suffices.
    libdir = sysconfig.get_config_var("LIBDIR")
    if libdir:
        current = os.environ.get("LD_LIBRARY_PATH")
        os.environ["LD_LIBRARY_PATH"] = f"{libdir}:{current}" if current else libdir


def _session(model_file: Path, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(model_file), opts, providers=["CPUExecutionProvider"])


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    _with_libpython()
    # After the environment is set: pytriton reads it when it starts tritonserver.
    from pytriton.decorators import batch
    from pytriton.model_config import ModelConfig, Tensor
    from pytriton.triton import Triton, TritonConfig

    session = _session(args.model_file, args.threads)

    @batch
    def _infer(features: np.ndarray) -> dict[str, np.ndarray]:
        x = np.ascontiguousarray(features, dtype=np.float32)
        (scores,) = session.run(["scores"], {"features": x})
        return {"scores": np.ascontiguousarray(scores, dtype=np.float32)}

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())

    config = TritonConfig(
        http_address="127.0.0.1",
        http_port=args.http_port,
        grpc_address="127.0.0.1",
        grpc_port=args.grpc_port,
        metrics_address="127.0.0.1",
        metrics_port=args.metrics_port,
        allow_gpu_metrics=False,
        log_file=args.log_file,
        exit_on_error=True,
        # In-flight requests get this long to finish when the server is told to stop.
        exit_timeout_secs=5,
        strict_readiness=True,
    )
    triton = Triton(config=config, workspace=args.workspace)
    orphaned = False
    try:
        # No Triton batching: each request is one design matrix, already batched by the replica.
        triton.bind(
            model_name=args.name,
            infer_func=_infer,
            inputs=[Tensor(name="features", dtype=np.float32, shape=(-1, args.width))],
            outputs=[Tensor(name="scores", dtype=np.float32, shape=(-1,))],
            config=ModelConfig(batching=False),
            strict=True,
        )
        triton.run()
        logger.info("serving %r on 127.0.0.1:%d (http)", args.name, args.http_port)
        while not stop.wait(_WATCH_S):
            if os.getppid() != args.parent_pid:
                logger.info("parent %d is gone; stopping", args.parent_pid)
                orphaned = True
                break
            if not triton.is_alive():
                logger.error("tritonserver or the model's proxy died; stopping")
                return 1
        return 0
    finally:
        triton.stop()
        if orphaned and args.scratch is not None:
            shutil.rmtree(args.scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
