"""The public names of `appliance` are exactly its sorted `__all__`, and each resolves."""

from __future__ import annotations

import appliance


def test_all_is_sorted_and_resolves():
    assert appliance.__all__ == sorted(appliance.__all__)
    for name in appliance.__all__:
        assert getattr(appliance, name) is not None


def test_public_members_are_exported():
    public = {n for n in vars(appliance) if not n.startswith("_")}
    # Subpackages become attributes once imported; they are namespaces, not API members.
    modules = {n for n in public if type(getattr(appliance, n)).__name__ == "module"}
    assert public - modules == set(appliance.__all__) - {"__version__"}
