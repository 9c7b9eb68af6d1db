"""The configuration's [ray] table (`appliance.ray_settings`): closed by default, TLS only whole,
every bad value named. What the settings open on a real Ray: tests/cluster/test_network.py."""

from __future__ import annotations

import pytest

from appliance.config import load_config
from appliance.errors import InvalidInput
from appliance.ray_settings import parse_ray_settings


def test_ray_settings_default_closed_and_validated(tmp_path):
    assert load_config({"APPLIANCE_HOME": str(tmp_path)}).ray == parse_ray_settings(None, "x")
    settings = parse_ray_settings(None, "x")
    assert (settings.client_server_port, settings.dashboard, settings.tls) == (None, False, False)
    pem = tmp_path / "a.pem"
    pem.write_text("x")
    tls = parse_ray_settings({"tls_ca": str(pem), "tls_cert": str(pem), "tls_key": str(pem),
                              "node_ip_address": "10.0.0.5"}, "[ray]")
    assert tls.tls_env() == {"RAY_USE_TLS": "1", "RAY_TLS_SERVER_CERT": str(pem),
                             "RAY_TLS_SERVER_KEY": str(pem), "RAY_TLS_CA_CERT": str(pem)}
    for bad, named in [({"tls_cert": str(pem)}, "tls_ca"), ({"dashboard": "yes"}, "dashboard"),
                       ({"client_server_port": 0}, "client_server_port"),
                       ({"node_ip_address": "host"}, "node_ip_address"),
                       ({"tls_ca": "/nope", "tls_cert": "/nope", "tls_key": "/nope"}, "tls_ca"),
                       ({"bind": 1}, "bind")]:
        with pytest.raises(InvalidInput, match=named):
            parse_ray_settings(bad, "[ray]")
