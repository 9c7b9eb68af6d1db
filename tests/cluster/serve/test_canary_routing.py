"""Canary routing in a primary (`cluster.serve._canary_routing`), against a canary deployed on
a real Serve: look-up by pull, the split rule, shadow copies, retirement, a canary gone.

The primary under test is a `ModelServer` built in this process (conftest's `make_server`),
so its routing state can be read and its limits turned down; the canary it finds, asks and
calls is the live Serve's application ``canary-credit``, through real handles. The deployed
primary's own routing (`route_infer`) is driven through its handle. Runs in file order: the
last test removes the canary behind the in-process primary's back.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from serve_helpers import DEPLOYMENT, MODEL, columns, infer_request, logged_rows, pending_dir

from cluster.serve import _canary_routing, deploy_canary, remove_canary
from cluster.serve._ingress import model_app_name
from cluster.serve._routing import canary_app_name, to_canary

pytestmark = pytest.mark.slow

SHARE = 0.5
EXPECTED = {"version": "2", "mode": "split", "share": SHARE}


@pytest.fixture(scope="module")
def canary(live):
    """Version 2 as MODEL's split canary (SHARE) on the live Serve; removed afterwards."""
    cfg = live["cfg"]
    deploy_canary(cfg, model=MODEL, version="2", bundle_path=live["paths"]["2"],
                  deployment=DEPLOYMENT, mode="split", share=SHARE)
    yield live
    remove_canary(cfg, MODEL)


def _body(client_id: str | None = None, seed: int = 0) -> bytes:
    return json.dumps(infer_request(columns(1, seed), client_id)).encode()


def _canary_rows(live, request_id: str) -> list[dict]:
    """The rows the canary replica logged under `request_id` (its journal published first)."""
    from ray import serve

    handle = serve.get_app_handle(canary_app_name(MODEL))
    assert handle.drain.remote().result(timeout_s=60) == 0
    rows = logged_rows(pending_dir(live["cfg"]), ["request_id", "version", "shadow"])
    return [r for r in rows if r["request_id"] == request_id]


def test_a_primary_learns_its_canary_from_the_canarys_replica(canary, make_server, monkeypatch):
    monkeypatch.setattr(_canary_routing, "RECHECK_S", 60.0)
    primary = make_server()

    async def run():
        first = await primary._first_canary(MODEL)  # waits for the first look-up
        again = primary._canary(MODEL)  # then answers from what it learnt
        return first, again, dict(primary._lookups)

    first, again, lookups = asyncio.run(run())
    assert first.public() == EXPECTED
    assert again is first and lookups == {}


def test_a_stale_canary_is_routed_to_while_a_look_up_runs_in_the_background(
        canary, make_server, monkeypatch):
    monkeypatch.setattr(_canary_routing, "RECHECK_S", 0.0)
    primary = make_server()

    async def run():
        first = await primary._first_canary(MODEL)
        stale = primary._canary(MODEL)  # no wait: the request goes on with what is known
        fresh = await primary._lookups[MODEL]
        await asyncio.sleep(0)  # the look-up's done-callback
        return first, stale, fresh, dict(primary._lookups)

    first, stale, fresh, lookups = asyncio.run(run())
    assert stale is first
    # The old handle is kept: its router already knows the canary's replicas.
    assert fresh == first and fresh.handle is first.handle
    assert lookups == {}


def test_a_model_without_a_canary_application_has_none(live, make_server):
    primary = make_server()

    async def run():
        return (await primary._first_canary("other"), await primary.canary_info("other"),
                primary._canaries["other"][0])

    assert asyncio.run(run()) == (None, None, None)


def test_retiring_adopting_and_forgetting_a_canary(canary, make_server):
    primary = make_server()

    async def run():
        seen = [await primary.canary_info(MODEL), await primary.retire_canary(MODEL)]
        # Retired: not routed to, not looked up, not even when asked.
        seen += [primary._canary(MODEL), await primary._first_canary(MODEL),
                 await primary.canary_info(MODEL), dict(primary._lookups)]
        seen.append(await primary.canary_info(MODEL, adopt=True))
        await primary.forget_canary(MODEL)
        seen.append(MODEL in primary._canaries)
        seen.append((await primary._first_canary(MODEL)).public())
        return seen

    assert asyncio.run(run()) == [EXPECTED, 0, None, None, None, {}, EXPECTED, False, EXPECTED]


@pytest.mark.parametrize("change", ["retire_canary", "forget_canary"])
def test_a_look_up_begun_before_a_change_does_not_store_what_it_saw(
        canary, make_server, change):
    primary = make_server()

    async def run():
        look_up = primary._look_up(MODEL)
        await asyncio.sleep(0)  # begun: it waits for Serve's controller in a thread
        await getattr(primary, change)(MODEL)
        return await look_up, MODEL in primary._canaries

    assert asyncio.run(run()) == (None, False)


