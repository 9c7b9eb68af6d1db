"""Canary routing in a model's primary replica: finding its challenger, splitting, shadowing.

A mixin of `cluster.serve._model_server.ModelServer`, kept apart so each module holds one
concept. The primary finds its model's canary (``canary-{name}``) by pull: it asks the canary
replica's ``info()`` for its version, mode and share, in the background once the cached answer
is older than ``RECHECK_S``, so no request waits on that look-up (only the first request waits
for the first one). A split canary that fails hands the request back to the primary; shadow
calls run in background tasks, at most ``_MAX_SHADOWS`` at once. The control plane removes a
canary by retiring it here first and deleting it once no call to it is in flight; with more
than one primary replica, the others stop routing to it at their next look-up, and a call to
a canary already gone falls back to the primary, so no request fails on the way.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import NamedTuple

import ray
from ray import serve
from ray.serve.handle import DeploymentHandle

from cluster.serve._routing import canary_app_name, request_id_of, to_canary

logger = logging.getLogger("ray.serve")

# How long a cached handle is trusted before the ingress re-checks that its app still exists.
RECHECK_S = 1.0
CALL_TIMEOUT_S = 30.0
# A split request waits this long for the canary, then the primary answers it.
_CANARY_TIMEOUT_S = CALL_TIMEOUT_S / 2
# Looking up a canary asks its replica; one that is restarting must not stall the look-up.
_LOOKUP_TIMEOUT_S = 2.0
# Shadow calls in flight at once; more are skipped (and counted) rather than queued.
_MAX_SHADOWS = 64
# Bodies larger than this are scanned for their id off the event loop.
_INLINE_PARSE_BYTES = 256 * 1024


async def _result(response):
    # wait_for needs a coroutine; a DeploymentResponse is only awaitable.
    return await response


async def _ask(response, timeout_s: float):
    """Await a DeploymentResponse for at most `timeout_s`, cancelling it on timeout."""
    try:
        return await asyncio.wait_for(_result(response), timeout_s)
    except asyncio.TimeoutError:
        response.cancel()
        raise


class _Canary(NamedTuple):
    """A model's canary as its primary routes to it."""

    handle: DeploymentHandle
    version: str
    mode: str
    share: float | None

    def public(self) -> dict:
        return {"version": self.version, "mode": self.mode, "share": self.share}


