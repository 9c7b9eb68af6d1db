"""Operations: the library functions that change something on behalf of someone.

An operation (promote, approve, deploy, ack an alert, issue a token...) is one function that
takes the acting principal, checks the permission, mutates and audits. Every face (CLI,
console, HTTP) calls one of them per action and only translates input and output.

`@operation("name")` marks such a function, so that "which operations did this action run"
is a fact one can observe (`observed`) rather than a convention: the CLI's test walks every
mutating command and asserts it ran exactly one. An operation that calls another (a rollback
removes a canary) counts once: only the outermost call is an action; the inner ones are its
steps.

The bookkeeping is two context variables read and set per call: no lock, no I/O.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

# Every operation by name (its function, decorated), in the order their modules were imported.
OPERATIONS: dict[str, Callable[..., Any]] = {}

# How deep in operations this context is: 0 outside any, so a call at 0 is an action.
_depth: ContextVar[int] = ContextVar("operation_depth", default=0)
# The lists `observed` blocks collect into (nested blocks each see every action).
_observers: ContextVar[tuple[list[str], ...]] = ContextVar("operation_observers", default=())


def operation(name: str) -> Callable[[F], F]:
    """Mark a function as the library operation `name` (one per action; names are unique).

    Args:
        name: the action, e.g. "approve" or "alerts.ack".

    Raises:
        ValueError: another function already holds `name`.
    """

    def mark(fn: F) -> F:
        if name in OPERATIONS:
            raise ValueError(f"operation {name!r} is defined twice: "
                             f"{OPERATIONS[name].__qualname__} and {fn.__qualname__}")

        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            if _depth.get() == 0:
                for seen in _observers.get():
                    seen.append(name)
            token = _depth.set(_depth.get() + 1)
            try:
                return fn(*args, **kwargs)
            finally:
                _depth.reset(token)

        run.operation = name  # type: ignore[attr-defined]
        OPERATIONS[name] = run
        return run  # type: ignore[return-value]

    return mark


def name_of(fn: Callable[..., Any]) -> str | None:
    """The operation `fn` is, or None when it is not one."""
    return getattr(fn, "operation", None)


@contextlib.contextmanager
def observed() -> Iterator[list[str]]:
    """Collect the names of the operations (actions, not their inner steps) run inside the
    block, in order, into the list it yields; entering one counts, even when it then
    refuses or fails."""
    seen: list[str] = []
    token = _observers.set((*_observers.get(), seen))
    try:
        yield seen
    finally:
        _observers.reset(token)
