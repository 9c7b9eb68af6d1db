"""Where each bench writes its part of bench/RESULTS.md: between its own two markers.

Standard library only: `bench/gpu_check.py` writes its section on a machine without the
appliance's serving stack.
"""

from __future__ import annotations

from pathlib import Path


def write_section(path: Path, section: str, start: str, end: str) -> None:
    """Put `section` in place of the one between the markers `start` and `end`, or at the end
    of `path` (created with a title when missing)."""
    text = path.read_text() if path.exists() else "# Bench results\n\n"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        tail = rest.split(end, 1)[1].lstrip("\n")
        text = head + section + ("\n" + tail if tail else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)
