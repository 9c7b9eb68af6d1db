"""Canary routing without Serve (`cluster.serve._routing`): the sticky bucket of a request id,
app names that never collide with a model's, and the request id read from a body without
parsing the whole of it. The canary on a live Serve: tests/cluster/test_serve_canary.py."""

from __future__ import annotations

import hashlib

import pytest

from cluster.serve._ingress import APP_NAME, model_app_name
from cluster.serve._routing import bucket, canary_app_name, request_id_of, to_canary


def test_bucket_is_the_sha256_prefix_over_2_to_64():
    digest = hashlib.sha256(b"req-42").digest()
    assert bucket("req-42") == int.from_bytes(digest[:8], "big") / 2**64
    assert all(0 <= bucket(f"id-{i}") < 1 for i in range(100))
    assert to_canary("req-42", 1.0) and not to_canary("req-42", 0.0)


def test_canary_app_names_never_collide():
    for name in ["credit", "model-x", "canary-x", "oip", "a"]:
        assert canary_app_name(name) not in {model_app_name(m) for m in [name, "canary-x"]}
        assert canary_app_name(name) != APP_NAME
        assert not canary_app_name(name).startswith("model-")


_BINARY_HEADER = (
    b'{"id": "bin-1", "inputs": [{"name": "a", "parameters": {"binary_data_size": 4}}]}'
)
REQUEST_IDS = [
    ("id first", b'{"id": "a", "inputs": []}', None, "a"),
    ("id last", b'{"inputs": [{"data": [1, "}", {"id": "x"}]}], "id": "b"}', None, "b"),
    ("whitespace", b' \n{ "id" :\t"c" } ', None, "c"),
    ("no id", b'{"inputs": []}', None, None),
    ("empty object", b"{}", None, None),
    ("null id", b'{"id": null}', None, None),
    ("empty id", b'{"id": ""}', None, None),
    ("binary header", _BINARY_HEADER + b"\x00\x01\x02\x03", len(_BINARY_HEADER), "bin-1"),
    ("number id", b'{"id": 5}', None, ValueError),
    ("array", b'[{"id": "a"}]', None, ValueError),
    ("truncated", b'{"inputs": [', None, ValueError),
    ("missing comma", b'{"a": 1 "id": "x"}', None, ValueError),
    ("empty body", b"", None, ValueError),
    ("not utf-8", b'{"id": "\xff"}', None, ValueError),
    ("header past the end", b'{"id": "a"}', 99, ValueError),
    ("negative header", b'{"id": "a"}', -1, ValueError),
]


@pytest.mark.parametrize(
    ("case", "body", "header_length", "expected"), REQUEST_IDS, ids=[r[0] for r in REQUEST_IDS]
)
def test_request_id_of(case, body, header_length, expected):
    if expected is ValueError:
        with pytest.raises(ValueError):
            request_id_of(body, header_length)
    else:
        assert request_id_of(body, header_length) == expected
