"""Canary routing rules: pure functions the ingress applies and the tests check, no Ray.

A model's challenger runs as its own Serve application, ``canary-{model}``, next to the
champion's ``model-{model}``. The two prefixes differ from their first letter on, so no valid
model name can make one application's name equal to the other's (or to the ingress, ``oip``).

In ``split`` mode a request goes to the challenger when the bucket of its request id is below
the canary's share: the bucket is the first 8 bytes of the id's sha256, read big-endian, over
2**64, so the same id always lands on the same side, whichever ingress replica sees it.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import secrets

CANARY_APP_PREFIX = "canary-"
MODES = ("split", "shadow")

_DECODER = json.JSONDecoder()
_SPACE = re.compile(r"[ \t\n\r]*")


# A random half per process and a counter: unique across replicas and restarts without a
# system call per request (uuid4 reads the OS's random source each time).
_ID_PREFIX = secrets.token_hex(8)
_ID_COUNTER = itertools.count()


def new_request_id() -> str:
    """A request id unique across the cluster: 32 hex digits, as a uuid's."""
    return f"{_ID_PREFIX}{next(_ID_COUNTER) & 0xFFFF_FFFF_FFFF_FFFF:016x}"


def canary_app_name(model: str) -> str:
    """The Serve application name that holds `model`'s canary (its challenger)."""
    return f"{CANARY_APP_PREFIX}{model}"


def bucket(request_id: str) -> float:
    """Where `request_id` falls in [0, 1): sha256, first 8 bytes big-endian, over 2**64."""
    digest = hashlib.sha256(request_id.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def to_canary(request_id: str, share: float) -> bool:
    """Whether a split canary with `share` answers the request `request_id`."""
    return bucket(request_id) < share


def _skip_space(doc: str, pos: int) -> int:
    return _SPACE.match(doc, pos).end()


def request_id_of(body: bytes, header_length: int | None = None) -> str | None:
    """The ``"id"`` of an OIP v2 inference request, reading no further than it must.

    Only the top-level members up to ``"id"`` are decoded (clients such as tritonclient send it
    first), and with the binary extension only the JSON header is read. An absent, null or
    empty id is None, as the model replica treats it.

    Args:
        body: the raw request body.
        header_length: ``Inference-Header-Content-Length`` when the binary extension is used
            (default None: the whole body is JSON).

    Raises:
        ValueError: the body is not a JSON object, or its id is not a string; the model replica
            answers such a request with the proper 400.
    """
    if header_length is not None:
        if not 0 <= header_length <= len(body):
            raise ValueError(f"header length {header_length} is outside the body")
        body = body[:header_length]
    doc = body.decode("utf-8")
    pos = _skip_space(doc, 0)
    if doc[pos : pos + 1] != "{":
        raise ValueError("the body is not a JSON object")
    pos = _skip_space(doc, pos + 1)
    if doc[pos : pos + 1] == "}":
        return None
    while True:
        if doc[pos : pos + 1] != '"':
            raise ValueError(f"expected a member name at character {pos}")
        key, pos = _DECODER.raw_decode(doc, pos)
        pos = _skip_space(doc, pos)
        if doc[pos : pos + 1] != ":":
            raise ValueError(f"expected ':' at character {pos}")
        value, pos = _DECODER.raw_decode(doc, _skip_space(doc, pos + 1))
        if key == "id":
            if value is None or value == "":
                return None
            if not isinstance(value, str):
                raise ValueError(f"the request id is not a string: {value!r}")
            return value
        pos = _skip_space(doc, pos)
        sep = doc[pos : pos + 1]
        if sep == "}":
            return None
        if sep != ",":
            raise ValueError(f"expected ',' or '}}' at character {pos}")
        pos = _skip_space(doc, pos + 1)
