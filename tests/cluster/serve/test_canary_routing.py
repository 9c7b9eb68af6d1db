"""Canary routing in a primary replica (`cluster.serve._canary_routing`) on its own: finding the
canary off the request path, keeping or dropping it when the look-up or a call fails,
retiring it while calls drain, shadow calls in the background, and the split decision. The
canary is a real `ModelServer` replica behind a stand-in handle (serve_stand_ins.py), Serve's
controller is stood in for (conftest.py). On a real Serve: tests/cluster/test_serve_canary.py
(split, shadow, a canary deleted behind the ingress's back, promotion under load)."""

from __future__ import annotations

import asyncio
import json

import pytest
from serve_helpers import MODEL, columns, infer_request
from serve_stand_ins import Handle, Response

from cluster.serve import _canary_routing
from cluster.serve._canary_routing import CanaryRouting, _ask, _Canary
from cluster.serve._routing import canary_app_name, to_canary

APP = canary_app_name(MODEL)


def _router() -> CanaryRouting:
    router = CanaryRouting()
    router._init_canaries()
    return router


def _body(client_id: str | None = None) -> bytes:
    return json.dumps(infer_request(columns(1, 0), client_id)).encode()


@pytest.fixture
def canary(make_server, controller) -> Handle:
    """A split canary (share 0.5) of MODEL, version 2, known to the controller."""
    handle = Handle(make_server("2", canary={"mode": "split", "share": 0.5}))
    controller.apps[APP] = handle
    return handle


def test_ask_returns_the_answer_or_cancels_the_call_on_timeout():
    async def run():
        # Calls whose "replica" is asyncio.sleep: one answers at once, one after 10 s.
        fast = await _ask(Response(asyncio, "sleep", (0, "done"), {}, delay_s=0, broken=None),
                          1.0)
        slow = Response(asyncio, "sleep", (10,), {}, delay_s=0, broken=None)
        with pytest.raises(asyncio.TimeoutError):
            await _ask(slow, 0.01)
        return fast, slow

    fast, slow = asyncio.run(run())
    assert fast == "done" and slow.cancelled


def test_the_first_request_waits_for_the_look_up_the_next_ones_never(canary, controller,
                                                                     monkeypatch):
    router = _router()

    async def run():
        # Two requests at once share one look-up.
        first = await asyncio.gather(router._first_canary(MODEL), router._first_canary(MODEL))
        cached = router._canary(MODEL)  # fresh: no new look-up
        lookups = len(controller.handle_lookups)
        monkeypatch.setattr(_canary_routing, "RECHECK_S", 0.0)
        stale = router._canary(MODEL)  # answers at once from the cache, looks up behind
        assert MODEL in router._lookups
        await router._lookups[MODEL]
        return first, cached, lookups, stale

    first, cached, lookups, stale = asyncio.run(run())
    assert first[0] is first[1] and first[0].public() == {
        "version": "2", "mode": "split", "share": 0.5}
    assert cached is first[0] and stale is first[0]
    assert lookups == 1 and len(controller.handle_lookups) == 2
    # The handle learnt first is kept: its router already knows the replicas.
    assert router._canaries[MODEL][0].handle is canary


def test_no_canary_app_means_none_and_a_failed_look_up_keeps_what_was_known(
        canary, controller, monkeypatch):
    router = _router()
    monkeypatch.setattr(_canary_routing, "_LOOKUP_TIMEOUT_S", 0.3)

    async def run():
        known = await router._first_canary(MODEL)
        controller.failure = ConnectionError("controller restarting")
        after_controller = await router._look_up(MODEL, fresh=True)
        controller.failure = None
        canary.delay_s = 60.0  # its replica is being replaced: info does not answer
        after_silence = await router._look_up(MODEL, fresh=True)
        canary.delay_s = 0.0
        del controller.apps[APP]
        gone = await router._look_up(MODEL, fresh=True)
        return known, after_controller, after_silence, gone

    known, after_controller, after_silence, gone = asyncio.run(run())
    assert known is not None
    assert after_controller is known and after_silence is known
    assert gone is None and router._canary(MODEL) is None
    assert any(r.cancelled for r in canary.responses)  # the info call that hung


def test_a_retired_canary_is_not_routed_to_nor_stored_by_a_look_up_in_flight(canary):
    router = _router()
    canary.delay_s = 0.05

    async def run():
        in_flight = router._look_up(MODEL)
        await asyncio.sleep(0)
        assert await router.retire_canary(MODEL) == 0
        stored = await in_flight
        retired = (router._canary(MODEL), await router._first_canary(MODEL),
                   await router.canary_info(MODEL))
        adopted = await router.canary_info(MODEL, adopt=True)
        return stored, retired, adopted

    stored, retired, adopted = asyncio.run(run())
    assert stored is None and retired == (None, None, None)
    assert adopted == {"version": "2", "mode": "split", "share": 0.5}


