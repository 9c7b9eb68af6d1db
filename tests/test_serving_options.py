"""Serving specs: `[serving]` validated, merged over defaults, turned into Serve's options."""

from __future__ import annotations

import re

import pytest

from appliance.config import load_config
from appliance.errors import InvalidInput
from appliance.serving import ServingOptions, parse_serving


def test_defaults_and_fixed_replicas():
    options = parse_serving(None)
    assert options == ServingOptions()
    got = parse_serving({"replicas": 3, "num_gpus": 0.25}).deployment_options()
    assert got["num_replicas"] == 3 and "autoscaling_config" not in got
    assert got["ray_actor_options"] == {"num_cpus": 0.2, "num_gpus": 0.25}
    assert got["max_ongoing_requests"] == 64


def test_autoscaling_replaces_the_fixed_count():
    options = parse_serving({"autoscaling": {"min_replicas": 0, "max_replicas": 4}})
    got = options.deployment_options()
    assert "num_replicas" not in got
    assert got["autoscaling_config"]["min_replicas"] == 0
    assert got["autoscaling_config"]["max_replicas"] == 4
    assert got["autoscaling_config"]["target_ongoing_requests"] == 32


def test_a_spec_merges_over_its_base():
    base = parse_serving({"max_batch_size": 8, "max_ongoing_requests": 16})
    merged = parse_serving({"replicas": 2}, base=base)
    assert (merged.max_batch_size, merged.max_ongoing_requests, merged.replicas) == (8, 16, 2)
    assert parse_serving(merged.to_dict()) == merged  # stored with a deployment, read back


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"max_batch_size": 0}, "max_batch_size must be >= 1"),
        ({"max_batch_size": 128}, "below max_batch_size"),
        ({"num_gpus": -1}, "num_gpus must be >= 0"),
        ({"num_cpus": "1"}, "num_cpus must be a number"),
        ({"replicas": True}, "replicas must be an integer"),
        ({"batch_wait_s": float("nan")}, "batch_wait_s must be a number"),
        ({"backend": "tf"}, "backend 'tf'"),
        ({"log_predictions": "yes"}, "log_predictions must be true or false"),
        ({"batchsize": 4}, "unknown key(s) ['batchsize']"),
        ({"autoscaling": {"min_replicas": 3, "max_replicas": 2}}, "is above max_replicas"),
        ({"autoscaling": {"max": 2}}, "unknown key(s) ['max']"),
        ({"runtime_env": {"pip": "x"}}, "list of requirement strings"),
        ({"runtime_env": {"wheelhouse": "/no/such/folder"}}, "is not a folder"),
        ([1], "must be a table"),
    ],
)
def test_bad_specs_name_the_key(doc, message):
    with pytest.raises(InvalidInput, match=re.escape(message)):
        parse_serving(doc, "spec")


def test_config_reads_serving_and_serve_limits(tmp_path):
    (tmp_path / "appliance.toml").write_text(
        "serve_grpc_port = 9001\nserve_max_body_bytes = 1024\nserve_ingress_replicas = 2\n"
        "[serving]\nmax_batch_size = 4\n"
    )
    cfg = load_config({"APPLIANCE_HOME": str(tmp_path)})
    assert (cfg.serve_grpc_port, cfg.serve_max_body_bytes, cfg.serve_ingress_replicas) == (
        9001, 1024, 2)
    assert cfg.serving.max_batch_size == 4
    assert load_config({"APPLIANCE_HOME": str(tmp_path),
                        "APPLIANCE_SERVE_GRPC_PORT": "0"}).serve_grpc_port == 0
    with pytest.raises(InvalidInput, match="serve_grpc_port"):
        load_config({"APPLIANCE_HOME": str(tmp_path), "APPLIANCE_SERVE_GRPC_PORT": "http"})
    (tmp_path / "appliance.toml").write_text("serve_max_body_bytes = 0\n")
    with pytest.raises(InvalidInput, match="serve_max_body_bytes must be a positive integer"):
        load_config({"APPLIANCE_HOME": str(tmp_path)})
