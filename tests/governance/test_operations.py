"""Operations (`appliance.governance.operations`): `@operation` registers a library function
under its action's name, and `observed()` records which actions ran, counting an operation
called from inside another once (the outer one).

tests/cli/test_cli_operations.py uses this from the CLI side (every mutating command runs
exactly one operation); here: the decorator and the registry themselves, the bookkeeping
across refusals and nested blocks, and the names the library's modules register.
"""

from __future__ import annotations

import ast
import functools
import importlib
from pathlib import Path

import pytest

import appliance
from appliance.errors import ConflictError, PermissionDenied
from appliance.governance.operations import OPERATIONS, name_of, observed, operation

ROOT = Path(appliance.__file__).resolve().parents[1]
# The faces translate input and output; none of them may hold an operation of its own.
FACES = ("appliance/cli", "appliance/console")


@pytest.fixture
def define():
    """`define(name)(fn)`: `operation(name)(fn)`, unregistered again after the test."""
    names: list[str] = []

    def define_(name: str):
        names.append(name)
        return operation(name)

    yield define_
    for name in names:
        OPERATIONS.pop(name, None)


@functools.cache
def _declared() -> dict[str, tuple[str, str]]:
    """Every ``@operation("name")`` in the sources: name -> (module, function)."""
    found: dict[str, tuple[str, str]] = {}
    for path in sorted((ROOT / "appliance").rglob("*.py")) + sorted((ROOT / "cluster").rglob(
            "*.py")):
        text = path.read_text()
        if "@operation(" not in text:  # parse only the few that may declare one
            continue
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for node in ast.walk(ast.parse(text, filename=str(path))):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for deco in node.decorator_list:
                if (isinstance(deco, ast.Call) and isinstance(deco.func, ast.Name)
                        and deco.func.id == "operation"):
                    (arg,) = deco.args
                    assert isinstance(arg, ast.Constant), f"{module}.{node.name}: name a literal"
                    assert arg.value not in found, f"{arg.value!r} declared twice"
                    found[arg.value] = (module, node.name)
    return found


def test_the_decorated_function_keeps_its_identity_and_passes_through(define):
    @define("test.add")
    def add(a: int, b: int = 1, *, c: int = 0) -> int:
        """Sum them."""
        return a + b + c

    assert add(1) == 2 and add(1, 2, c=3) == 6
    assert add.__name__ == "add" and add.__doc__ == "Sum them."
    assert add.__wrapped__(5) == 6  # the undecorated function, for what needs it
    assert name_of(add) == "test.add" and name_of(add.__wrapped__) is None
    assert OPERATIONS["test.add"] is add
    assert name_of(len) is None


def test_a_name_is_taken_once_and_the_first_holder_keeps_it(define):
    @define("test.once")
    def first() -> str:
        return "first"

    def second() -> str:
        return "second"

    with pytest.raises(ValueError, match="'test.once' is defined twice") as caught:
        operation("test.once")(second)
    # Both culprits are named, so the clash is found without a search.
    assert "first" in str(caught.value) and "second" in str(caught.value)
    assert OPERATIONS["test.once"] is first and OPERATIONS["test.once"]() == "first"


def test_outside_any_observed_block_nothing_is_recorded(define):
    @define("test.quiet")
    def quiet() -> int:
        return 7

    assert quiet() == 7
    with observed() as ran:
        pass
    assert ran == []


def test_an_inner_operation_that_fails_is_still_one_step_of_its_action(define):
    @define("test.step")
    def step(ok: bool) -> None:
        if not ok:
            raise ConflictError("busy")

    @define("test.action")
    def action() -> str:
        step(True)
        try:
            step(False)
        except ConflictError:
            return "recovered"
        return "never"

    with observed() as ran:
        assert action() == "recovered"
        step(True)  # called on its own, it is an action
    assert ran == ["test.action", "test.step"]


def test_a_refusal_leaves_the_depth_as_it_was(define):
    # Were the depth not restored when an operation raises, every later call in this
    # context would count as a step of an action that ended long ago, and go unrecorded.
    @define("test.refuse")
    def refuse() -> None:
        raise PermissionDenied("viewer")

    @define("test.after")
    def after() -> int:
        return 1

    with observed() as ran:
        for _ in range(2):
            with pytest.raises(PermissionDenied):
                refuse()
        after()
    assert ran == ["test.refuse", "test.refuse", "test.after"]


def test_nested_blocks_each_see_what_ran_while_they_were_open(define):
    @define("test.one")
    def one() -> None:
        pass

    @define("test.two")
    def two() -> None:
        pass

    with observed() as outer:
        one()
        with observed() as inner:
            two()
        one()
    assert outer == ["test.one", "test.two", "test.one"]
    assert inner == ["test.two"]
    # Closed blocks stop collecting, also when the block itself raised.
    with pytest.raises(RuntimeError), observed() as broken:
        raise RuntimeError("boom")
    two()
    assert broken == [] and inner == ["test.two"]


def test_every_declared_operation_registers_under_its_name_when_its_module_is_imported():
    declared = _declared()
    # The actions of issue 12 and those added since: each face's command maps to one.
    assert {"init", "approve", "reject", "promote", "rollback", "deploy", "undeploy",
            "feedback.add", "alerts.ack", "alerts.resolve", "tokens.issue", "tokens.revoke",
            "users.add", "data.add", "policy.set", "audit.anchor"} <= set(declared)
    for name, (module, function) in declared.items():
        registered = getattr(importlib.import_module(module), function)
        assert OPERATIONS[name] is registered, name
        assert name_of(registered) == name
    # The registry is filled by importing those modules, and by nothing else (tests' own
    # names aside).
    assert {n for n in OPERATIONS if not n.startswith("test.")} == set(declared)


def test_no_face_defines_an_operation():
    faces = {name: where for name, where in _declared().items()
             if where[0].replace(".", "/").startswith(FACES)}
    assert not faces, f"operations belong in the library, not in a face: {faces}"
