"""KServe v2 over gRPC at the ingress (`cluster.serve._grpc_front`): the real `tritonclient`
against Serve's gRPC proxy on the live deployment (conftest's `live`), every method of the
service, what each refuses and with which status code. Inference on a real Serve with many
replicas and the binary extension: tests/cluster/test_serve_hardening.py.
"""

from __future__ import annotations

from importlib import metadata

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from serve_helpers import ADMIN_TOKEN, CATEGORICAL, MODEL, NUMERICAL, TOKEN, columns
from tritonclient.utils import InferenceServerException

from cluster.serve._grpc_front import _server_version

pytestmark = pytest.mark.slow


def _auth(token: str = TOKEN) -> dict:
    # gRPC metadata keys are lower case (grpc refuses "Authorization").
    return {"authorization": f"Bearer {token}"}


def _inputs(n: int, seed: int = 0, names=(*NUMERICAL, *CATEGORICAL)) -> list:
    cols = columns(n, seed)
    inputs = []
    for name in names:
        tensor = grpcclient.InferInput(name, [n], "BYTES" if name in CATEGORICAL else "FP64")
        tensor.set_data_from_numpy(cols[name])
        inputs.append(tensor)
    return inputs


@pytest.fixture
def client(live):
    c = grpcclient.InferenceServerClient(url=f"127.0.0.1:{live['cfg'].serve_grpc_port}")
    yield c
    c.close()


def _refused(call, *args, **kwargs) -> tuple[str, str]:
    """(status code, message) of a call that must fail."""
    with pytest.raises(InferenceServerException) as refused:
        call(*args, **kwargs)
    return refused.value.status(), refused.value.message()


def test_the_server_version_is_the_installed_package():
    assert _server_version() == metadata.version("appliance")


def test_the_server_answers_without_a_token(client):
    assert client.is_server_live() and client.is_server_ready()
    meta = client.get_server_metadata()
    assert (meta.name, meta.version) == ("appliance", _server_version())
    assert list(meta.extensions) == ["binary_tensor_data", "model_repository"]


def test_model_metadata_and_readiness(client):
    meta = client.get_model_metadata(MODEL, headers=_auth())
    assert meta.name == MODEL and list(meta.versions) == ["1"]
    assert [i.name for i in meta.inputs] == [*NUMERICAL, *CATEGORICAL]
    assert client.is_model_ready(MODEL, "1", headers=_auth())
    assert _refused(client.get_model_metadata, MODEL, "2", headers=_auth()) == (
        "StatusCode.NOT_FOUND",
        "model 'credit' version '2' is not served; the served version is '1'")
    assert _refused(client.get_model_metadata, "ghost", headers=_auth()) == (
        "StatusCode.NOT_FOUND", "model 'ghost' is not deployed")
    status, message = _refused(client.get_model_metadata, MODEL)
    assert status == "StatusCode.UNAUTHENTICATED" and "bearer token" in message


def test_inference_answers_and_names_the_logged_request(client):
    result = client.infer(MODEL, _inputs(4), headers=_auth(), request_id="theirs")
    response = result.get_response()
    assert response.id == "theirs" and response.model_version == "1"
    logged_as = response.parameters["request_id"].string_param
    assert logged_as and logged_as != "theirs"
    assert result.as_numpy("predictions").shape == (4,)
    assert np.all((result.as_numpy("scores") >= 0) & (result.as_numpy("scores") <= 1))


def test_inference_refusals_carry_their_status_codes(live, client):
    missing = _refused(client.infer, MODEL, _inputs(2, names=NUMERICAL), headers=_auth())
    assert missing[0] == "StatusCode.INVALID_ARGUMENT" and "'region'" in missing[1]
    assert _refused(client.infer, MODEL, _inputs(2), model_version="7", headers=_auth())[0] == (
        "StatusCode.NOT_FOUND")
    assert _refused(client.infer, "ghost", _inputs(2), headers=_auth()) == (
        "StatusCode.NOT_FOUND", "model 'ghost' is not deployed")
    # More than the endpoint's body limit (two FP64 columns alone outweigh it).
    rows = live["cfg"].serve_max_body_bytes // 8
    status, message = _refused(client.infer, MODEL, _inputs(rows), headers=_auth())
    assert status == "StatusCode.RESOURCE_EXHAUSTED"
    assert str(live["cfg"].serve_max_body_bytes) in message


def test_the_repository_needs_the_admin_scope(client):
    status, message = _refused(client.get_model_repository_index, headers=_auth())
    assert status == "StatusCode.PERMISSION_DENIED" and "lacks scope 'admin'" in message
    index = client.get_model_repository_index(headers=_auth(ADMIN_TOKEN))
    assert [(m.name, m.version, m.state, m.reason) for m in index.models] == [
        (MODEL, "1", "READY", "")]


def test_configuration_and_statistics_say_where_to_look_instead(client):
    assert _refused(client.get_model_config, MODEL, headers=_auth()) == (
        "StatusCode.UNIMPLEMENTED", "model configuration is not served; use ModelMetadata")
    assert _refused(client.get_inference_statistics, MODEL, headers=_auth()) == (
        "StatusCode.UNIMPLEMENTED",
        "statistics are exported as Prometheus metrics, not over this API")
