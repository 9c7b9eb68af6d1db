"""Tests mirror sources: each module with logic has its test file, each test file names its module.

The rule (tests/README.md explains it with examples):

- `appliance/<sub>/<module>.py` is tested in `tests/<sub>/test_<module>.py`; a top-level
  `appliance/<module>.py` in `tests/test_<module>.py`. `cluster/` and `kernels/` keep their own
  name: `cluster/serve/_oip.py` is tested in `tests/cluster/serve/test_oip.py`. A private
  module's leading underscore is dropped.
- A module's tests may be split by aspect: `test_<module>_<aspect>.py` (`test_oip_fuzz.py`,
  `test_audit_tamper.py`, `test_drift_cli.py`). A file belongs to the longest module name it
  starts with, so `test_train_custom.py` is `train_custom.py`'s, not `train.py`'s.
- A file named after a subpackage, or after the package the folder mirrors, tests that package
  as a whole through its public API (`tests/cluster/test_serve_canary.py` drives `cluster.serve`
  on a real Serve; `tests/cli/test_cli_errors.py` every command).
- Cross-cutting files that belong to no single module are listed in `CROSS_CUTTING` below.

This is an AST walk over the sources; nothing is imported, so it takes milliseconds.
"""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
PACKAGES = ("appliance", "cluster", "kernels")

# Folders of sources that are not Python modules of the product: Alembic's revision scripts run
# through `alembic upgrade` (tests/store/test_migrations.py walks them all).
SOURCE_SKIP = {Path("appliance/store/migrations")}

# Package entry files are thin: `__init__` re-exports (its sorted `__all__` is checked by
# tests/test_appliance_exports.py and tests/kernels/test_kernels_exports.py) and `__main__`
# only calls the CLI.
THIN_FILES = {"__init__.py", "__main__.py"}

# Test folders that mirror no package: whole-product runs and the GPU-only suite.
EXEMPT_TEST_DIRS = {Path("tests/e2e"), Path("tests/gpu")}

# Test files that belong to no single module, on purpose. Each says what it covers.
CROSS_CUTTING = {
    # Every command's JSON document against its typed public record (golden files).
    "tests/cli/test_json_shapes.py",
    # Every --json option names its record, whose JSON schema matches its golden file.
    "tests/cli/test_json_schemas.py",
    # Every mutating command calls exactly one library operation.
    "tests/cli/test_cli_operations.py",
    # `appliance --help` in a fresh interpreter imports none of the heavy libraries.
    "tests/test_import_hygiene.py",
    # bench/gpu_check.py (a script, not a package module) in CPU mode.
    "tests/test_gpu_check.py",
    # The drift engine's device and low-memory paths across kernels/_numerical, _categorical,
    # _multivariate and _profile, compared with the plain host path.
    "tests/kernels/test_device_path.py",
    "tests/kernels/test_memory_paths.py",
    # This file.
    "tests/test_layout.py",
}

# Modules with logic that have no test file of their own yet: none. A module may be listed here
# only while its test file is being written; test_the_todo_list_only_shrinks fails once it exists.
TODO_MISSING_TESTS: set[str] = set()


def _mirror_dir(package_dir: Path) -> Path:
    """The tests folder for a source folder (relative to the repository root)."""
    parts = package_dir.parts
    if parts[0] == "appliance":
        parts = parts[1:]
    return Path("tests", *parts)


def _stem(name: str) -> str:
    return name.removesuffix(".py").lstrip("_")


def _has_logic(path: Path) -> bool:
    """A module with logic defines a function or a class; a table of constants has none."""
    tree = ast.parse(path.read_text(), filename=str(path))
    kinds = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    return any(isinstance(node, kinds) for node in ast.walk(tree))


def _source_dirs() -> list[Path]:
    found = []
    for package in PACKAGES:
        for init in sorted((ROOT / package).rglob("__init__.py")):
            rel = init.parent.relative_to(ROOT)
            if not any(rel.is_relative_to(skip) for skip in SOURCE_SKIP):
                found.append(rel)
    return found


