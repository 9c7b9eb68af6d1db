"""The door every request passes first (`cluster.serve._door`), on a real token store and real
Starlette requests: the bearer token and its scope, then the body's size by its header or
while it streams. No Ray."""

from __future__ import annotations

import asyncio

import pytest
from serve_helpers import ADMIN_TOKEN, TOKEN, VIEWER_TOKEN, token_store
from starlette.requests import Request

from cluster.serve._door import BodyTooLarge, Door

LIMIT = 16


@pytest.fixture
def door(tmp_path):
    return Door({"db_url": token_store(tmp_path), "max_body_bytes": LIMIT,
                 "token_refresh_s": 60})


def _denied(door, authorization, scope, headers=None):
    async def ask():
        reply = door.denied(authorization, scope, headers)
        door._refresher.cancel()
        return reply

    return asyncio.run(ask())


def test_a_token_passes_only_with_its_scope(door):
    assert door.loaded
    assert _denied(door, f"Bearer {TOKEN}", "feedback") is None
    assert _denied(door, f"Bearer {ADMIN_TOKEN}", "admin") is None
    missing = _denied(door, None, "infer", {"x-request-id": "r1"})
    assert missing.status == 401 and "missing bearer token" in missing.body["error"]
    assert missing.headers == {"x-request-id": "r1", "WWW-Authenticate": "Bearer"}
    assert _denied(door, "Bearer nope", "infer").status == 401
    lacking = _denied(door, f"Bearer {VIEWER_TOKEN}", "feedback")
    assert lacking.status == 403 and "lacks scope 'feedback'" in lacking.body["error"]
    assert lacking.headers is None  # no WWW-Authenticate: the token was fine, its scope not


def _request(chunks: list[bytes], length: int | None) -> Request:
    headers = [(b"content-length", str(length).encode())] if length is not None else []
    messages = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
                for i, c in enumerate(chunks)]

    async def receive():
        return messages.pop(0)

    return Request({"type": "http", "method": "POST", "headers": headers}, receive)


def _read(door, chunks, length):
    return asyncio.run(door.read_body(_request(chunks, length)))


def test_a_body_is_refused_by_its_header_or_while_it_streams(door):
    assert _read(door, [b"0123", b"4567"], 8) == b"01234567"
    with pytest.raises(BodyTooLarge):
        _read(door, [b"x"], LIMIT + 1)  # refused before a byte is read
    with pytest.raises(BodyTooLarge):
        _read(door, [b"x" * 10, b"y" * 10], None)  # no header: counted while streaming
    with pytest.raises(BodyTooLarge):
        _read(door, [b"x" * 10, b"y" * 10], 4)  # a header that lies
    reply = door.too_large()
    assert reply.status == 413 and f"limit of {LIMIT} bytes" in reply.body["error"]


def test_a_door_without_its_store_refuses_with_503_until_it_loads(tmp_path):
    door = Door({"db_url": f"sqlite:///{tmp_path / 'absent' / 'store.db'}",
                 "max_body_bytes": LIMIT, "token_refresh_s": 60})
    assert not door.loaded
    assert _denied(door, f"Bearer {TOKEN}", "infer").status == 503