class CanaryRouting:
    """The ingress's canary state and routing (see the module docstring)."""

    def _init_canaries(self) -> None:
        # model -> (its canary or None, when that was learnt).
        self._canaries: dict[str, tuple[_Canary | None, float]] = {}
        self._lookups: dict[str, asyncio.Task] = {}
        # Bumped whenever the control plane changes a model's canary, so that a look-up
        # started before the change cannot store what it saw.
        self._generation: dict[str, int] = {}
        # Models whose canary is being removed: not routed to, not looked up.
        self._retired: set[str] = set()
        # Calls to each model's canary still in flight (split and shadow), for draining.
        self._canary_calls: dict[str, int] = {}
        # Strong references: a task the loop alone holds may be garbage-collected mid-flight.
        self._shadows: set[asyncio.Task] = set()
        self._shadows_skipped = 0

    # Canary discovery: pull, like the model apps, but never on a request's critical path.

    def _canary(self, model: str) -> _Canary | None:
        """The canary to route to, as last learnt; starts a look-up when that is stale."""
        if model in self._retired:
            return None
        cached = self._canaries.get(model)
        if cached is None or time.monotonic() - cached[1] >= RECHECK_S:
            self._look_up(model)
        return cached[0] if cached else None

    async def _first_canary(self, model: str) -> _Canary | None:
        """Like `_canary`, but waits for the answer when this model was never looked up."""
        if model not in self._retired and model not in self._canaries:
            # Shielded: the look-up is shared, a cancelled request must not cancel it.
            return await asyncio.shield(self._look_up(model))
        return self._canary(model)

    def _look_up(self, model: str, *, fresh: bool = False) -> asyncio.Task:
        task = self._lookups.get(model)
        if task is None or fresh:
            task = asyncio.get_running_loop().create_task(self._look_up_canary(model))
            self._lookups[model] = task

            def done(t: asyncio.Task) -> None:
                if self._lookups.get(model) is t:
                    del self._lookups[model]

            task.add_done_callback(done)
        return task

    async def _look_up_canary(self, model: str) -> _Canary | None:
        generation = self._generation.get(model, 0)
        cached = self._canaries.get(model)
        previous = cached[0] if cached else None
        try:
            # get_app_handle asks the controller (a blocking ray.get): keep it off the loop.
            fresh = await asyncio.to_thread(serve.get_app_handle, canary_app_name(model))
        except serve.exceptions.RayServeException:
            canary = None  # no such application
        except Exception as exc:
            logger.warning("could not look up model %r's canary: %r", model, exc)
            canary = previous
        else:
            # Keep the old handle: its router already knows the replicas.
            handle = previous.handle if previous else fresh
            try:
                info = await _ask(handle.info.remote(), _LOOKUP_TIMEOUT_S)
                canary = _Canary(handle, info["version"], info["mode"], info["share"])
            except Exception as exc:
                # Most likely a replica being replaced: keep routing as before until it answers.
                logger.info("canary of model %r did not say what it serves: %r", model, exc)
                canary = previous
        if model in self._retired or self._generation.get(model, 0) != generation:
            return None
        self._canaries[model] = (canary, time.monotonic())
        return canary

    def _bench(self, model: str, canary: _Canary) -> None:
        """Stop routing to a canary that failed until the next look-up finds it again."""
        cached = self._canaries.get(model)
        if cached and cached[0] is canary:
            self._canaries[model] = (None, cached[1])

    def _canary_started(self, model: str) -> None:
        self._canary_calls[model] = self._canary_calls.get(model, 0) + 1

    def _canary_done(self, model: str) -> None:
        left = self._canary_calls.get(model, 0) - 1
        if left > 0:
            self._canary_calls[model] = left
        else:
            self._canary_calls.pop(model, None)

    async def _canary_answer(self, canary: _Canary, model: str, *args, **kwargs):
        """The canary's answer, or None when it failed and the primary must answer instead."""
        self._canary_started(model)
        try:
            reply = await _ask(canary.handle.infer.remote(*args, **kwargs), _CANARY_TIMEOUT_S)
        except Exception as exc:
            # Deleted a moment ago, restarting, or broken: never the client's problem.
            logger.warning(
                "canary %r of model %r failed (%s: %s); the primary answers",
                canary.version,
                model,
                type(exc).__name__,
                exc,
            )
            if not isinstance(exc, ray.exceptions.RayTaskError):
                self._bench(model, canary)
            return None
        finally:
            self._canary_done(model)
        return reply

    def _shadow(self, canary: _Canary, model: str, *args, **kwargs) -> None:
        """Send the request to the canary too, in a background task nobody waits for."""
        if len(self._shadows) >= _MAX_SHADOWS:
            self._shadows_skipped += 1
            if self._shadows_skipped & (self._shadows_skipped - 1) == 0:  # 1, 2, 4, 8, ...
                logger.warning(
                    "%d shadow call(s) skipped: %d already in flight",
                    self._shadows_skipped,
                    len(self._shadows),
                )
            return
        try:
            response = canary.handle.infer.remote(*args, shadow=True, **kwargs)
        except Exception:
            logger.warning("shadow call to model %r's canary failed", model, exc_info=True)
            return
        self._canary_started(model)
        task = asyncio.get_running_loop().create_task(self._await_shadow(response, model))
        self._shadows.add(task)
        task.add_done_callback(self._shadows.discard)

    async def _await_shadow(self, response, model: str) -> None:
        # Awaited here so that its errors are seen and logged, and a hung call is cancelled.
        try:
            reply = await _ask(response, CALL_TIMEOUT_S)
            if reply.status != 200:
                logger.info("shadow call to model %r's canary answered %d", model, reply.status)
        except Exception:
            logger.warning("shadow call to model %r's canary failed", model, exc_info=True)
        finally:
            self._canary_done(model)

    async def _splits_to_canary(
        self, body: bytes, header_length: int | None, fallback_id: str, share: float | None
    ) -> bool:
        try:
            if len(body) > _INLINE_PARSE_BYTES:
                rid = await asyncio.to_thread(request_id_of, body, header_length)
            else:
                rid = request_id_of(body, header_length)
        except (ValueError, RecursionError):
            return False  # the primary answers with the proper 400
        return share is not None and to_canary(rid or fallback_id, share)

    async def canary_info(self, model: str, adopt: bool = False) -> dict | None:
        """Look `model`'s canary up now; its version, mode and share as routed, or None.

        Args:
            model: the model name.
            adopt: route to the canary again if `retire_canary` stopped that (default False).
        """
        if adopt:
            self._retired.discard(model)
        elif model in self._retired:
            return None
        self._generation[model] = self._generation.get(model, 0) + 1
        canary = await self._look_up(model, fresh=True)
        return canary.public() if canary else None

    async def retire_canary(self, model: str) -> int:
        """Stop routing to `model`'s canary; return how many calls to it are still in flight."""
        self._retired.add(model)
        self._generation[model] = self._generation.get(model, 0) + 1
        self._canaries.pop(model, None)
        return self._canary_calls.get(model, 0)

    async def forget_canary(self, model: str) -> None:
        """Forget `model`'s canary (after its app was deleted); look it up anew next time."""
        self._retired.discard(model)
        self._generation[model] = self._generation.get(model, 0) + 1
        self._canaries.pop(model, None)

    async def shadow_stats(self) -> dict[str, int]:
        """Shadow calls in flight now, and skipped so far because too many were."""
        return {"in_flight": len(self._shadows), "skipped": self._shadows_skipped}