def _names_by_test_dir() -> dict[Path, set[str]]:
    """For each tests folder: the module stems, subpackage names and own name it may test."""
    names: dict[Path, set[str]] = {}
    for source in _source_dirs():
        mine = names.setdefault(_mirror_dir(source), set())
        mine.add(source.name)
        for child in (ROOT / source).iterdir():
            if child.is_dir() and (child / "__init__.py").exists():
                mine.add(child.name)
            elif child.suffix == ".py" and child.name not in THIN_FILES:
                mine.add(_stem(child.name))
            elif child.suffix == ".c":
                # A compiled extension (kernels/_sorted_merge.c) is a module too.
                mine.add(child.stem.lstrip("_"))
        if source.parent != Path("."):
            names.setdefault(_mirror_dir(source.parent), set()).add(source.name)
    # Alembic's folder has no __init__ but is the store's migrations (see SOURCE_SKIP).
    names[Path("tests/store")].add("migrations")
    return names


def _subject(test_file: Path, names: dict[Path, set[str]]) -> str | None:
    """The longest module/package name `test_file` starts with, in its folder; None if none."""
    rest = test_file.name.removeprefix("test_").removesuffix(".py")
    candidates = [
        n for n in names.get(test_file.parent, ()) if rest == n or rest.startswith(n + "_")
    ]
    return max(candidates, key=len, default=None)


def _test_files() -> list[Path]:
    return sorted(
        p.relative_to(ROOT) for p in TESTS.rglob("test_*.py")
        if not any(p.relative_to(ROOT).is_relative_to(d) for d in EXEMPT_TEST_DIRS)
    )


def _modules_with_logic() -> list[Path]:
    return [
        (source / path.name)
        for source in _source_dirs()
        for path in sorted((ROOT / source).glob("*.py"))
        if path.name not in THIN_FILES and _has_logic(path)
    ]


def _untested_modules() -> set[str]:
    names = _names_by_test_dir()
    tested = {(f.parent, _subject(f, names)) for f in _test_files()}
    return {
        str(module) for module in _modules_with_logic()
        if (_mirror_dir(module.parent), _stem(module.name)) not in tested
    }


def test_every_test_file_mirrors_a_module_or_is_listed_as_cross_cutting():
    names = _names_by_test_dir()
    stray = [
        str(f) for f in _test_files()
        if _subject(f, names) is None and str(f) not in CROSS_CUTTING
    ]
    assert not stray, (
        f"these test files name no module of their folder's package: {stray}; move them to "
        "tests/<package>/test_<module>.py (tests/README.md), or list them in CROSS_CUTTING"
    )


def test_every_module_with_logic_has_its_test_file():
    missing = sorted(_untested_modules() - TODO_MISSING_TESTS)
    assert not missing, f"no mirror test file for: {missing} (tests/README.md says where it goes)"


def test_the_todo_list_only_shrinks():
    done = sorted(TODO_MISSING_TESTS - _untested_modules())
    assert not done, (
        f"these have their test file now, or are gone: remove them from TODO_MISSING_TESTS: {done}"
    )


def test_test_module_names_are_unique():
    # pytest imports test files by their basename ("prepend" import mode, no __init__.py under
    # tests/), so two files of one name in different folders would not both collect: where
    # names would clash, one takes an aspect suffix (tests/cli/test_doctor_cli.py).
    counts = Counter(p.name for p in TESTS.rglob("*.py") if p.name != "conftest.py")
    clashes = sorted(name for name, n in counts.items() if n > 1)
    assert not clashes, f"two test modules share a name: {clashes}"


def test_the_mirror_rule_on_known_examples():
    # The rule itself, on files whose place is settled: a wrong mapping fails here first.
    names = _names_by_test_dir()
    assert _mirror_dir(Path("appliance/governance")) == Path("tests/governance")
    assert _mirror_dir(Path("appliance")) == Path("tests")
    assert _mirror_dir(Path("cluster/serve")) == Path("tests/cluster/serve")
    assert _subject(Path("tests/cluster/test_train_custom.py"), names) == "train_custom"
    assert _subject(Path("tests/cluster/test_train.py"), names) == "train"
    assert _subject(Path("tests/cluster/test_serve_canary.py"), names) == "serve"
    assert _subject(Path("tests/governance/test_audit_tamper.py"), names) == "audit"
    assert _subject(Path("tests/cli/test_cli_errors.py"), names) == "cli"
    assert _subject(Path("tests/store/test_governance.py"), names) is None
    assert _has_logic(ROOT / "appliance/governance/approvals.py")
