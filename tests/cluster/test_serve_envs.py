"""Isolated replica environments: each model's own pip packages, installed from a wheelhouse.

Two models run on one Serve instance with different versions of one tiny pure-Python package,
built here as wheels (no network), installed by Ray's pip runtime_env with ``--no-index
--find-links``. Ray builds one virtualenv per distinct package set, by cloning the driver's
virtualenv (torch, numpy and the appliance come along), so every distinct set costs a copy of
the venv: the module keeps them to four (1.0, 2.0, 3.0 and the missing 9.9). A version the
wheelhouse lacks is refused when the spec is parsed; past that check, a failed install still
fails the deploy.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import importlib.util
import shutil
import time
import zipfile
from importlib import metadata
from pathlib import Path

import httpx
import numpy as np
import pytest
from serve_helpers import AUTH, columns, infer_request, make_bundle, serve_config

from appliance.errors import InvalidInput
from appliance.serving import parse_serving, ray_runtime_env
from cluster.bundle import ModelBundle
from cluster.serve import DeployFailed, deploy, undeploy

pytestmark = pytest.mark.slow

PACKAGE = "appliance_envprobe"
# Cloning the venv and installing take tens of seconds per environment on 2 cores.
DEPLOY_TIMEOUT_S = 300.0
# Ray tries the install 3 times and Serve starts 3 replicas before giving up: ~1 min on
# 2 idle cores, 3 on busy ones. Either way the deploy raises (DEPLOY_FAILED, or the timeout).
FAIL_TIMEOUT_S = 240.0


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"sha256={digest}"


def _build_wheel(house: Path, version: str) -> Path:
    """Write ``appliance_envprobe-{version}`` as a pure-Python wheel into `house`."""
    info = f"{PACKAGE}-{version}.dist-info"
    files = {
        f"{PACKAGE}/__init__.py": f'VERSION = "{version}"\n'.encode(),
        f"{info}/METADATA": (
            f"Metadata-Version: 2.1\nName: {PACKAGE}\nVersion: {version}\n"
            "Summary: a probe for isolated serving environments\n"
        ).encode(),
        f"{info}/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: appliance-tests\nRoot-Is-Purelib: true\n"
            b"Tag: py3-none-any\n"
        ),
    }
    record = [f"{name},{_record_hash(data)},{len(data)}" for name, data in files.items()]
    files[f"{info}/RECORD"] = ("\n".join([*record, f"{info}/RECORD,,"]) + "\n").encode()
    path = house / f"{PACKAGE}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as whl:
        for name, data in files.items():
            whl.writestr(name, data)
    return path


def _serving(house: Path, version: str):
    return parse_serving({"runtime_env": {"pip": [f"{PACKAGE}=={version}"],
                                          "wheelhouse": str(house)}})


def _packages(model: str) -> dict:
    from ray import serve

    return serve.get_app_handle(f"model-{model}").info.remote().result(timeout_s=60)["packages"]


def _scores(client: httpx.Client, model: str, cols) -> tuple[str, list[float]]:
    resp = client.post(f"/v2/models/{model}/infer", json=infer_request(cols), headers=AUTH)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    return body["model_version"], next(o["data"] for o in body["outputs"] if o["name"] == "scores")


def _pip_envs_dir() -> Path:
    """Where this Ray node keeps its pip environments."""
    import ray

    # Private, but the only way to the session folder Ray's pip plugin writes under.
    session = ray._private.worker._global_node.get_session_dir_path()
    return Path(session) / "runtime_resources" / "pip"


@pytest.fixture(scope="module")
def envs(ray_session, tmp_path_factory):
    """Models env-a (probe 1.0) and env-b (probe 2.0) served from one bundle and wheelhouse."""
    from ray import serve

    home = tmp_path_factory.mktemp("serve-envs")
    house = home / "wheelhouse"
    house.mkdir()
    for version in ("1.0", "2.0", "3.0"):
        _build_wheel(house, version)
    path = home / "model.bundle"
    path.write_bytes(make_bundle().to_bytes())
    cfg = serve_config(home)
    envs_dir = _pip_envs_dir()
    before = set(envs_dir.iterdir()) if envs_dir.is_dir() else set()
    times = {}
    for model, probe in (("env-a", "1.0"), ("env-b", "2.0")):
        start = time.monotonic()
        url = deploy(cfg, model=model, version="1", bundle_path=path, deployment=model,
                     serving=_serving(house, probe), timeout_s=DEPLOY_TIMEOUT_S)
        times[model] = time.monotonic() - start
    print(f"deploy took env-a {times['env-a']:.1f}s, env-b {times['env-b']:.1f}s")
    with httpx.Client(base_url=url, timeout=30) as client:
        yield {"cfg": cfg, "house": house, "path": path, "client": client,
               "bundle": ModelBundle.from_bytes(path.read_bytes())}
    serve.shutdown()
    # Each environment is a full copy of the venv (~1.6 GB) that Ray keeps until its cache
    # passes 10 GB, even after the session ends: remove the ones made here.
    for env in set(envs_dir.iterdir()) - before:
        shutil.rmtree(env, ignore_errors=True)


def test_wheelhouse_wheels_are_valid(tmp_path):
    wheel = _build_wheel(tmp_path, "1.0")
    with zipfile.ZipFile(wheel) as whl:
        assert whl.testzip() is None
        assert f"{PACKAGE}-1.0.dist-info/RECORD" in whl.namelist()


def test_each_replica_sees_its_own_version(envs):
    assert _packages("env-a") == {PACKAGE: "1.0"}
    assert _packages("env-b") == {PACKAGE: "2.0"}
    # Installed in the replicas' own environments, not in the one running the tests.
    assert importlib.util.find_spec(PACKAGE) is None
    with pytest.raises(metadata.PackageNotFoundError):
        metadata.version(PACKAGE)


def test_both_answer_with_the_same_bundle(envs):
    cols = columns(6, seed=3)
    expected = envs["bundle"].predict_proba(cols)
    for model in ("env-a", "env-b"):
        version, scores = _scores(envs["client"], model, cols)
        assert version == "1"
        np.testing.assert_allclose(scores, expected, rtol=1e-5)


def test_upgrading_one_model_leaves_the_other_alone(envs):
    cfg, client = envs["cfg"], envs["client"]
    start = time.monotonic()
    deploy(cfg, model="env-b", version="2", bundle_path=envs["path"], deployment="env-b",
           serving=_serving(envs["house"], "3.0"), timeout_s=DEPLOY_TIMEOUT_S)
    print(f"upgrading env-b to probe 3.0 took {time.monotonic() - start:.1f}s")
    assert _packages("env-b") == {PACKAGE: "3.0"}
    assert _packages("env-a") == {PACKAGE: "1.0"}
    cols = columns(4, seed=4)
    assert _scores(client, "env-b", cols)[0] == "2"
    version, scores = _scores(client, "env-a", cols)
    assert version == "1"
    np.testing.assert_allclose(scores, envs["bundle"].predict_proba(cols), rtol=1e-5)


def test_a_version_missing_from_the_wheelhouse_is_refused_at_once(tmp_path):
    for version in ("1.0", "2.0"):
        _build_wheel(tmp_path, version)
    with pytest.raises(InvalidInput, match=rf"'{PACKAGE}==9.9' is not in wheelhouse .*"
                                           r"there: 1\.0, 2\.0\)"):
        _serving(tmp_path, "9.9")
    with pytest.raises(InvalidInput, match="versions of other-package there: none"):
        parse_serving({"runtime_env": {"pip": ["other-package"], "wheelhouse": str(tmp_path)}})
    # Ranges, other spellings of the name, and markers that do not apply here all pass.
    parse_serving({"runtime_env": {"pip": ["Appliance-EnvProbe>=1.5,<3",
                                           'absent; python_version < "3"'],
                                   "wheelhouse": str(tmp_path)}})


def test_the_wheelhouse_is_the_only_source():
    env = ray_runtime_env({"pip": [f"{PACKAGE}==1.0"], "wheelhouse": "/srv/wheels"})
    options = env["pip"]["pip_install_options"]
    assert options[-3:] == ["--no-index", "--find-links", "/srv/wheels"]
    # The node's pip.conf and PIP_FIND_LINKS / PIP_INDEX_URL must not add sources.
    assert "--isolated" in options


def test_an_install_failing_on_the_node_fails_the_deploy(envs):
    """What the wheelhouse check cannot see (a file gone from a node, a missing dependency):
    Ray's install fails and the deploy raises instead of waiting forever."""
    cfg, client = envs["cfg"], envs["client"]
    unchecked = dataclasses.replace(
        _serving(envs["house"], "1.0"),
        runtime_env={"pip": [f"{PACKAGE}==9.9"], "wheelhouse": str(envs["house"])},
    )
    start = time.monotonic()
    with pytest.raises(DeployFailed, match="env-c") as failed:
        deploy(cfg, model="env-c", version="1", bundle_path=envs["path"], deployment="env-c",
               serving=unchecked, timeout_s=FAIL_TIMEOUT_S)
    print(f"failed deploy took {time.monotonic() - start:.1f}s: {failed.value}")
    if "could not deploy" in str(failed.value):
        # Serve's verdict came back: the error carries pip's own words about the package.
        assert f"{PACKAGE}==9.9" in str(failed.value), failed.value
    undeploy(cfg, "env-c")
    # The others keep their environments and keep answering.
    assert _packages("env-a") == {PACKAGE: "1.0"}
    assert _packages("env-b") == {PACKAGE: "3.0"}
    cols = columns(2, seed=5)
    assert _scores(client, "env-a", cols)[0] == "1"
    assert _scores(client, "env-b", cols)[0] == "2"
