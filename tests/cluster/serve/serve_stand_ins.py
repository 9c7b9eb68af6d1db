"""Stand-ins for what only a running Ray Serve provides, so that the ingress and replica classes
run their own code in this process: Serve's controller (`serve.get_app_handle`,
`serve.status`) and a `DeploymentHandle` with its `DeploymentResponse`.

Behind each handle is a real object (a `ModelServer` replica built by the folder's
`conftest.py`); the handle only carries the call as Serve would: started at ``.remote()``,
awaited for its result, cancellable, and a failure in the replica's method raised as a
``RayTaskError`` of its cause. On a real Serve: tests/cluster/test_serve*.py.
"""

from __future__ import annotations

import asyncio
import inspect
import traceback
from types import SimpleNamespace

import ray
from ray.serve.exceptions import RayServeException
from ray.serve.schema import ApplicationStatus


class Response:
    """A `DeploymentResponse`: the call runs from `.remote()` on; await it for its result."""

    def __init__(self, target, method: str, args, kwargs, *, delay_s: float,
                 broken: Exception | None) -> None:
        self.cancelled = False
        self._task = asyncio.get_running_loop().create_task(
            self._run(target, method, args, kwargs, delay_s, broken))

    @staticmethod
    async def _run(target, method, args, kwargs, delay_s, broken):
        if delay_s:
            await asyncio.sleep(delay_s)
        if broken is not None:
            raise broken  # the replica cannot be reached (gone, restarting)
        try:
            result = getattr(target, method)(*args, **kwargs)
            if inspect.isawaitable(result):
                result = await result
        except Exception as exc:
            # What Serve raises for an exception in the replica's own method.
            raise ray.exceptions.RayTaskError(
                method, traceback.format_exc(), exc).as_instanceof_cause() from exc
        return result

    def __await__(self):
        return self._task.__await__()

    def cancel(self) -> None:
        self.cancelled = True
        self._task.cancel()


class _Method:
    def __init__(self, handle: Handle, name: str) -> None:
        self._handle, self._name = handle, name

    def remote(self, *args, **kwargs) -> Response:
        h = self._handle
        h.calls.append((self._name, args, kwargs))
        response = Response(h.target, self._name, args, kwargs, delay_s=h.delay_s,
                            broken=h.broken)
        h.responses.append(response)
        return response


class Handle:
    """A `DeploymentHandle` on `target`: ``handle.method.remote(...)`` calls
    ``target.method(...)``.

    Args:
        target: the replica object the calls reach.
        delay_s: how long each call waits before it reaches `target` (default 0).
        broken: raised by every call instead of reaching `target` (default None).
    """

    def __init__(self, target, *, delay_s: float = 0.0, broken: Exception | None = None):
        self.target, self.delay_s, self.broken = target, delay_s, broken
        self.calls: list[tuple[str, tuple, dict]] = []
        self.responses: list[Response] = []

    def __getattr__(self, name: str) -> _Method:
        if name.startswith("_"):
            raise AttributeError(name)
        return _Method(self, name)


class Controller:
    """Serve's controller as the ingress and replicas ask it: application handles and status.

    `apps` maps an application name to its `Handle`; `statuses` its status (RUNNING unless
    set). `failure`, when set, is raised by every question (a controller that does not answer).
    """

    def __init__(self) -> None:
        self.apps: dict[str, Handle] = {}
        self.statuses: dict[str, str] = {}
        self.failure: Exception | None = None
        self.handle_lookups: list[str] = []

    def get_app_handle(self, name: str) -> Handle:
        self.handle_lookups.append(name)
        if self.failure is not None:
            raise self.failure
        if name not in self.apps:
            raise RayServeException(f"Application '{name}' does not exist.")
        return self.apps[name]

    def status(self):
        if self.failure is not None:
            raise self.failure
        names = set(self.apps) | set(self.statuses)
        return SimpleNamespace(applications={
            n: SimpleNamespace(status=ApplicationStatus(self.statuses.get(n, "RUNNING")))
            for n in sorted(names)})
