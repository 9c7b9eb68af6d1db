"""The Triton server script (`cluster/serve/_triton_server.py`) in parts: its command line and
environment here, and under the Python of ``.venv-triton`` (its own interpreter) that it
imports nothing of the appliance's and that its onnxruntime session runs the exported graph.
Its `main` (pytriton's ``tritonserver``, stopping on a signal, when the server dies or when its
parent is gone) runs on a real Triton in tests/cluster/serve/test_triton.py
(test_close_leaves_no_process, test_a_dead_server_makes_the_backend_unhealthy,
test_server_stops_when_its_owner_dies) and tests/cluster/test_serve_triton.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import numpy as np
import pytest
from serve_helpers import columns

from cluster.bundle import ModelBundle
from cluster.export import export_bundle
from cluster.serve import _triton_server
from cluster.serve._triton import TritonFailed, triton_python

SCRIPT = Path(_triton_server.__file__)
REQUIRED = ["--model-file", "m.onnx", "--name", "credit", "--width", "5", "--http-port", "1",
            "--grpc-port", "2", "--metrics-port", "3", "--workspace", "ws",
            "--parent-pid", "42"]


def test_the_command_line():
    args = _triton_server._parse(REQUIRED)
    assert args.model_file == Path("m.onnx") and args.workspace == Path("ws")
    assert (args.name, args.width, args.http_port, args.grpc_port, args.metrics_port,
            args.parent_pid) == ("credit", 5, 1, 2, 3, 42)
    assert (args.threads, args.log_file, args.scratch) == (1, None, None)
    more = _triton_server._parse([*REQUIRED, "--threads", "4", "--log-file", "t.log",
                                  "--scratch", "s"])
    assert (more.threads, more.log_file, more.scratch) == (4, Path("t.log"), Path("s"))


@pytest.mark.parametrize("missing", ["--model-file", "--width", "--parent-pid"])
def test_a_missing_argument_is_a_usage_error(missing, capsys):
    i = REQUIRED.index(missing)
    with pytest.raises(SystemExit) as exit_:
        _triton_server._parse(REQUIRED[:i] + REQUIRED[i + 2:])
    assert exit_.value.code == 2 and missing in capsys.readouterr().err


def test_libpython_is_put_on_the_loaders_path_first(monkeypatch):
    libdir = sysconfig.get_config_var("LIBDIR")
    monkeypatch.delenv("LD_LIBRARY_PATH", raising=False)
    _triton_server._with_libpython()
    assert os.environ["LD_LIBRARY_PATH"] == libdir
    monkeypatch.setenv("LD_LIBRARY_PATH", "/opt/cuda/lib")
    _triton_server._with_libpython()
    assert os.environ["LD_LIBRARY_PATH"] == f"{libdir}:/opt/cuda/lib"


def test_under_the_triton_python_it_imports_only_its_own_and_runs_the_graph(
        bundle_file, tmp_path):
    try:
        python = triton_python()
    except TritonFailed as exc:
        pytest.skip(str(exc))  # `make triton` creates it; `make test` does first

    bundle_path = tmp_path / "credit.bundle"
    bundle_path.write_bytes(bundle_file.read_bytes())
    export = export_bundle(bundle_path)
    bundle = ModelBundle.from_bytes(bundle_path.read_bytes())
    design = bundle.preprocessor.transform(columns(6, seed=4)).astype(np.float32)
    (tmp_path / "x.json").write_text(json.dumps(design.tolist()))
    probe = textwrap.dedent(f"""
        import importlib.util, json, sys
        import numpy as np
        spec = importlib.util.spec_from_file_location("_triton_server", {str(SCRIPT)!r})
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        ours = sorted(m for m in sys.modules if m.split(".")[0] in
                      ("appliance", "cluster", "kernels", "pytriton", "onnxruntime", "torch"))
        session = module._session({str(export.path)!r}, 2)
        x = np.array(json.load(open({str(tmp_path / "x.json")!r})), dtype=np.float32)
        (scores,) = session.run(["scores"], {{"features": x}})
        print(json.dumps({{"imported": ours,
                          "threads": session.get_session_options().intra_op_num_threads,
                          "providers": session.get_providers(),
                          "scores": scores.tolist()}}))
    """)
    done = subprocess.run([str(python), "-c", probe], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.splitlines()[-1])
    # pytriton only after LD_LIBRARY_PATH is set (in main); nothing of ours ever.
    assert out["imported"] == []
    assert out["threads"] == 2 and out["providers"] == ["CPUExecutionProvider"]
    _, expected = bundle.predict(columns(6, seed=4))
    np.testing.assert_allclose(out["scores"], expected, rtol=1e-5, atol=1e-6)
    assert sys.executable != str(python)  # the check ran in the other interpreter