def test_forget_drops_the_canary_until_the_next_look_up(canary, controller):
    router = _router()

    async def run():
        await router._first_canary(MODEL)
        await router.forget_canary(MODEL)
        assert MODEL not in router._canaries
        return await router._first_canary(MODEL)

    assert asyncio.run(run()).version == "2"
    assert len(controller.handle_lookups) == 2


def test_a_canary_answer_counts_in_flight_and_a_failure_hands_back_to_the_primary(canary):
    router = _router()

    async def run():
        found = await router._first_canary(MODEL)
        canary.delay_s = 0.05
        call = asyncio.ensure_future(router._canary_answer(found, MODEL, _body(), request_id="a"))
        await asyncio.sleep(0)  # the call starts; it cannot finish before this resumes
        in_flight = await router.retire_canary(MODEL)
        answer = await call
        await router.forget_canary(MODEL)
        canary.delay_s = 0.0
        found = await router._first_canary(MODEL)
        # An error raised in the canary's own method (here: code older than the primary's,
        # without an argument it is sent) reaches Serve's caller as a RayTaskError: the
        # replica is there, so the canary stays routed to.
        failed_in_replica = await router._canary_answer(found, MODEL, _body(), request_id="b",
                                                        priority=1)
        kept = router._canary(MODEL)
        canary.broken = ConnectionError("replica gone")
        unreachable = await router._canary_answer(found, MODEL, _body(), request_id="c")
        return in_flight, answer, failed_in_replica, kept, unreachable, found

    in_flight, answer, failed_in_replica, kept, unreachable, found = asyncio.run(run())
    assert in_flight == 1
    assert answer.status == 200 and answer.headers["x-model-version"] == "2"
    assert failed_in_replica is None and kept is found
    # An unreachable canary is benched until a look-up finds it again.
    assert unreachable is None and router._canaries[MODEL][0] is None
    assert router._canary_calls == {}


def test_shadow_calls_run_in_the_background_and_too_many_are_skipped(canary, monkeypatch):
    router = _router()
    monkeypatch.setattr(_canary_routing, "_MAX_SHADOWS", 2)

    async def run():
        found = await router._first_canary(MODEL)
        canary.delay_s = 0.05
        for i in range(5):
            router._shadow(found, MODEL, _body(), request_id=f"s{i}")
        during = (await router.shadow_stats(), await router.retire_canary(MODEL))
        await asyncio.gather(*router._shadows)
        return during, await router.shadow_stats()

    (stats, in_flight), after = asyncio.run(run())
    assert stats == {"in_flight": 2, "skipped": 3} and in_flight == 2
    assert after == {"in_flight": 0, "skipped": 3} and router._canary_calls == {}
    sent = [kw for name, _, kw in canary.calls if name == "infer"]
    assert [kw["request_id"] for kw in sent] == ["s0", "s1"]
    assert all(kw["shadow"] for kw in sent)


SPLITS = [
    ("client id in", _body("client-1"), None, "fallback", 0.5, to_canary("client-1", 0.5)),
    ("no id: the fallback", _body(), None, "fallback", 0.5, to_canary("fallback", 0.5)),
    ("share 1", _body("client-1"), None, "x", 1.0, True),
    ("share 0", _body("client-1"), None, "x", 0.0, False),
    ("shadow has no share", _body("client-1"), None, "x", None, False),
    ("bad body: the primary says 400", b'{"id": 5}', None, "x", 1.0, False),
    ("header outside the body", _body("c"), 10**6, "x", 1.0, False),
]


@pytest.mark.parametrize(("case", "body", "header_length", "fallback", "share", "expected"),
                         SPLITS, ids=[s[0] for s in SPLITS])
@pytest.mark.parametrize("inline", [True, False], ids=["inline", "in-a-thread"])
def test_splits_to_canary(monkeypatch, case, body, header_length, fallback, share, expected,
                          inline):
    if not inline:
        monkeypatch.setattr(_canary_routing, "_INLINE_PARSE_BYTES", 0)
    router = _router()
    got = asyncio.run(router._splits_to_canary(body, header_length, fallback, share))
    assert got is expected


def test_canary_public_record():
    assert _Canary(None, "3", "shadow", None).public() == {
        "version": "3", "mode": "shadow", "share": None}