def test_the_split_rule_reads_the_clients_id_or_the_request_id(make_server, monkeypatch):
    primary = make_server()
    ids = [f"client-{i}" for i in range(24)]

    async def run(share=SHARE):
        by_client = [await primary._splits_to_canary(_body(i), None, "made-here", share)
                     for i in ids]
        by_ours = [await primary._splits_to_canary(_body(), None, i, share) for i in ids]
        header = _body("in-the-header")
        binary = await primary._splits_to_canary(header + b"\0" * 16, len(header), "x", share)
        broken = await primary._splits_to_canary(b'{"id": ', None, "x", share)
        return by_client, by_ours, binary, broken

    rule = [to_canary(i, SHARE) for i in ids]
    assert True in rule and False in rule
    assert asyncio.run(run()) == (rule, rule, to_canary("in-the-header", SHARE), False)
    # A large body is read in a worker thread: the same answers.
    monkeypatch.setattr(_canary_routing, "_INLINE_PARSE_BYTES", 0)
    assert asyncio.run(run()) == (rule, rule, to_canary("in-the-header", SHARE), False)
    # A shadow canary has no share: nothing is split to it.
    assert asyncio.run(run(None)) == ([False] * 24, [False] * 24, False, False)


def test_the_canary_answers_and_logs_its_share(canary, make_server):
    primary = make_server()

    async def run():
        found = await primary._first_canary(MODEL)
        call = asyncio.get_running_loop().create_task(
            primary._canary_answer(found, MODEL, _body("mine"), request_id="rid-canary-1"))
        await asyncio.sleep(0)  # sent
        in_flight = await primary.retire_canary(MODEL)
        reply = await call  # retiring lets a call already sent finish
        return in_flight, reply, await primary.retire_canary(MODEL)

    in_flight, reply, left = asyncio.run(run())
    assert (in_flight, left) == (1, 0)
    assert reply.status == 200
    assert reply.body["model_version"] == "2" and reply.body["id"] == "mine"
    assert reply.headers["x-appliance-request-id"] == "rid-canary-1"
    assert _canary_rows(canary, "rid-canary-1") == [
        {"request_id": "rid-canary-1", "version": "2", "shadow": False}]


def test_a_call_that_fails_in_the_canary_is_answered_by_the_primary_and_keeps_it_routed(
        canary, make_server):
    primary = make_server()

    async def run():
        found = await primary._first_canary(MODEL)
        # The canary's own method raises (an argument it does not take): a RayTaskError.
        reply = await primary._canary_answer(found, MODEL, _body(), request_id="rid-bad",
                                             unexpected=True)
        return found, reply, primary._canary(MODEL), dict(primary._canary_calls)

    found, reply, after, calls = asyncio.run(run())
    assert reply is None  # the primary answers instead
    assert after is found and calls == {}


def test_a_shadow_copy_is_scored_and_logged_by_the_canary_in_the_background(
        canary, make_server):
    primary = make_server()

    async def run():
        found = await primary._first_canary(MODEL)
        primary._shadow(found, MODEL, _body("shadowed"), request_id="rid-shadow-1")
        during = await primary.shadow_stats()
        await asyncio.gather(*primary._shadows)
        await asyncio.sleep(0)  # the tasks' done-callbacks
        return during, await primary.shadow_stats(), dict(primary._canary_calls)

    during, after, calls = asyncio.run(run())
    assert during == {"in_flight": 1, "skipped": 0}
    assert after == {"in_flight": 0, "skipped": 0} and calls == {}
    assert _canary_rows(canary, "rid-shadow-1") == [
        {"request_id": "rid-shadow-1", "version": "2", "shadow": True}]


def test_shadow_copies_past_the_limit_are_skipped_and_counted(canary, make_server, monkeypatch):
    monkeypatch.setattr(_canary_routing, "_MAX_SHADOWS", 0)
    primary = make_server()

    async def run():
        found = await primary._first_canary(MODEL)
        for i in range(3):
            primary._shadow(found, MODEL, _body(), request_id=f"rid-skipped-{i}")
        return await primary.shadow_stats(), dict(primary._canary_calls)

    assert asyncio.run(run()) == ({"in_flight": 0, "skipped": 3}, {})


def test_the_deployed_primary_routes_by_id_and_by_version(canary):
    from ray import serve

    primary = serve.get_app_handle(model_app_name(MODEL))

    def version(body: bytes, request_id: str, **kwargs) -> str:
        reply = primary.route_infer.remote(body, request_id=request_id, **kwargs).result(
            timeout_s=60)
        assert reply.status == 200, reply.body
        return reply.body["model_version"]

    ids = [f"route-{i}" for i in range(16)]
    # The client's id decides; without one, the id the appliance made does.
    assert [version(_body(i), "made") for i in ids] == [
        "2" if to_canary(i, SHARE) else "1" for i in ids]
    assert [version(_body(), i) for i in ids] == [
        "2" if to_canary(i, SHARE) else "1" for i in ids]
    # A version named in the URL is answered by that version, whatever the id.
    assert {version(_body(i), "pinned", version="2") for i in ids} == {"2"}
    assert {version(_body(i), "pinned", version="1") for i in ids} == {"1"}


def test_a_canary_removed_behind_the_primarys_back_is_benched_then_gone(
        canary, make_server, monkeypatch):
    monkeypatch.setattr(_canary_routing, "RECHECK_S", 60.0)
    monkeypatch.setattr(_canary_routing, "_CANARY_TIMEOUT_S", 5.0)
    primary = make_server()

    async def run():
        found = await primary._first_canary(MODEL)
        # The control plane removes it (another primary replica, the deployed one, is told).
        assert await asyncio.to_thread(remove_canary, canary["cfg"], MODEL)
        reply = await primary._canary_answer(found, MODEL, _body(), request_id="rid-gone")
        benched = primary._canary(MODEL)
        return reply, benched, await primary._look_up(MODEL, fresh=True)

    # The call fails (no such replica any more): the primary answers, and stops routing there.
    assert asyncio.run(run()) == (None, None, None)
